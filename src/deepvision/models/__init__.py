"""Model zoo: every architecture registered by name (see `deepvision models`).

Hand-built reference architectures (`alexnet_ref`, `vgg16_ref`, `googlenet_ref`, `resnet_ref`,
`resnet50_ref`, `squeezenet_ref`, `emotion_vgg`, `mini_xception`, `age_gender_net`, `stl10_cnn`, `minivgg`, `lenet`,
`mlp`, `keras_mnist_cnn`), torchvision detectors (`fasterrcnn_*`, `ssd300_vgg16`,
`ssdlite320_mobilenet_v3_large`; see models/detection.py), every torchvision classification model as
`tv:NAME` and, when timm is installed, every timm model as `timm:NAME`; `mxnet:graph` rebuilds an
imported MXNet symbol graph and `keras:graph` an imported Keras model config.
"""

from deepvision.models import (  # noqa: F401  (importing registers the models and providers)
    age_gender,
    alexnet,
    detection,
    emotion_vgg,
    googlenet,
    keras_graph,
    keras_mnist_cnn,
    lenet,
    mini_xception,
    minivgg,
    mlp,
    mxnet_graph,
    resnet,
    squeezenet,
    stl10,
    timm_models,
    torchvision_models,
    vgg,
)
from deepvision.models.registry import (
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
    register_provider,
)

__all__ = ["ModelSpec", "create_model", "get_model_spec", "list_models", "register_model", "register_provider"]
