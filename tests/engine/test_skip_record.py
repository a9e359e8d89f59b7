"""Every loader path fills the same skip record, and the engine enforces data.max_skipped_fraction from it."""

from __future__ import annotations

import warnings

import pytest
import torch

from deepvision.config import build_config
from deepvision.data import RecordLoader
from deepvision.data.protocols import Loader
from deepvision.data.records import IRHeader, pack_header
from deepvision.datasets.records import RecordWriter
from deepvision.engine.distributed import DistInfo
from deepvision.engine.resolve import resolve_run
from deepvision.engine.trainer import Trainer
from deepvision.errors import UserError
from deepvision.runs.rundir import RunDir
from tests.data.recordtools import jpeg_bytes, noise_image

BAD = (2, 5)  # positions of the records whose JPEG bytes are cut short


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    path = tmp_path_factory.mktemp("skips") / "s.rec"
    with RecordWriter(path) as w:
        for i in range(8):
            body = jpeg_bytes(noise_image(i, (30, 30)))
            w.write(pack_header(IRHeader(0, float(i % 2), i, 0), body[: len(body) // 3] if i in BAD else body), key=i)
    return path


LOADERS = {
    "records, in process": dict(workers=0),
    "records, worker processes": dict(workers=2),
    "records, nvJPEG path (on the CPU)": dict(decoder="gpu", device="cpu"),
}


@pytest.mark.parametrize("name", LOADERS)
def test_record_loader_paths_fill_the_skip_record_and_the_limit_holds(rec, tmp_path, name):
    cfg = build_config({"model": {"name": "lenet"}, "train": {"epochs": 1, "tensorboard": False},
                        "data": {"source": "rec", "train": str(rec), "val": None, "test": None, "image_size": 24,
                                 "channels": 1, "batch_size": 8, "workers": 0, "skip_corrupt": True,
                                 "max_skipped_fraction": 0.2}})
    run = RunDir.create(tmp_path, "r")
    trainer = Trainer(resolve_run(cfg), run, dist=DistInfo(), device=torch.device("cpu"))
    loader = RecordLoader(rec, 8, size=24, training=True, skip_corrupt=True, **LOADERS[name])
    assert isinstance(loader, Loader)
    trainer.loaders["train"] = loader
    loader.skips.warn = False  # as the trainer sets it for its own loaders
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the engine reports skips; the loader must not warn as well
        (x, y), = list(loader)
    assert x.shape[0] == 6
    assert [s.split(" at byte")[0] for s in loader.skips.epoch] == [f"record {i} (id {i})" for i in BAD]
    with pytest.raises(UserError, match=r"2 of 8 train samples are unreadable .*max_skipped_fraction=0\.2"):
        trainer._check_skipped(0, "train", scored=6)
    listed = (run.path / "skipped.txt").read_text().splitlines()
    assert [line.split("\t")[2].split(" at byte")[0] for line in listed] == [f"record {i} (id {i})" for i in BAD]
    trainer.close()  # stops the loaders' workers and closes train.log


def test_a_loader_warns_once_per_epoch_when_nobody_else_reports(rec):
    loader = RecordLoader(rec, 8, size=24, skip_corrupt=True, decoder="gpu", device="cpu")
    with pytest.warns(UserWarning, match=r"s\.rec: skipped 2 unreadable sample\(s\) in epoch 0"):
        list(loader)


def test_folder_loader_fills_the_same_record(tmp_path):
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "f", n_per_class=3, size=16)
    (tmp_path / "f" / "vertical" / "vertical_001.png").write_bytes(b"not an image")
    cfg = build_config({"model": {"name": "lenet"}, "data": {
        "source": "folder", "root": str(tmp_path), "train": "f", "val": None, "test": None, "image_size": 16,
        "channels": 1, "batch_size": 6, "workers": 0, "skip_corrupt": True, "shuffle": False}})
    loader = resolve_run(cfg).data.loaders(("train",), seed=0)["train"]
    assert isinstance(loader, Loader) and not isinstance(loader, RecordLoader)
    loader.skips.warn = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sum(len(y) for _, y in loader) == 5
    assert len(loader.skips.epoch) == 1 and loader.skips.epoch[0].endswith("vertical_001.png")
