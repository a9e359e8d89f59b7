"""Tutorial T1: the STL-10 airplane/cat subset (binaries -> records) and its ROC/PR report."""

from deepvision.apps.stl10.binary import download
from deepvision.apps.stl10.build import Stl10Subset, build_stl10
from deepvision.apps.stl10.fake import make_fake_stl10
from deepvision.apps.stl10.report import t1_report

__all__ = ["Stl10Subset", "build_stl10", "download", "make_fake_stl10", "t1_report"]
