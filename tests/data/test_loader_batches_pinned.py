"""Every source through the loader yields exactly the batches it yielded before: digests of the first
epochs' images and labels for tensors, folders, records (CPU and nvJPEG decode, uint8 and float32, the
MXNet facade) and detection, with workers and without.

Run `python -m tests.data.test_loader_batches_pinned` in the repository root to print the
digests of the current code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from deepvision.config.schema import AugmentConfig
from deepvision.data import ImageRecordIter, RecordLoader
from deepvision.data.builtin_sources import ImageFileDataset
from deepvision.data.dataset_loader import DatasetSource
from deepvision.data.detection.loader import DetectionDataset, DetectionSource, load_detection_data
from deepvision.data.detection.transforms import DetectionAugment
from deepvision.data.loader import BatchLoader
from deepvision.data.preprocess import Preprocess
from deepvision.data.records import IRHeader, pack_header
from deepvision.data.tensor_loader import BatchAugment, TensorSource
from deepvision.data.transforms import SampleTransform
from deepvision.datasets.records import RecordWriter
from tests.data.recordtools import jpeg_bytes, noise_image

AUG = AugmentConfig(rand_crop=True, rand_mirror=True, rotate=10.0)
SIZES = [(40, 30), (30, 44), (52, 30), (30, 30), (37, 30), (30, 33)]


def digest(loader, epochs: int = 2) -> str:
    h = hashlib.sha256()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader:
            if isinstance(x, list):  # detection: lists of images and target dicts
                for img, t in zip(x, y):
                    h.update(img.contiguous().numpy().tobytes())
                    for key in sorted(t):
                        h.update(t[key].contiguous().numpy().tobytes())
            else:
                h.update(str(tuple(x.shape)).encode() + str(x.dtype).encode())
                h.update(x.contiguous().numpy().tobytes())
                h.update(y.contiguous().numpy().tobytes())
    close = getattr(loader, "close", None)
    if close is not None:
        close()
    return h.hexdigest()[:16]


def make_data(root: Path) -> dict[str, Path]:
    from tests.detection_helpers import built_fake
    from tests.helpers import make_image_folder

    rec = root / "p.rec"
    with RecordWriter(rec) as w:
        for i in range(11):
            body = jpeg_bytes(noise_image(i, SIZES[i % len(SIZES)]))
            w.write(pack_header(IRHeader(0, float(i % 3), i, 0), body), key=i)
    make_image_folder(root / "folder", n_per_class=5, size=20)
    return {"rec": rec, "folder": root / "folder", "det": built_fake(root / "det", images=7, size=64, seed=2)}


def cases(data: dict[str, Path]) -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (9, 3, 20, 20), dtype=torch.uint8, generator=g)
    labels = torch.arange(9) % 4
    paths = sorted(data["folder"].rglob("*.png"))
    folder = ImageFileDataset([str(p) for p in paths], [int("vertical" in p.name) for p in paths], 3)
    pre = Preprocess(channels=3, size=(16, 16))
    rec = data["rec"]
    common = dict(size=24, resize=30, training=True, augment=AUG, seed=3)
    det_cfg_pre = Preprocess(channels=3, size=(64, 64))
    from deepvision.config.schema import DataConfig

    det = load_detection_data(DataConfig(source="detection", root=str(data["det"])), ("train",), det_cfg_pre)
    det_aug = DetectionAugment(hflip=True, zoom_out=True, iou_crop=True)
    return {
        "tensors, augmented": lambda: BatchLoader(
            TensorSource(images, labels, augment=BatchAugment(AUG, (16, 16)), training=True, seed=5), 4,
            training=True, seed=5),
        "tensors, evaluation": lambda: BatchLoader(TensorSource(images, labels, augment=BatchAugment(AUG, (16, 16))),
                                                   4, training=False),
        "folder, in process": lambda: BatchLoader(DatasetSource(folder, SampleTransform(pre, AUG, True), seed=2), 3,
                                                  training=True, seed=2, workers=0),
        "folder, one worker": lambda: BatchLoader(DatasetSource(folder, SampleTransform(pre, AUG, True), seed=2), 3,
                                                  training=True, seed=2, workers=1),
        "records, in process": lambda: RecordLoader(rec, 4, workers=0, **common),
        "records, two workers": lambda: RecordLoader(rec, 4, workers=2, **common),
        "records, float32 contiguous": lambda: RecordLoader(rec, 4, workers=0, dtype="float32", mean=[120, 110, 100],
                                                            std=[60, 50, 70], memory_format="contiguous", **common),
        "records, gray, pad": lambda: RecordLoader(rec, 4, workers=0, channels=1, last_batch="pad", **common),
        "records, nvJPEG path on the CPU": lambda: RecordLoader(rec, 4, decoder="gpu", device="cpu", **common),
        "ImageRecordIter": lambda: ImageRecordIter(str(rec), (3, 24, 24), 4, shuffle=True, rand_crop=True,
                                                   rand_mirror=True, mean_r=120, mean_g=110, mean_b=100, std_r=60,
                                                   seed=4, preprocess_threads=0),
        "detection, in process": lambda: BatchLoader(
            DetectionSource(DetectionDataset(det.splits["train"], training=True, augment=det_aug, seed=6)), 3,
            training=True, seed=6, workers=0),
        "detection, one worker": lambda: BatchLoader(
            DetectionSource(DetectionDataset(det.splits["train"], training=True, augment=det_aug, seed=6)), 3,
            training=True, seed=6, workers=1),
    }


PINNED = {
    "tensors, augmented": "72cb117fede08df3",
    "tensors, evaluation": "ce418838c4da4d5d",
    "folder, in process": "c29faf79bcf85483",
    "folder, one worker": "c29faf79bcf85483",
    "records, in process": "2126ed84e427be3c",
    "records, two workers": "2126ed84e427be3c",
    "records, float32 contiguous": "e3d930f756843c8e",
    "records, gray, pad": "fcabc0a17ae7267a",
    "records, nvJPEG path on the CPU": "85cee5291ea9ed5a",
    "ImageRecordIter": "df358542f489e417",
    "detection, in process": "d6cfd4fb1cf9715c",
    "detection, one worker": "d6cfd4fb1cf9715c",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("pinned"))


@pytest.mark.parametrize("name", list(PINNED))
def test_batches_are_the_pinned_ones(data, name):
    assert digest(cases(data)[name]()) == PINNED[name]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        made = cases(make_data(Path(tmp)))
        for key, make in made.items():
            print(f"    \"{key}\": \"{digest(make())}\",")
