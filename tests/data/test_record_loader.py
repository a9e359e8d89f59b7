"""RecordDataset, RecordLoader and ImageRecordIter: same samples as the generic transform, epochs,
sharding, last-batch policies, normalisation, corrupt records and the `rec` data source."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from deepvision.config import build_config
from deepvision.config.schema import AugmentConfig
from deepvision.data import ImageRecordIter, RecordDataset, RecordLoader
from deepvision.data.augment_plan import sample_seed
from deepvision.data.imageio import simplejpeg
from deepvision.data.loaders import build_loaders, resolve_preprocess
from deepvision.data.preprocess import Preprocess
from deepvision.data.records import IndexMismatchError, IRHeader, RecordError, pack_header
from deepvision.data.sampling import epoch_indices
from deepvision.data.sources import load_data
from deepvision.data.transforms import SampleTransform
from deepvision.datasets.records import RecordWriter
from tests.data.recordtools import jpeg_bytes, noise_image, png_bytes

SIZES = [(40, 30), (30, 44), (52, 30), (30, 30), (37, 30), (30, 33)]  # (w, h): short side 30
N = 13


def _write(path, images, labels, encode=png_bytes):
    with RecordWriter(path) as w:
        for i, (img, label) in enumerate(zip(images, labels)):
            w.write(pack_header(IRHeader(0, label, i, 0), encode(img)), key=i)
    return path


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """13 lossless (PNG) records with short side 30, labels 0..2, and their source images."""
    root = tmp_path_factory.mktemp("recs")
    images = [noise_image(i, SIZES[i % len(SIZES)]) for i in range(N)]
    labels = [float(i % 3) for i in range(N)]
    return _write(root / "train.rec", images, labels), images


def _arr(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).contiguous().numpy()


def _expected(images, transform, seed, epoch, order):
    return [_arr(transform(images[i], random.Random(sample_seed(seed, epoch, i)))) for i in order]


def test_dataset_reads_images_labels_and_views(rec):
    path, images = rec
    ds = RecordDataset(path)
    assert len(ds) == N and ds.targets.tolist() == [i % 3 for i in range(N)] and ds.label_width == 1
    img, label = ds[4]
    assert isinstance(img, Image.Image) and label == 1
    assert np.array_equal(np.asarray(img), np.asarray(images[4]))
    view = ds.subset([5, 2]).subset([1])
    assert len(view) == 1 and view.ids.tolist() == [2] and np.array_equal(view.decode(0), np.asarray(images[2]))
    header, body = ds.read_raw(7)
    assert header.id == 7 and body[:4] == b"\x89PNG"


def test_evaluation_matches_the_shared_transform_exactly(rec):
    path, images = rec
    pre = Preprocess(channels=3, size=(24, 24), resize=30)
    loader = RecordLoader(path, 5, size=(24, 24), resize=30, training=False, workers=0)
    xs, ys = zip(*loader)
    assert [len(y) for y in ys] == [5, 5, 3] and ys[0].dtype == torch.int64
    x = torch.cat(xs)
    assert x.shape == (N, 3, 24, 24) and x.dtype == torch.uint8
    want = _expected(images, SampleTransform(pre, None, False), 0, 0, range(N))
    assert all(np.array_equal(_arr(x[i]), want[i]) for i in range(N))
    assert torch.cat(ys).tolist() == [i % 3 for i in range(N)]


def test_training_crops_and_flips_match_the_shared_transform(rec):
    path, images = rec
    aug = AugmentConfig(rand_crop=True, rand_mirror=True)
    pre = Preprocess(channels=3, size=(24, 24), resize=30)
    transform = SampleTransform(pre, aug, True)
    for workers in (0, 2):
        loader = RecordLoader(path, 4, size=24, resize=30, training=True, augment=aug, seed=7, workers=workers)
        for epoch in (0, 3):
            loader.set_epoch(epoch)
            order = torch.cat(epoch_indices(N, 4, seed=7, epoch=epoch, shuffle=True)).tolist()
            xs, ys = zip(*loader)
            x = torch.cat(xs)
            want = _expected(images, transform, 7, epoch, order)
            assert all(np.array_equal(_arr(x[k]), want[k]) for k in range(N)), (workers, epoch)
            assert torch.cat(ys).tolist() == [i % 3 for i in order]


@pytest.mark.parametrize("aug", [
    AugmentConfig(rand_crop=True, rand_mirror=True, rotate=15, max_shear_ratio=0.1, fill=255),
    AugmentConfig(rand_crop=True, rotate=7, rotation_mode="fixed", fill=0),
    AugmentConfig(random_resized_crop=True, rand_mirror=True, scale=[0.3, 1.0]),
])
def test_warps_and_resized_crops_agree_with_the_shared_transform(rec, aug):
    path, images = rec
    pre = Preprocess(channels=3, size=(20, 20), resize=30)
    loader = RecordLoader(path, N, size=20, resize=30, training=True, augment=aug, shuffle=False, workers=0)
    (x, _), = list(loader)
    want = _expected(images, SampleTransform(pre, aug, True), 0, 0, range(N))
    diffs = [np.abs(_arr(x[i]).astype(int) - want[i].astype(int)) for i in range(N)]
    assert np.mean([d.mean() for d in diffs]) < 4.0  # OpenCV vs Pillow resampling; same geometry
    assert np.median([np.percentile(d, 90) for d in diffs]) < 12


def test_layouts_dtypes_and_normalisation(rec):
    path, _ = rec
    common = dict(size=24, resize=30, training=False, workers=0)
    cl = next(iter(RecordLoader(path, 6, **common)))[0]
    nchw = next(iter(RecordLoader(path, 6, memory_format="contiguous", **common)))[0]
    assert cl.is_contiguous(memory_format=torch.channels_last) and nchw.is_contiguous()
    assert torch.equal(cl, nchw)
    mean, std = [120.0, 110.0, 100.0], [50.0, 60.0, 70.0]
    fl = next(iter(RecordLoader(path, 6, dtype="float32", mean=mean, std=std, **common)))[0]
    want = (nchw.float() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert fl.dtype == torch.float32 and torch.allclose(fl, want, atol=1e-5)
    gray = next(iter(RecordLoader(path, 6, channels=1, **common)))[0]
    assert gray.shape == (6, 1, 24, 24)


def test_last_batch_policies_and_sharding(rec):
    path, _ = rec
    ds = RecordDataset(path)

    def sizes(**kw):
        loader = RecordLoader(ds, 4, size=24, resize=30, workers=0, **kw)
        return [len(y) for _, y in loader], len(loader), loader.num_samples

    assert sizes(training=True, last_batch="keep") == ([4, 4, 5], 3, 13)  # a lone last sample joins
    assert sizes(training=True, last_batch="drop") == ([4, 4, 4], 3, 12)
    assert sizes(training=True, last_batch="pad") == ([4, 4, 4, 4], 4, 16)
    assert sizes(training=True, last_batch="rollover")[0] == [4, 4, 4]
    assert sizes(training=False, last_batch="pad") == ([4, 4, 4, 1], 4, 13)  # evaluation never pads
    seen = []
    for rank in range(2):
        loader = RecordLoader(ds, 3, size=24, resize=30, training=False, rank=rank, world=2, workers=0)
        seen += torch.cat([y for _, y in loader]).tolist()
    assert sorted(seen) == sorted(ds.targets.tolist())
    sampler = ds.batch_sampler(4, seed=1, shuffle=True)
    first = list(sampler)
    sampler.set_epoch(1)
    assert sorted(sum(first, [])) == list(range(N)) and list(sampler) != first
    batches = list(torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=list))
    assert [len(b) for b in batches] == [4, 4, 5]


def test_corrupt_records_error_or_skip(tmp_path):
    images = [noise_image(i, (32, 32)) for i in range(6)]
    data = [jpeg_bytes(img) for img in images]
    data[3] = data[3][:40] + b"\x00" * 50  # the image bytes of record 3 are damaged, the framing is intact
    with RecordWriter(tmp_path / "c.rec") as w:
        offsets = [w.write(pack_header(IRHeader(0, float(i), i, 0), d), key=i) for i, d in enumerate(data)]
    loader = RecordLoader(tmp_path / "c.rec", 6, size=24, workers=0)
    with pytest.raises(RecordError, match=rf"record 3 \(id 3\) at byte offset {offsets[3]} is corrupt") as info:
        list(loader)
    assert info.value.index == 3 and info.value.offset == offsets[3]
    skipping = RecordLoader(tmp_path / "c.rec", 6, size=24, workers=2, skip_corrupt=True)
    with pytest.warns(UserWarning, match="skipped 1 unreadable sample"):
        (x, y), = list(skipping)
    assert x.shape[0] == 5 and y.tolist() == [0, 1, 2, 4, 5]
    assert len(skipping.skips.epoch) == 1
    assert skipping.skips.epoch[0].startswith(f"record 3 (id 3) at byte offset {offsets[3]}: ")  # as errors name it


def test_mismatched_index_is_reported(rec, tmp_path):
    path, images = rec
    other = _write(tmp_path / "other.rec", images[:4], [0.0] * 4)
    with pytest.raises(IndexMismatchError, match="does not match"):
        RecordDataset(path, other.with_suffix(".idx"))


def test_rec_source_and_engine_loaders(rec, tmp_path):
    path, images = rec
    val = _write(tmp_path / "val.rec", images[:5], [2.0, 0.0, 1.0, 1.0, 0.0])
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    cfg = build_config({"data": {
        "source": "rec", "train": str(path), "val": str(val), "test": None, "image_size": 24, "resize": 30,
        "batch_size": 4, "workers": 1, "mean": [0.5, 0.5, 0.5], "augment": {"rand_crop": True, "rand_mirror": True},
        "options": {"labels": str(tmp_path / "labels.txt")}}})
    bundle = load_data(cfg.data)
    assert bundle.classes == ["a", "b", "c"] and len(bundle.train) == N and len(bundle.val) == 5
    pre = resolve_preprocess(cfg.data, bundle, None)
    loaders = build_loaders(cfg.data, bundle, pre, seed=0)
    x, y = next(iter(loaders["train"]))
    assert x.shape == (4, 3, 24, 24) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert loaders["val"].num_samples == 5 and len(loaders["train"]) == 3
    carved = build_config({"data": {"source": "rec", "train": str(path), "test": None, "val_fraction": 0.3}})
    split = load_data(carved.data)
    assert len(split.train) + len(split.val) == N and isinstance(split.val, RecordDataset)


def test_image_record_iter_takes_mxnet_arguments(rec, tmp_path):
    path, images = rec
    (tmp_path / "mean.json").write_text('{"R": 100.0, "G": 110.0, "B": 120.0}')
    it = ImageRecordIter(path_imgrec=str(path), data_shape=(3, 24, 24), batch_size=4, mean_json=tmp_path / "mean.json",
                         std_r=2.0, std_g=2.0, std_b=2.0, preprocess_threads=0)
    (x, y), *_ = list(it)
    assert x.dtype == torch.float32 and x.shape == (4, 3, 24, 24) and x.is_contiguous()
    stored = np.asarray(images[0]).astype(np.float32)
    h, w = stored.shape[:2]
    top, left = (h - 24) // 2, (w - 24) // 2  # MXNet: a centre crop at the stored size, no resize
    want = (stored[top : top + 24, left : left + 24] - [100.0, 110.0, 120.0]) / 2.0
    assert np.allclose(_arr(x[0]), want, atol=1e-4)
    train = ImageRecordIter(str(path), (3, 24, 24), 4, shuffle=True, rand_crop=True, rand_mirror=True,
                            max_rotate_angle=10, preprocess_threads=0, num_parts=2, part_index=1, seed=3)
    epochs = [torch.cat([y for _, y in train]).tolist() for _ in range(2)]
    assert len(epochs[0]) == 8 and epochs[0] != epochs[1]  # round_batch pads 7 -> 8; reshuffled per pass
    assert train.spec.augment.rotate == 10 and train.spec.augment.rotation_mode == "uniform"


def test_multi_label_records(tmp_path):
    images = [noise_image(i, (30, 30)) for i in range(5)]
    labels = [[float(i), float(i * 10)] for i in range(5)]
    path = _write(tmp_path / "m.rec", images, labels)
    loader = RecordLoader(path, 5, size=24, workers=0, label_width=2)
    (_, y), = list(loader)
    assert y.dtype == torch.float32 and y.tolist() == labels
    (_, y1), = list(RecordLoader(path, 5, size=24, workers=0))
    assert y1.tolist() == [0, 1, 2, 3, 4]


def test_decoders_and_exif_orientation(tmp_path):
    img = noise_image(3, (40, 30))
    exif = Image.Exif()
    exif[0x0112] = 8  # displayed rotated 90 degrees counter-clockwise
    path = _write(tmp_path / "e.rec", [img, img], [0.0, 1.0],
                  encode=lambda im: jpeg_bytes(im, exif=exif.tobytes()))
    upright = np.asarray(img.transpose(Image.ROTATE_90))
    for decoder in ("cv2", "simplejpeg") if simplejpeg is not None else ("cv2",):
        arr = RecordDataset(path, decoder=decoder).decode(0)
        assert arr.shape == upright.shape
        assert np.abs(arr.astype(int) - upright.astype(int)).mean() < 3, decoder
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (x, _), = list(RecordLoader(path, 2, size=(40, 30), decoder="cv2", workers=0))
    assert x.shape == (2, 3, 40, 30)


def test_reused_batch_buffers_are_never_overwritten_while_held(rec):
    path, _ = rec
    kw = dict(size=24, resize=30, training=True, augment=AugmentConfig(rand_crop=True, rand_mirror=True))
    want = [x.clone() for x, _ in RecordLoader(path, 2, workers=0, **kw)]
    loader = RecordLoader(path, 2, workers=1, prefetch=1, **kw)  # 2 reusable slots, 7 batches
    held = [x for x, _ in loader]  # holding every batch: the worker falls back to fresh memory
    assert all(torch.equal(a, b) for a, b in zip(held, want))
    views = [x[:1, :, 2:5] for x in held]  # a view alone keeps its slot busy
    del held
    assert all(torch.equal(v, w[:1, :, 2:5]) for v, w in zip(views, want))
    busy = loader.source.slots.busy
    assert busy.sum() > 0
    del views
    assert busy.sum() == 0
    for _ in range(2):  # steady state: slots are recycled as batches are dropped
        assert all(torch.equal(x, w) for (x, _), w in zip(loader, want))
    loader.close()


def test_slot_batches_are_pinned_by_copy(rec, monkeypatch):
    """With pin_memory (CUDA), the DataLoader's pin thread calls pin_memory() on what a worker sent: the
    slot reference becomes a pinned copy and the slot is free again at once."""
    path, _ = rec
    loader = RecordLoader(path, 4, size=24, resize=30, workers=1, prefetch=1)
    x_ref, raw_labels, _ = next(iter(loader._data_loader()))
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a: self.clone())
    direct = x_ref.tensor().clone()
    pinned = x_ref.pin_memory()
    assert torch.equal(pinned, direct) and pinned.shape == (4, 3, 24, 24) and len(raw_labels) == 16
    import gc

    gc.collect()
    assert loader.source.slots.busy.sum() <= 1  # at most the batch the worker is preparing ahead
    loader.close()


def test_workers_run_ahead_across_epochs_and_recover_from_abandoned_ones(rec):
    path, images = rec
    aug = AugmentConfig(rand_crop=True, rand_mirror=True)
    transform = SampleTransform(Preprocess(channels=3, size=(24, 24), resize=30), aug, True)
    loader = RecordLoader(path, 4, size=24, resize=30, training=True, augment=aug, seed=5, workers=2, prefetch=2)

    def check(epoch: int, xs: list[torch.Tensor]) -> None:
        order = torch.cat(epoch_indices(N, 4, seed=5, epoch=epoch, shuffle=True)).tolist()
        want = _expected(images, transform, 5, epoch, order)
        assert all(np.array_equal(_arr(x), w) for x, w in zip(torch.cat(xs), want))

    for epoch in (0, 1, 2):  # consecutive epochs: one continuous stream
        loader.set_epoch(epoch)
        check(epoch, [x for x, _ in loader])
        assert loader._stream_next == epoch + 1
    loader.set_epoch(3)
    next(iter(loader))  # abandoned after one batch
    for epoch in (3, 1):  # restarted at the asked epoch, even a past one
        loader.set_epoch(epoch)
        check(epoch, [x for x, _ in loader])
    import gc

    gc.collect()
    assert loader.source.slots.busy.sum() <= 2 * 2  # only what the workers prefetched: nothing leaked
    loader.close()


@pytest.mark.parametrize("decoder", ["cv2", "simplejpeg"] if simplejpeg is not None else ["cv2"])
def test_decoder_tolerates_warnings_but_not_truncation(decoder):
    from deepvision.data.imageio import DecodeError, Decoder

    data = jpeg_bytes(noise_image(1, (64, 48)))
    dec = Decoder(3, decoder)
    assert dec(data[:-2] + b"\x00\x00\x00" + data[-2:]).shape == (48, 64, 3)  # extraneous bytes before EOI
    with pytest.raises(DecodeError, match="truncated"):
        dec(data[: len(data) * 2 // 3])
    with pytest.raises(DecodeError, match="not a recognised image format"):
        dec(b"GIF? no, plain text")
