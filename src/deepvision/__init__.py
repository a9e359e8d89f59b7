"""deepvision: from raw images to trained, evaluated and deployed convolutional networks.

The Python API mirrors the command line::

    import deepvision as dv
    run = dv.train("my_experiment.yaml", overrides=["optim.lr=0.01"])
    dv.evaluate(run)
    dv.predict(run, ["digit.png"], top=3)
"""

from __future__ import annotations

from typing import Any

from deepvision.version import __version__

_API = ("train", "resume", "evaluate", "predict", "export", "import_mxnet", "import_keras", "load_run", "create_model",
        "list_models")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:  # lazy, so `import deepvision` stays fast for the CLI
    if name in _API:
        from deepvision import api

        return getattr(api, name)
    raise AttributeError(f"module 'deepvision' has no attribute {name!r}")
