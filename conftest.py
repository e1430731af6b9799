"""Test-session settings: notebooks run in smoke mode unless RESNET_LAB_SMOKE says otherwise."""

import os

os.environ.setdefault("RESNET_LAB_SMOKE", "1")  # inherited by the kernels nbval starts
os.environ.setdefault("MPLBACKEND", "Agg")
