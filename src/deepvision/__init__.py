"""deepvision: from raw images to trained, evaluated and deployed convolutional networks.

The Python API mirrors the command line::

    import deepvision as dv
    run = dv.train("my_experiment.yaml", overrides=["optim.lr=0.01"])
    dv.evaluate(run)
    dv.predict(run, ["digit.png"], top=3)
"""

from __future__ import annotations

import os
import sys
from typing import Any

from deepvision.version import __version__

if "torch" not in sys.modules:
    # PyTorch's OpenMP threads (libgomp) busy-wait between parallel regions by default. When another process
    # takes one of the cores, every region's barrier waits for the preempted spinner: on 2 heavily shared
    # cores LeNet trained at 96-133 samples/s spinning and ~430 with passive waiters (issue 14 profile).
    # libgomp reads this once, when torch loads it, hence here; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_API = ("train", "resume", "evaluate", "predict", "export", "import_mxnet", "import_keras", "load_run", "create_model",
        "list_models")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:  # lazy, so `import deepvision` stays fast for the CLI
    if name in _API:
        from deepvision import api

        return getattr(api, name)
    raise AttributeError(f"module 'deepvision' has no attribute {name!r}")
