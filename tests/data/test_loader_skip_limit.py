"""Every source run by the loader (folders, records in process, in workers and through the nvJPEG path
faked on the CPU, detection) fills the same skip record and enforces the same skip limit."""

from __future__ import annotations

import warnings

import pytest

from deepvision.config.schema import AugmentConfig
from deepvision.data import RecordLoader
from deepvision.data.builtin_sources import ImageFileDataset
from deepvision.data.dataset_loader import DatasetSource
from deepvision.data.detection.index import load_index
from deepvision.data.detection.loader import DetectionDataset, DetectionSource
from deepvision.data.loader import BatchLoader
from deepvision.data.preprocess import Preprocess
from deepvision.data.protocols import Loader
from deepvision.data.records import IRHeader, pack_header
from deepvision.data.transforms import SampleTransform
from deepvision.datasets.records import RecordWriter
from deepvision.errors import UserError
from tests.data.recordtools import jpeg_bytes, noise_image

BAD = (2, 5)  # of 8 samples (of 6 in the detection split): a quarter (a third) unreadable


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.detection_helpers import built_fake
    from tests.helpers import make_image_folder

    root = tmp_path_factory.mktemp("skips")
    rec = root / "s.rec"
    with RecordWriter(rec) as w:
        for i in range(8):
            body = jpeg_bytes(noise_image(i, (30, 30)))
            w.write(pack_header(IRHeader(0, float(i % 2), i, 0), body[: len(body) // 3] if i in BAD else body), key=i)
    make_image_folder(root / "f", n_per_class=4, size=16)
    paths = sorted((root / "f").rglob("*.png"))
    for i in BAD:
        paths[i].write_bytes(b"not an image")
    det = built_fake(root / "det", images=8, size=64, seed=1)
    images = load_index(det, ["train"]).splits["train"]
    for i in BAD:
        images[i].file.write_bytes(b"not an image")
    return {"rec": rec, "paths": paths, "det": images}


def make(name: str, data, limit: float | None) -> BatchLoader:
    kw = dict(training=True, max_skipped_fraction=limit)
    if name == "folder":
        ds = ImageFileDataset([str(p) for p in data["paths"]], [0] * 8, 3)
        transform = SampleTransform(Preprocess(channels=3, size=(16, 16)), AugmentConfig(), True)
        return BatchLoader(DatasetSource(ds, transform, skip_errors=True), 8, workers=1, **kw)
    if name == "detection":
        return BatchLoader(DetectionSource(DetectionDataset(data["det"]), True), len(data["det"]), workers=1, **kw)
    paths = {"records, in process": dict(workers=0), "records, workers": dict(workers=2),
             "records, nvJPEG path on the CPU": dict(decoder="gpu", device="cpu")}
    return RecordLoader(data["rec"], 8, size=24, skip_corrupt=True, **paths[name], **kw)


NAMES = ["folder", "records, in process", "records, workers", "records, nvJPEG path on the CPU", "detection"]


@pytest.mark.parametrize("name", NAMES)
def test_skips_are_recorded_and_limited_alike(data, name):
    loader = make(name, data, limit=0.4)
    total = len(loader.source)
    assert isinstance(loader, Loader)
    loader.skips.warn = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with warnings off, nothing else reports
        (x, y), = list(loader)
    assert len(y) == total - 2 and len(loader.skips.epoch) == 2
    strict = make(name, data, limit=0.2)
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable sample\(s\) in epoch 0"), \
            pytest.raises(UserError, match=rf"2 of {total} .* samples are unreadable .*max_skipped_fraction=0\.2"):
        list(strict)
    loader.close()
    strict.close()
