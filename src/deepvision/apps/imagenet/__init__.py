"""ImageNet (ILSVRC CLS-LOC) workflow: devkit -> list files and mean, and a miniature fake tree for tests."""

from deepvision.apps.imagenet.devkit import DevkitPaths, ImagenetLists, build_lists
from deepvision.apps.imagenet.fake import make_fake_imagenet

__all__ = ["DevkitPaths", "ImagenetLists", "build_lists", "make_fake_imagenet"]
