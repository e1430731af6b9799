"""resnet_lab.data toy task and resnet_lab.train.train_on_tensors."""

import pytest
import torch

from resnet_lab.data import make_toy_classification
from resnet_lab.gradients import deep_mlp
from resnet_lab.train import train_on_tensors


def test_toy_task_is_balanced_seeded_and_shaped():
    x, y = make_toy_classification(200, in_features=8, num_classes=5, seed=1)
    assert x.shape == (200, 8) and x.dtype == torch.float32 and y.shape == (200,)
    assert torch.bincount(y).tolist() == [40] * 5
    x2, y2 = make_toy_classification(200, in_features=8, num_classes=5, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, make_toy_classification(200, in_features=8, num_classes=5, seed=2)[0])
    with pytest.raises(ValueError, match="at least num_classes"):
        make_toy_classification(3)


def test_training_lowers_the_loss_and_is_reproducible():
    x, y = make_toy_classification(512)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(train_on_tensors(deep_mlp(2, activation="tanh", init="xavier"), x, y, steps=150, seed=0))
    loss = runs[0]["loss"]
    assert len(loss) == 150 and sum(loss[-20:]) / 20 < 0.6 * sum(loss[:20]) / 20
    assert runs[0] == runs[1]
    accuracy = runs[0]["accuracy"]
    assert all(0 <= a <= 1 for a in accuracy) and sum(accuracy[-20:]) / 20 > 0.5 > sum(accuracy[:5]) / 5


def test_train_on_tensors_leaves_the_model_in_evaluation_mode():
    x, y = make_toy_classification(64)
    net = deep_mlp(2, norm="batch")
    train_on_tensors(net, x, y, steps=2, seed=0)
    assert not net.training


def test_a_deep_plain_tanh_net_stalls_where_its_residual_twin_learns():
    x, y = make_toy_classification(512)
    final = {}
    for residual in (False, True):
        torch.manual_seed(0)
        net = deep_mlp(20, activation="tanh", residual=residual)
        final[residual] = sum(train_on_tensors(net, x, y, steps=150, seed=0)["loss"][-20:]) / 20
    assert final[False] > 2.2  # chance is ln 10 = 2.30
    assert final[True] < 1.5


def test_divergence_stops_training_and_is_recorded():
    x, y = make_toy_classification(256)
    torch.manual_seed(0)
    history = train_on_tensors(deep_mlp(3, activation="relu", init=3.0), x, y, steps=200, lr=1e3, seed=0)
    assert len(history["loss"]) < 200
    assert not torch.isfinite(torch.tensor(history["loss"][-1]))


def test_bad_arguments():
    x, y = make_toy_classification(64)
    with pytest.raises(ValueError, match="steps and batch_size must be positive"):
        train_on_tensors(deep_mlp(2), x, y, steps=0)
