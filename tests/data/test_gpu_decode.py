"""decoder: nvjpeg — the batched torchvision decode + torch plan executor, covered on the CPU (device='cpu')."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepvision.config.schema import AugmentConfig
from deepvision.data import RecordDataset, RecordLoader
from deepvision.data.preprocess import Preprocess
from deepvision.data.records import IRHeader, pack_header
from deepvision.datasets.records import RecordWriter
from deepvision.errors import UserError
from tests.data.recordtools import jpeg_bytes, noise_image, png_bytes

pytest.importorskip("torchvision.io")

SIZES = [(40, 30), (30, 44), (52, 30), (30, 30), (37, 30), (30, 33)]  # (w, h): mixed prepared sizes
N = 13


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu") / "t.rec"
    with RecordWriter(path) as w:
        for i in range(N):
            body = png_bytes(noise_image(i, SIZES[i % 6])) if i == 5 else jpeg_bytes(noise_image(i, SIZES[i % 6]))
            w.write(pack_header(IRHeader(0, float(i % 3), i, 0), body), key=i)
    return path


def _pair(path, **kw):
    cpu = RecordLoader(path, 4, workers=0, **kw)
    gpu = RecordLoader(path, 4, decoder="nvjpeg", device="cpu", **kw)
    return cpu, gpu


@pytest.mark.parametrize("training", [True, False])
def test_crops_and_flips_are_identical_to_the_cpu_loader(rec, training):
    aug = AugmentConfig(rand_crop=True, rand_mirror=True)
    cpu, gpu = _pair(rec, size=24, crop=True, training=training, augment=aug, seed=7)
    for epoch in (0, 3):
        cpu.set_epoch(epoch)
        gpu.set_epoch(epoch)
        xa, ya = map(torch.cat, zip(*cpu))
        xb, yb = map(torch.cat, zip(*gpu))
        assert xb.shape == (N, 3, 24, 24) and xb.dtype == torch.uint8
        assert xb.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # same plans, same decoder library on the CPU
    if training:  # the plans really vary across epochs
        gpu.set_epoch(1)
        assert not torch.equal(torch.cat([x for x, _ in gpu]), xb)


@pytest.mark.parametrize("aug", [
    AugmentConfig(rand_crop=True, rand_mirror=True, rotate=15, max_shear_ratio=0.1),
    AugmentConfig(random_resized_crop=True, rand_mirror=True, scale=[0.3, 1.0]),
])
def test_resampling_paths_follow_the_same_plans(rec, aug):
    cpu, gpu = _pair(rec, size=20, resize=26, training=True, augment=aug, shuffle=False)
    xa = torch.cat([x for x, _ in cpu]).int()
    xb = torch.cat([x for x, _ in gpu]).int()
    diff = (xa - xb).abs().float()
    assert diff.mean() < 4.0  # torch's antialiased bilinear vs OpenCV's area filter; same geometry
    unflipped = (xa - xb.flip(-1)).abs().float().mean()
    assert diff.mean() < unflipped  # mirrors agree sample by sample


def test_float32_output_is_normalised_on_the_decode_device(rec):
    mean, std = [120.0, 110.0, 100.0], [50.0, 60.0, 70.0]
    cpu, gpu = _pair(rec, size=24, crop=True, dtype="float32", mean=mean, std=std)
    xa, xb = next(iter(cpu))[0], next(iter(gpu))[0]
    assert xb.dtype == torch.float32 and torch.allclose(xa, xb, atol=1e-5)


def test_corrupt_records_raise_or_are_skipped(tmp_path):
    path = tmp_path / "bad.rec"
    with RecordWriter(path) as w:
        for i in range(4):
            body = jpeg_bytes(noise_image(i, (30, 30)))
            w.write(pack_header(IRHeader(0, float(i), i, 0), body[: len(body) // 3] if i == 2 else body), key=i)
    with pytest.raises(Exception, match="record 2"):
        list(RecordLoader(path, 4, size=24, decoder="gpu", device="cpu"))
    loader = RecordLoader(path, 4, size=24, decoder="gpu", device="cpu", skip_corrupt=True)
    with pytest.warns(UserWarning, match="skipped 1 unreadable sample"):
        (x, y), = list(loader)
    assert x.shape[0] == 3 and y.tolist() == [0, 1, 3] and loader.skips.epoch[0].startswith("record 2 ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_without_cuda_the_option_is_a_one_line_user_error(rec):
    with pytest.raises(UserError, match="data.options.decoder: nvjpeg .*no"):
        RecordLoader(rec, 4, decoder="nvjpeg")
    cfg = SimpleNamespace(options={"decoder": "nvjpeg"}, augment=AugmentConfig(), workers=0, skip_corrupt=False)
    pre = Preprocess(channels=3, size=(24, 24))
    with pytest.raises(UserError, match="data.options.decoder: nvjpeg"):
        RecordDataset(rec, decoder="nvjpeg").make_loader(cfg, pre, batch_size=4, training=True, shuffle=True, seed=0)
    ds = RecordDataset(rec, decoder="nvjpeg")  # single samples still decode on the CPU
    assert np.asarray(ds[0][0]).shape == (30, 40, 3)
