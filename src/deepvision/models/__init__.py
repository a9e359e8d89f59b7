"""Model zoo: every architecture registered by name (see `deepvision models`)."""

from deepvision.models import keras_mnist_cnn, lenet, mlp  # noqa: F401  (registers the models)
from deepvision.models.registry import (
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
    register_provider,
)

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "register_model", "register_provider"]
