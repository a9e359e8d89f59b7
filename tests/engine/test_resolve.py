"""engine.resolve: what the data resolved to is recorded in the run's config as what was read, absolute, so
evaluate and resume read the same data from any folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deepvision.config import build_config
from deepvision.engine.resolve import resolve_run
from deepvision.errors import UserError


def _lst_config(image_root: str) -> dict:
    return {"model": {"name": "lenet"}, "train": {"epochs": 1, "test": "off"},
            "data": {"source": "lst", "root": "root", "train": "d.lst", "test": None, "val_fraction": 0.25,
                     "image_size": 28, "channels": 1, "options": {"image_root": image_root}}}


def test_an_lst_run_records_the_list_and_image_root_it_read(tmp_path, monkeypatch):
    """The run read ./d.lst and recorded root/d.lst; a relative image_root was recorded as written, so evaluate
    from another folder read other images."""
    for c in range(2):
        (tmp_path / "imgs" / str(c)).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(np.full((28, 28), 60 * c + k, np.uint8)).save(tmp_path / "imgs" / str(c) / f"{k}.png")
    (tmp_path / "root").mkdir()
    rows = [f"{4 * c + k}\t{c}\t{c}/{k}.png\n" for c in range(2) for k in range(4)]
    (tmp_path / "root" / "d.lst").write_text("".join(rows))
    monkeypatch.chdir(tmp_path)
    resolved = resolve_run(build_config(_lst_config("imgs")))
    assert resolved.cfg.data.train == str(tmp_path / "root" / "d.lst")
    assert resolved.cfg.data.options["image_root"] == str(tmp_path / "imgs")
    assert sum(resolved.data.counts().values()) == 8
    (tmp_path / "d.lst").write_text("".join(rows[:4]))  # another list of the same name here
    with pytest.raises(UserError, match=rf"^d.lst is both root/d.lst \(under data.root\) and "
                                        rf"{tmp_path}/d.lst \(in the working directory\), which differ; "):
        resolve_run(build_config(_lst_config("imgs")))
    assert (tmp_path / "d.lst").read_text() == "".join(rows[:4])
