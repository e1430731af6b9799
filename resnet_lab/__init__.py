"""resnet-lab: helpers for the notebooks that teach residual networks, from vanishing gradients to CIFAR-10.

Modules: ``gradients`` (probe networks and gradient norms), ``blocks`` and ``models`` (the ResNets),
``measure`` (multiply-adds, time, memory), ``data`` and ``loader`` (CIFAR-10 on the device), ``train``,
``engine``, ``recipes`` and ``checkpoint`` (the training engine and its command line), ``landscape``, ``shattering``,
``lesion`` and ``paths`` (notebook 05's measurements: loss surfaces, gradient shattering, deleting blocks, path
lengths), ``plots`` and ``widgets``, ``checks`` and ``solutions`` (exercises), ``runtime`` (smoke mode, device,
seeds), ``project`` (URLs).
"""

from importlib.metadata import PackageNotFoundError, version

from .runtime import Session, pick_device, seed_everything, setup_notebook, smoke_mode

try:
    __version__ = version("resnet-lab")  # pyproject.toml's, as installed: one place to change it
except PackageNotFoundError:  # imported from a source tree that was never pip-installed
    __version__ = "0+unknown"
__all__ = ["Session", "pick_device", "seed_everything", "setup_notebook", "smoke_mode", "__version__"]
