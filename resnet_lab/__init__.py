"""resnet-lab: helpers for the notebooks that teach residual networks, from vanishing gradients to CIFAR-10.

Modules: ``gradients`` (probe networks and gradient norms), ``blocks`` and ``models`` (the ResNets),
``measure`` (multiply-adds, time, memory), ``data`` and ``loader`` (CIFAR-10 on the device), ``train``,
``engine``, ``recipes`` and ``checkpoint`` (the training engine and its command line), ``plots`` and
``widgets``, ``checks`` and ``solutions`` (exercises), ``runtime`` (smoke mode, device, seeds), ``project`` (URLs).
"""

from .runtime import Session, pick_device, seed_everything, setup_notebook, smoke_mode

__version__ = "0.1.0"
__all__ = ["Session", "pick_device", "seed_everything", "setup_notebook", "smoke_mode", "__version__"]
