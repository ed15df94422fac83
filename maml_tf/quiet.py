"""Keep TensorFlow's start-up from printing a GPU error on a machine that has no GPU.

On a CPU-only machine TensorFlow still probes CUDA and logs, at ERROR level, `failed call to cuInit:
... UNKNOWN ERROR (303)` in every run: noise that reads like a fault. Its C++ log level is the only
switch TensorFlow offers (TF_CPP_MIN_LOG_LEVEL, read once when TensorFlow loads), and level 3 also
hides its other C++ errors, so it is raised only where no NVIDIA driver exists at all (nothing for
that probe to find) and only when the user has not set the variable. Errors that matter reach
Python as exceptions either way.
"""
from __future__ import annotations

import ctypes.util
import os

LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


def has_nvidia_driver() -> bool:
    """Whether this machine has an NVIDIA kernel driver or CUDA driver library TensorFlow could use."""
    return os.path.exists("/proc/driver/nvidia/version") or ctypes.util.find_library("cuda") is not None


def quiet_cpu_only_startup() -> None:
    """Set TF_CPP_MIN_LOG_LEVEL=3 before TensorFlow loads, on a machine without an NVIDIA driver."""
    if LOG_LEVEL not in os.environ and not has_nvidia_driver():
        os.environ[LOG_LEVEL] = "3"
