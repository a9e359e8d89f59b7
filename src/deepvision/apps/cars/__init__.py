"""Vehicle make/model identification (docs/transfer.md): Stanford Cars lists, a fake tree, the visualiser.

Python twins of `deepvision cars lists`, `deepvision cars fake` and `deepvision cars show`; the
fine-tuning recipes are `cars_vgg16_c1` ... `c3`.
"""

from deepvision.apps.cars.devkit import CarsLists, build_cars_lists, make_model, read_annotations
from deepvision.apps.cars.fake import make_fake_cars
from deepvision.apps.cars.show import CarPrediction, show_cars

__all__ = ["CarPrediction", "CarsLists", "build_cars_lists", "make_fake_cars", "make_model", "read_annotations",
           "show_cars"]
