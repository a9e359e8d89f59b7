"""Feature extraction to HDF5 with torchvision's real MobileNet-V2 weights: layer names,
the reference's shuffle/flatten/buffer options, atomic files and one-line errors."""

import json
import os

import h5py
import numpy as np
import pytest
import torch
import torchvision

from deepvision.data.lst import ListEntry
from deepvision.datasets.listing import write_lst
from deepvision.errors import UserError
from deepvision.inference.backbones import load_model
from deepvision.inference.features import FeatureExtractor, default_layer, extract_features, layer_names, open_data
from tests.helpers import fill_disk_after, make_image_folder


@pytest.fixture(scope="module")
def mobilenet(torch_hub_cache):
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(torch_hub_cache))
    mp.setenv("DEEPVISION_OFFLINE", "1")
    try:
        yield load_model("tv:mobilenet_v2", "IMAGENET1K_V1", device="cpu")
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("feat") / "data", n_per_class=4, size=40)


def test_layer_names_and_default_layer():
    with torch.device("meta"):
        vgg = torchvision.models.vgg16()
        resnet = torchvision.models.resnet18()
    assert default_layer(vgg) == "classifier.5"  # the dropout after fc7: where the reference cut VGG16
    assert default_layer(resnet) == "flatten"
    names = layer_names(resnet)
    assert names[:2] == ["conv1", "bn1"] and names[-3:] == ["avgpool", "flatten", "fc"]


def test_extract_channels_last_shuffled(mobilenet, folder, tmp_path):
    data = open_data(folder)
    ex = FeatureExtractor(mobilenet, "features.18", pool=2)
    out = tmp_path / "f.h5"
    info = extract_features(ex, data, out, batch_size=3, buffer_size=2, seed=7)
    order = np.random.default_rng(7).permutation(8)
    with h5py.File(out, "r") as db:
        feats, labels, index = db["features"][:], db["labels"][:], db["index"][:]
        assert feats.shape == (8, 2 * 2 * 1280) and feats.dtype == np.float64
        assert [n.decode() for n in db["label_names"][:]] == ["horizontal", "vertical"]
        meta = json.loads(db.attrs["deepvision"])
    assert index.tolist() == order.tolist()
    assert labels.tolist() == data.dataset.targets[order].tolist()
    assert meta["model"] == "tv:mobilenet_v2" and meta["weights"] == "IMAGENET1K_V1" and meta["layer"] == "features.18"
    assert meta["pool"] == 2 and meta["flatten"] == "channels_last" and meta["preprocess"]["size"] == [224, 224]
    assert info["rows"] == 8 and info["dim"] == 5120
    # row 0 is image order[0]: pooled 1280 x 2 x 2 activations flattened as (H, W, C)
    img, _ = data.dataset[int(order[0])]
    x = mobilenet.pre.normalize(mobilenet.pre.load(img).unsqueeze(0))
    with torch.inference_mode():
        fmap = torch.nn.functional.adaptive_avg_pool2d(mobilenet.model.features(x), 2)
    np.testing.assert_allclose(feats[0], fmap[0].permute(1, 2, 0).reshape(-1).numpy(), rtol=1e-4, atol=1e-5)


def test_interrupted_extraction_leaves_no_file(mobilenet, folder, tmp_path):
    def stop(done, total):
        raise KeyboardInterrupt

    out = tmp_path / "f.h5"
    for target in (out, tmp_path / "new" / "sub" / "f.h5"):  # nor a folder it made for the file
        with pytest.raises(KeyboardInterrupt):
            extract_features(FeatureExtractor(mobilenet), open_data(folder), target, batch_size=2, progress=stop)
        assert os.listdir(tmp_path) == []
    out.write_text("precious")
    with pytest.raises(UserError, match="already exists"):
        extract_features(FeatureExtractor(mobilenet), open_data(folder), out)
    assert out.read_text() == "precious"


def test_lst_data_and_default_layer(mobilenet, folder, tmp_path):
    files = sorted(folder.rglob("*.png"))
    write_lst(tmp_path / "d.lst", [ListEntry(i, (float(i % 3),), str(p.relative_to(folder)))
                                   for i, p in enumerate(files)])
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    data = open_data(tmp_path / "d.lst", image_root=str(folder), labels=str(tmp_path / "names.txt"))
    info = extract_features(FeatureExtractor(mobilenet), data, tmp_path / "f.h5", shuffle=False, dtype="float32")
    assert info["layer"] == "classifier.0" and info["dim"] == 1280  # the pooled vector feeding the classifier
    with h5py.File(tmp_path / "f.h5", "r") as db:
        assert db["features"].dtype == np.float32
        assert db["labels"][:].tolist() == [i % 3 for i in range(8)]
        assert [n.decode() for n in db["label_names"][:]] == ["a", "b", "c"]


def test_hdf5_data_gives_the_features_of_the_same_images(mobilenet, folder, tmp_path):
    from PIL import Image

    from deepvision.datasets.hdf5 import HDF5DatasetWriter

    files = sorted(folder.rglob("*.png"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    labels = [int(f.parent.name == "vertical") for f in files]
    writer = HDF5DatasetWriter(tmp_path / "images.hdf5", (len(files), 40, 40, 3), "images", dtype="uint8")
    writer.add(pixels, labels)
    writer.store_class_labels(["horizontal", "vertical"])
    writer.close()
    ex = FeatureExtractor(mobilenet)
    from_h5 = open_data(tmp_path / "images.hdf5")
    assert from_h5.classes == ["horizontal", "vertical"] and from_h5.description.startswith("hdf5:")
    extract_features(ex, from_h5, tmp_path / "h5.h5", shuffle=False)
    extract_features(ex, open_data(folder), tmp_path / "folder.h5", shuffle=False)
    with h5py.File(tmp_path / "h5.h5", "r") as a, h5py.File(tmp_path / "folder.h5", "r") as b:
        assert a["labels"][:].tolist() == b["labels"][:].tolist() == labels
        np.testing.assert_allclose(a["features"][:], b["features"][:], rtol=1e-5, atol=1e-6)


def test_cli_errors_are_one_line(run_cli, offline_torch_home, folder, tmp_path):
    code, _, err = run_cli("features", "tv:mobilenet_v2", folder, "--weights", "IMAGENET1K_V1", "--layer",
                           "features.99", "--out", tmp_path / "f.h5")
    assert code == 2 and err.count("\n") == 1
    assert "unknown layer 'features.99'" in err and "features.18" in err and "--list-layers" in err
    assert not (tmp_path / "f.h5").exists()
    code, out, _ = run_cli("features", "tv:mobilenet_v2", "--weights", "IMAGENET1K_V1", "--list-layers")
    assert code == 0 and "classifier.0   (default)" in out and "features.18" in out.split()
    code, _, err = run_cli("features", "tv:mobilenet_v2", tmp_path / "nothing", "--out", tmp_path / "f.h5")
    assert code == 2 and "data not found" in err


@pytest.mark.parametrize(("options", "named"), [
    (["DIR", "--out", "OUT"], "DATA, --out apply to extraction; --list-layers only lists the layers: leave them out"),
    (["--batch-size", "7"], "--batch-size applies to extraction; --list-layers only lists the layers: leave it out"),
    (["--batch-size", "0"], "--batch-size applies to extraction"),  # not a range error: not read at all
    (["--layer", "classifier.3", "--no-shuffle", "--seed", "3", "--dtype", "float16"],
     "--layer, --no-shuffle, --seed, --dtype apply to extraction"),
    (["--pool", "2", "--flatten", "channels_first", "--no-crop", "--buffer-size", "9"],
     "--pool, --flatten, --no-crop, --buffer-size apply to extraction"),
    (["--labels", "l.txt", "--image-root", "r", "--device", "cpu"], "--labels, --image-root, --device apply to"),
])
def test_list_layers_refuses_the_extraction_options(run_cli, tmp_path, folder, options, named):
    """`features RUN DATA --list-layers --out f.h5 --batch-size 7 ...` listed the layers, wrote nothing and said
    nothing of the options given."""
    given = [str(folder) if o == "DIR" else str(tmp_path / "f.h5") if o == "OUT" else o for o in options]
    code, out, err = run_cli("features", "lenet", *given, "--list-layers")
    assert (code, out) == (2, "") and err.count("\n") == 1 and named in err, err
    assert not (tmp_path / "f.h5").exists()
    code, out, _ = run_cli("features", "lenet", "--list-layers")
    assert code == 0 and "features.0" in out.split()


def test_pool_larger_than_the_map_is_refused(mobilenet, folder, tmp_path):
    """features.18 is 7 x 7 at 224 px: --pool 8 (or 100,000) would upsample, never pool; one line
    before anything is written."""
    batch = torch.zeros(1, 3, 224, 224, dtype=torch.uint8)
    assert FeatureExtractor(mobilenet, "features.18", pool=7)(batch).shape == (1, 7 * 7 * 1280)
    for pool in (8, 100000):
        with pytest.raises(UserError, match=rf"^--pool {pool} is larger than layer features.18's 7 x 7 map; "
                                            r"give 1 to 7$"):
            extract_features(FeatureExtractor(mobilenet, "features.18", pool=pool), open_data(folder),
                             tmp_path / "f.h5", batch_size=2)
    with pytest.raises(UserError, match=r"^--pool applies to a layer giving a feature map; layer classifier.0 "):
        FeatureExtractor(mobilenet, "classifier.0", pool=2)(batch)  # a vector: the option would be ignored
    assert not (tmp_path / "f.h5").exists()


def test_options_that_would_be_ignored_are_refused(mobilenet, folder, tmp_path, run_cli):
    """--flatten on a layer giving a vector and --seed with --no-shuffle were taken and ignored."""
    batch = torch.zeros(1, 3, 224, 224, dtype=torch.uint8)
    with pytest.raises(UserError, match=r"^--flatten applies to a layer giving a feature map; layer classifier.0 "):
        FeatureExtractor(mobilenet, "classifier.0", flatten="channels_first", flatten_given=True)(batch)
    assert FeatureExtractor(mobilenet, "classifier.0")(batch).shape == (1, 1280)  # the default: not named, taken
    code, out, err = run_cli("features", "mobilenet_v2", folder, "--out", tmp_path / "f.h5", "--no-shuffle",
                             "--seed", "5")
    assert (code, out, err) == (2, "", "deepvision features: error: --seed applies to the shuffle, and --no-shuffle "
                                       "keeps the data's own order; leave --seed out\n")
    assert not (tmp_path / "f.h5").exists()


@pytest.mark.parametrize(("option", "message"), [
    ("--labels", "--labels applies to .lst, .rec and HDF5 data, and {folder} is a folder of class sub-folders"),
    ("--image-root", "--image-root applies to .lst data only (the folder its paths are relative to), and {folder} is "
                     "a folder of class sub-folders"),
])
def test_list_options_with_a_folder_are_refused_before_the_model_loads(run_cli, folder, tmp_path, option, message):
    """A folder's class names are its sub-folders': --labels or --image-root would be ignored, even naming
    nothing (tv:nothing is never looked up)."""
    code, out, err = run_cli("features", "tv:nothing", folder, option, tmp_path / "nonexistent", "--out",
                             tmp_path / "f.h5")
    assert (code, out) == (2, "") and err.count("\n") == 1 and message.format(folder=folder) in err, err
    assert not (tmp_path / "f.h5").exists()
    with pytest.raises(UserError, match="--labels applies to"):
        open_data(folder, labels=str(tmp_path / "nonexistent"))


@pytest.mark.parametrize("size", ["0", "65537", "100000000"])
def test_batch_size_is_bounded_before_the_model_loads(run_cli, folder, tmp_path, size):
    """One batch of a large folder must not hold every image: --batch-size is 1 to 65,536, as for evaluate."""
    code, out, err = run_cli("features", "lenet", folder, "--batch-size", size, "--out", tmp_path / "f.h5")
    assert code == 2 and out == "" and err == (f"deepvision features: error: --batch-size must be a whole number "
                                               f"from 1 to 65,536, got {size}\n"), err
    assert not (tmp_path / "f.h5").exists()


def test_a_run_whose_config_is_a_fifo_is_named_as_such(run_cli, folder, tmp_path):
    """A FIFO in config.yaml's place made the run 'not a deepvision run directory (no config.yaml)'."""
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "config.yaml")
    code, out, err = run_cli("features", run, folder, "--out", tmp_path / "f.h5")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"{run / 'config.yaml'} is not a regular file (a FIFO)" in err


def test_features_that_would_not_fit_are_refused_before_the_file_is_written(mobilenet, folder, tmp_path,
                                                                           monkeypatch):
    """1,500 8x8 images at VGG16's first convolution asked for 25 GB of buffer (--buffer-size 1000 rows of
    3.2 M values) and a 38 GB file, found out of memory after minutes of work."""
    import shutil
    from collections import namedtuple

    ex = FeatureExtractor(mobilenet, "features.18")  # 1280 x 7 x 7 = 62,720 values an image
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.001")  # 1 MB: 4 rows of 250 kB take 1 MB, half is 0.5 MB
    with pytest.raises(UserError, match=r"^layer features\.18 gives 62,720 values an image: holding 4 rows "
                                        r"\(--buffer-size\) takes 1\.0 MB, more than half the memory"):
        extract_features(ex, open_data(folder), tmp_path / "f.h5", batch_size=2, buffer_size=4)
    monkeypatch.delenv("DEEPVISION_MAX_READ_GB")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(UserError, match=r"^the features of 8 images \(62,720 float64 values each, layer "
                                        r"features\.18\) take 4\.1 MB, more than the 1\.0 MB free in "):
        extract_features(ex, open_data(folder), tmp_path / "f.h5", batch_size=2)
    assert os.listdir(tmp_path) == []


def test_the_free_space_check_counts_what_the_file_really_takes(mobilenet, folder, tmp_path, monkeypatch):
    """The check counted rows x values x item size (400 x 500 float64: 1.6 MB) while the file took 2.1 MB (whole
    chunks and metadata): with free space in between, the full disk came while HDF5 finished the file."""
    import shutil
    from collections import namedtuple

    real = shutil.disk_usage(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 500_000, 500_000))
    ex = FeatureExtractor(mobilenet)  # 1,280 values an image: 82 kB of values, one chunk of 819 rows: 1.0 MiB
    with pytest.raises(UserError, match=r"^the features of 8 images \(1,280 float64 values each, layer "
                                        r"classifier\.0\) take 1\.1 MB, more than the 500\.0 kB free in "):
        extract_features(ex, open_data(folder), tmp_path / "f.h5")
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real)
    extract_features(ex, open_data(folder), tmp_path / "f.h5")
    assert 8 * 1280 * 8 < 1 << 20 < (tmp_path / "f.h5").stat().st_size < 1_100_000


def test_a_full_disk_while_the_file_is_written_is_one_line(run_cli, folder, tmp_path, monkeypatch):
    """A disk that filled while HDF5 finished the file: three tracebacks and a segmentation fault (exit 139)."""
    fill_disk_after(monkeypatch, 50_000)
    code, out, err = run_cli("features", "lenet", folder, "--out", tmp_path / "o" / "f.h5", "--batch-size", "2")
    progress, line = err.splitlines()
    assert (code, out) == (2, "") and progress.startswith("extracting features: 8/8 images"), err
    assert line == (f"deepvision features: error: could not write {tmp_path / 'o' / 'f.h5'}: No space left on device "
                    f"— free some space or choose another --out")
    assert os.listdir(tmp_path) == []


def test_a_terminated_extraction_leaves_no_partial_file(run_cli, folder, tmp_path, monkeypatch):
    """SIGTERM (`timeout`, a scheduler) left a 5.9 GB hidden .partial file beside the output."""
    import signal

    from deepvision.datasets.im2rec import ProgressReporter

    monkeypatch.setattr(ProgressReporter, "__call__", lambda self, done, total: os.kill(os.getpid(), signal.SIGTERM))
    code, _, err = run_cli("features", "lenet", folder, "--out", tmp_path / "o" / "f.h5", "--batch-size", "2")
    assert code == 143 and "terminated (SIGTERM); no feature file was left" in err, err
    assert not (tmp_path / "o").exists() or os.listdir(tmp_path / "o") == []


def test_a_registered_model_name_that_is_also_a_folder_here_is_refused(run_cli, folder, tmp_path, monkeypatch):
    """`features lenet DATA` read a run folder ./lenet (or called an empty one no run) for the registered
    model; which one was meant the word does not say: `./lenet` names the folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet").mkdir()
    code, out, err = run_cli("features", "lenet", folder, "--out", tmp_path / "f.h5")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "'lenet' is a registered model and a folder in this folder; give ./lenet for the folder, or rename it " \
           "to use the model" in err
    assert not (tmp_path / "f.h5").exists()
    code, _, err = run_cli("features", "./lenet", folder, "--out", tmp_path / "f.h5")
    assert code == 2 and "lenet is not a deepvision run directory" in err


@pytest.mark.parametrize("command", ["features", "classify"])
def test_a_torchvision_name_that_is_also_a_folder_here_is_refused(run_cli, folder, tmp_path, monkeypatch, command):
    """`classify --model tv:resnet18` and `features tv:resnet18` read a run folder named ./tv:resnet18 instead of
    torchvision's model (lenet's answers under resnet18's name); `./tv:resnet18` names the folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tv:resnet18").mkdir()
    image = next(iter(sorted(folder.rglob("*.png"))))
    argv = (["features", "tv:resnet18", folder, "--out", tmp_path / "f.h5"] if command == "features" else
            ["classify", image, "--model", "tv:resnet18"])
    code, out, err = run_cli(*argv)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "'tv:resnet18' is a torchvision model name and a folder in this folder; give ./tv:resnet18 for the " \
           "folder, or rename it to use torchvision's model" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tv:resnet18"]
    (tmp_path / "timm:resnet18").mkdir()  # timm need not be installed: the name is refused before it is read
    code, _, err = run_cli(*[("timm:resnet18" if a == "tv:resnet18" else a) for a in argv])
    assert code == 2 and "'timm:resnet18' is a timm model name and a folder in this folder" in err, err
