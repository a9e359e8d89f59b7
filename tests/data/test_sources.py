"""MNIST idx/text readers, scikit-learn digits, splits and the generic source logic."""

import gzip

import numpy as np
import pytest

from deepvision.config import build_config
from deepvision.data import mnist
from deepvision.data.builtin_sources import digits_images
from deepvision.data.sources import load_data
from deepvision.data.splits import stratified_split
from deepvision.errors import UserError
from tests.helpers import write_idx


def test_read_idx_plain_and_gzip_agree(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain = write_idx(tmp_path / "a-idx3-ubyte", arr, 2051)
    gz = write_idx(tmp_path / "b-idx3-ubyte.gz", arr, 2051)
    assert np.array_equal(mnist.read_idx(plain, 2051), arr)
    assert np.array_equal(mnist.read_idx(gz, 2051), arr)


def test_real_mnist_test_set(mnist_dir):
    images, labels = mnist.load_mnist_split(mnist_dir, "test")
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
    assert len(images) == len(labels) and labels.max() == 9
    if len(images) == 10000:  # the shared real MNIST
        assert images.max() == 255 and np.bincount(labels).tolist()[:2] == [980, 1135]


@pytest.mark.parametrize("damage", ["truncated_data", "truncated_header", "bad_magic", "bad_gzip"])
def test_corrupt_idx_files_are_reported(tmp_path, damage):
    arr = np.zeros((5, 28, 28), np.uint8)
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte", arr, 2051)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8), 2049)
    data = path.read_bytes()
    if damage == "truncated_data":
        path.write_bytes(data[:-100])
        match = "truncated: header promises 3920 bytes"
    elif damage == "truncated_header":
        path.write_bytes(data[:10])
        match = "truncated"
    elif damage == "bad_magic":
        path.write_bytes(b"\x00\x00\x0d\x03" + data[4:])
        match = "not an unsigned-byte idx file"
    else:
        path.unlink()
        (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(data)[:-30])
        match = "corrupt or truncated"
    with pytest.raises(UserError, match=match):
        mnist.load_mnist_split(tmp_path, "test")


def test_mnist_source_with_only_the_test_pair(mnist_dir):
    cfg = build_config({"data": {"source": "mnist", "root": str(mnist_dir), "train": "test", "test": None,
                                 "val_fraction": 0.2}})
    bundle = load_data(cfg.data)
    n = len(bundle.train) + len(bundle.val)
    assert len(bundle.val) == round(0.2 * n)
    # stratified: class proportions preserved within one sample per class
    full = np.bincount(np.concatenate([bundle.train.targets, bundle.val.targets]), minlength=10)
    assert np.abs(np.bincount(bundle.val.targets, minlength=10) - 0.2 * full).max() <= 1
    # the default test split is optional, but asking for the train files that are absent is an error
    missing = build_config({"data": {"source": "mnist", "root": str(mnist_dir), "train": "train"}})
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        load_data(missing.data)


def test_missing_data_folder(tmp_path):
    cfg = build_config({"data": {"source": "mnist", "root": str(tmp_path / "nope")}})
    with pytest.raises(UserError, match="MNIST folder not found"):
        load_data(cfg.data)


def test_a_detection_source_read_as_classification_data_names_the_task_that_reads_it(tmp_path):
    """Its callers (data info's classification summary, features, the demo) read classification splits whatever
    the config's task: the message holds for a config that sets task: detection too."""
    import deepvision.data.detection.loader  # noqa: F401  (registers the detection source)

    cfg = build_config({"data": {"source": "detection", "root": str(tmp_path)}})
    with pytest.raises(UserError, match=r"^data.source detection is read by the detection task only \(task: "
                                        r"detection with a detection model\), not as classification data$"):
        load_data(cfg.data)


def test_unknown_source_suggests():
    # checked when the config loads (the source registry), and again by load_data for a DataConfig built directly
    with pytest.raises(UserError, match="unknown data source 'minst' .*did you mean: mnist"):
        build_config({"data": {"source": "minst"}})
    cfg = build_config({})
    cfg.data.source = "minst"
    with pytest.raises(UserError, match="unknown data source 'minst' .*did you mean: mnist"):
        load_data(cfg.data)


def test_a_data_option_the_source_does_not_read_is_refused_by_a_new_run(tmp_path, run_cli):
    # a misspelt key was ignored: `sampels: 10` trained on the default 1,024 samples
    from deepvision.config.names import check_source_options

    with pytest.raises(UserError) as info:
        check_source_options(build_config({"data": {"source": "synthetic", "options": {"sampels": 10}}}).data)
    assert str(info.value) == ("data.options.sampels is not an option of the synthetic source (did you mean: samples, "
                               "channels?); valid: samples, classes, size, channels, seed")
    with pytest.raises(UserError, match="^data.options.labels is not an option of the folder source; valid: none$"):
        check_source_options(build_config({"data": {"source": "folder", "options": {"labels": "l.txt"}}}).data)
    code, _, err = run_cli("train", "mlp_mnist", "--set", "data.source=rec", "--set", "data.options.decoderr=cv2",
                           "--out", tmp_path / "runs")
    assert code == 2 and "data.options.decoderr is not an option of the rec source (did you mean: decoder?)" in err
    assert not (tmp_path / "runs").exists()
    for source, options in (("synthetic", {"samples": 8, "classes": 2, "size": 8, "channels": 1, "seed": 3}),
                            ("rec", {"labels": "l.txt", "decoder": "cv2", "prefetch": 2}),
                            ("hdf5", {"labels": "l.txt", "data_key": "images"}), ("lst", {"image_root": "."})):
        check_source_options(build_config({"data": {"source": source, "options": options}}).data)
    # an earlier run's stored config with a key its source ignores still loads (evaluate, export, resume)
    assert build_config({"data": {"source": "folder", "options": {"image_root": "x"}}}).data.options


def test_mnist_text_format_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9, 2])
    path = tmp_path / "mnist_train.txt"
    path.write_text("".join(f"{lab} ** {' '.join(map(str, img.ravel().tolist()))}\n"
                            for img, lab in zip(images, labels)))
    got_images, got_labels = mnist.read_text(path)
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    cfg = build_config({"data": {"source": "mnist_text", "root": str(tmp_path), "train": "mnist_train.txt",
                                 "test": None}})
    bundle = load_data(cfg.data)
    assert bundle.train.images.shape == (7, 1, 28, 28) and bundle.train.labels.tolist() == labels.tolist()
    path.write_text("3 ## 1 2 3\n")
    with pytest.raises(UserError, match="expected label, separator and 784 pixels, got 5 fields"):
        mnist.read_text(path)
    cfg = build_config({"data": {"source": "mnist_text", "root": str(tmp_path), "train": "mnist_train.txt",
                                 "test": None}})
    with pytest.raises(UserError, match="mnist_train.txt:1"):
        load_data(cfg.data)


def test_digits_are_28x28_ink_high():
    images, labels = digits_images(28)
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    assert np.bincount(labels).min() >= 170


def test_carving_val_and_test_is_disjoint_covering_and_seeded():
    cfg = build_config({"data": {"train": "all", "test": None, "val_fraction": 0.15, "test_fraction": 0.2}})
    a, b = load_data(cfg.data), load_data(cfg.data)
    sizes = [len(a.train), len(a.val), len(a.test)]
    assert sum(sizes) == 1797 and sizes[2] == round(0.2 * 1797) and sizes[1] == round(0.15 * 1797)
    for role in ("train", "val", "test"):
        assert np.array_equal(a.role(role).labels.numpy(), b.role(role).labels.numpy())
    rows = {bytes(x.numpy()) for split in (a.train, a.val, a.test) for x in split.images}
    assert len(rows) >= 1790  # the digits set holds a handful of duplicates; no sample is in two splits twice


def test_stratified_split_counts():
    labels = np.repeat(np.arange(4), 25)
    keep, out = stratified_split(labels, 20, seed=1)
    assert len(out) == 20 and len(set(keep) | set(out)) == 100 and not set(keep) & set(out)
    assert np.bincount(labels[out]).tolist() == [5, 5, 5, 5]
    with pytest.raises(UserError):
        stratified_split(labels, 100, seed=1)


def test_relative_data_files_prefer_the_data_root(tmp_path, monkeypatch):
    from deepvision.data.builtin_sources import resolve_path

    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "labels.txt").write_text("a\n")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "labels.txt").write_text("stray\n")
    (tmp_path / "cwd" / "only_here.txt").write_text("x\n")
    monkeypatch.chdir(tmp_path / "cwd")
    root = tmp_path / "root"
    assert resolve_path(root, "labels.txt") == root / "labels.txt"  # the root's, not the stray copy
    assert resolve_path(root, "only_here.txt").resolve() == (tmp_path / "cwd" / "only_here.txt")
    assert resolve_path(None, "labels.txt") == resolve_path("", "labels.txt")
    assert resolve_path(root, tmp_path / "abs.txt") == tmp_path / "abs.txt"


def test_folder_source_skips_unreadable_images_when_asked(tmp_path):
    from deepvision.data.loaders import build_loaders, resolve_preprocess
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "train", n_per_class=4, size=16)
    (tmp_path / "train" / "vertical" / "vertical_001.png").write_bytes(b"not a png")
    data = {"source": "folder", "root": str(tmp_path), "train": "train", "val": None, "test": None,
            "image_size": 16, "batch_size": 4, "workers": 0, "shuffle": False}
    for skip in (False, True):
        cfg = build_config({"data": {**data, "skip_corrupt": skip}})
        bundle = load_data(cfg.data)
        loaders = build_loaders(cfg.data, bundle, resolve_preprocess(cfg.data, bundle, None), seed=0)
        if not skip:
            with pytest.raises(UserError, match="vertical_001.png"):
                list(loaders["train"])
        else:
            with pytest.warns(UserWarning, match="skipped 1 unreadable sample"):
                labels = [y for _, y in loaders["train"]]
            assert sum(len(y) for y in labels) == 7 and int(sum(y.sum() for y in labels)) == 3


def test_a_batch_of_nothing_but_unreadable_images_stays_in_the_epoch(tmp_path):
    from deepvision.api import train
    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "train", n_per_class=4, size=16)
    for i in range(4):  # with batch 4 and no shuffling, the second batch is entirely unreadable
        (tmp_path / "train" / "horizontal" / f"horizontal_{i:03d}.png").write_bytes(b"")
    data = {"source": "folder", "root": str(tmp_path), "train": "train", "val": "train", "test": None,
            "image_size": 16, "channels": 3, "batch_size": 4, "workers": 0, "shuffle": False,
            "skip_corrupt": True}
    cfg = build_config({"data": data})
    bundle = load_data(cfg.data)
    from deepvision.data.loaders import build_loaders, resolve_preprocess

    loaders = build_loaders(cfg.data, bundle, resolve_preprocess(cfg.data, bundle, None), seed=0)
    with pytest.warns(UserWarning, match="skipped 4 unreadable"):
        shapes = [tuple(x.shape) for x, _ in loaders["train"]]
    assert shapes == [(0, 3, 16, 16), (4, 3, 16, 16)]
    # the engine reports skipped files as one line plus a listing (docs/data-reliability.md), and accepts half of them
    # unreadable only when data.max_skipped_fraction allows it
    result = train({"model": {"name": "lenet", "args": {"activation": "relu"}},
                    "data": {**data, "max_skipped_fraction": 0.5},
                    "train": {"epochs": 1, "tensorboard": False}}, out=tmp_path / "runs", name="skip")
    assert result.history[0]["epoch"] == 1 and result.history[0]["val_acc"] == 1.0  # 4 readable, all class 1
    listing = (result.run_dir / "skipped.txt").read_text().splitlines()
    assert len(listing) == 8 and all("horizontal_00" in line for line in listing)  # 4 in train, 4 in val


def test_photos_of_mixed_sizes_get_the_weights_resize_and_crop(tmp_path):
    """A tv: model on a folder of photos, no data.resize/image_size: shorter side to the weights' resize, then
    the crop (never a small crop out of a large photo); explicit settings win."""
    from deepvision.data.loaders import resolve_preprocess
    from deepvision.models import get_model_spec
    from tests.recipes.test_transfer_finetune import photo_folder

    photo_folder(tmp_path / "photos", per_class=3)
    spec = get_model_spec("tv:resnet18")  # ResNet18_Weights.IMAGENET1K_V1: resize 256, crop 224
    data = {"source": "folder", "root": str(tmp_path / "photos"), "train": ".", "val": None, "test": None,
            "augment": {"rand_crop": True}}
    for extra, want in (({}, (256, (224, 224), False)), ({"image_size": 224}, (None, (224, 224), True)),
                        ({"resize": 300}, (300, (224, 224), False))):
        cfg = build_config({"data": {**data, **extra}})
        pre = resolve_preprocess(cfg.data, load_data(cfg.data), spec.input_size, spec.preprocess)
        assert (pre.resize, pre.size, pre.crop) == want, extra
        assert pre.mean == [0.485, 0.456, 0.406]
    cfg = build_config({"data": data})  # a hand-built model has no resize of its own
    assert resolve_preprocess(cfg.data, load_data(cfg.data), (3, 32, 32), {}).resize is None


@pytest.mark.parametrize("target", ["..", "../..", "horizontal"])
def test_folder_source_refuses_a_class_folder_linking_into_its_ancestry_or_a_class(tmp_path, run_cli, target):
    """train/c -> .. would make every image of train/ also class c (rglob walks the link)."""
    import os

    from tests.helpers import make_image_folder

    make_image_folder(tmp_path / "data" / "train", n_per_class=2, size=16)
    os.symlink(target, tmp_path / "data" / "train" / "c")
    data = {"source": "folder", "root": str(tmp_path / "data"), "train": "train", "val": None, "test": None}
    what = "leads into" if target == "horizontal" else "leads back to"
    with pytest.raises(UserError, match=rf"train/c {what} .*remove the link"):
        load_data(build_config({"data": data}).data)
    (tmp_path / "c.yaml").write_text(f"data: {{source: folder, root: {tmp_path / 'data'}, train: train, "
                                     f"val: null, test: null}}\n")
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and err.count("\n") == 1 and what in err
    os.unlink(tmp_path / "data" / "train" / "c")
    make_image_folder(tmp_path / "elsewhere", n_per_class=2, size=16, classes=("c",))
    os.symlink(tmp_path / "elsewhere" / "c", tmp_path / "data" / "train" / "c")  # a class kept elsewhere: fine
    bundle = load_data(build_config({"data": data}).data)
    assert bundle.classes == ["c", "horizontal", "vertical"] and len(bundle.train) == 6


def test_folder_source_refuses_two_spellings_of_the_val_folder(tmp_path, run_cli):
    """valid/ and validation/ both present: data.val=val could be either, so neither is taken silently."""
    from tests.helpers import make_image_folder

    for split, n in (("train", 3), ("valid", 1), ("validation", 2)):
        make_image_folder(tmp_path / "data" / split, n_per_class=n, size=16)
    data = {"source": "folder", "root": str(tmp_path / "data"), "train": "train", "val": "val", "test": None}
    message = (f"{tmp_path / 'data'} holds both {tmp_path / 'data' / 'valid'} and {tmp_path / 'data' / 'validation'} "
               f"for the split 'val'; name the one to read as a path, e.g. ./valid")
    with pytest.raises(UserError) as exc:
        load_data(build_config({"data": data}).data)
    assert str(exc.value) == message
    (tmp_path / "c.yaml").write_text(f"data: {{source: folder, root: {tmp_path / 'data'}, train: train, "
                                     f"val: val, test: null}}\n")
    code, _, err = run_cli("data", "info", tmp_path / "c.yaml")
    assert code == 2 and err.count("\n") == 1 and message in err
    for name, count in (("valid", 2), ("validation", 4)):  # naming one folder reads it
        assert len(load_data(build_config({"data": {**data, "val": name}}).data).val) == count
    (tmp_path / "data" / "validation").rename(tmp_path / "validation")
    assert len(load_data(build_config({"data": data}).data).val) == 2  # one spelling: it is the val split


def test_folder_source_reads_a_split_folder_in_any_case_and_refuses_two_spellings(tmp_path):
    """Test/ and Val/ were never read (no test split, val carved from train); test/ beside Test/ is refused,
    and the one named as a path (./Test) is read as written."""
    from tests.helpers import make_image_folder

    for split, n in (("train", 3), ("Val", 1), ("Test", 2)):
        make_image_folder(tmp_path / "data" / split, n_per_class=n, size=16)
    data = {"source": "folder", "root": str(tmp_path / "data"), "train": "train", "val": "val", "test": "test"}
    bundle = load_data(build_config({"data": data}).data)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (6, 2, 4)
    make_image_folder(tmp_path / "data" / "test", n_per_class=4, size=16)
    with pytest.raises(UserError) as exc:
        load_data(build_config({"data": data}).data)
    assert str(exc.value) == (f"{tmp_path / 'data'} holds both {tmp_path / 'data' / 'Test'} and "
                              f"{tmp_path / 'data' / 'test'} for the split 'test'; name the one to read as a path, "
                              f"e.g. ./Test")
    for name, count in (("./Test", 4), ("./test", 8)):
        assert len(load_data(build_config({"data": {**data, "test": name}}).data).test) == count
    (tmp_path / "data" / "train").rename(tmp_path / "data" / "TRAIN")
    assert len(load_data(build_config({"data": {**data, "test": "./test"}}).data).train) == 6


def test_every_name_the_data_package_exports_resolves():
    import deepvision.data

    for name in deepvision.data.__all__:
        assert getattr(deepvision.data, name).__name__ == name
