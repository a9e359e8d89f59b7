"""Local web demo: `deepvision serve RUN_OR_MODEL` (see app.py). Python API: `serve`, `create_app`."""

from deepvision.apps.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
