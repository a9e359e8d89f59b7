"""Checkpoints and resume: bit-identical continuation on the CPU, manual LR changes, bad resumes."""

import shutil

import pytest
import torch

from deepvision.api import resume, train
from deepvision.errors import UserError
from deepvision.runs.checkpoint import load_checkpoint
from deepvision.runs.rundir import RunDir
from tests.helpers import tiny_config

METRICS = ["lr", "train_loss", "train_acc", "train_top5", "val_loss", "val_acc", "val_top5"]


def cfg_with_dropout_and_adam(epochs=4):
    cfg = tiny_config(epochs, max_samples=300)
    cfg["model"] = {"name": "keras_mnist_cnn"}  # dropout: the RNG state must be restored too
    cfg["optim"] = {"name": "adam", "lr": 0.002}
    cfg["schedule"] = {"name": "cosine", "warmup_epochs": 1}
    cfg["data"]["augment"] = {"rand_mirror": True}
    cfg["checkpoint"] = {"keep": None}  # every epoch stays: the tests resume from early ones
    return cfg


def metrics(history):
    return [[row[k] for k in METRICS] for row in history]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train(cfg_with_dropout_and_adam(), out=out, name="full")


def test_run_directory_contents(full_run):
    run = RunDir(full_run.run_dir)
    names = {p.name for p in run.path.iterdir()}
    assert {"config.yaml", "history.csv", "train.log", "checkpoints", "plots", "labels.txt", "preprocess.json",
            "run.json"} <= names
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [
        "best.pt", "keras_mnist_cnn-0001.pt", "keras_mnist_cnn-0002.pt", "keras_mnist_cnn-0003.pt",
        "keras_mnist_cnn-0004.pt", "last.pt"]
    assert {p.name for p in run.plots.iterdir()} == {"loss.png", "accuracy.png"}
    assert run.read_labels() == [str(i) for i in range(10)]
    rows = run.read_history()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and all(r["samples_per_s"] > 0 for r in rows)
    ckpt = load_checkpoint(run.checkpoints / "last.pt")
    assert ckpt["epoch"] == 4 and ckpt["model"]["name"] == "keras_mnist_cnn"
    assert set(ckpt) >= {"model_state", "optimizer_state", "scheduler_state", "scaler_state", "rng", "history",
                         "config", "preprocess", "classes"}
    best = load_checkpoint(run.checkpoints / "best.pt")
    assert best["history"][-1]["val_acc"] == max(r["val_acc"] for r in rows)
    log = run.log_path.read_text()
    assert "Epoch[0] Batch [5]\tSpeed: " in log and "\tTrain-accuracy=" in log
    assert "Epoch[3] Time cost=" in log and 'Saved checkpoint to "' in log and "Epoch[3] Validation-accuracy=" in log
    resolved = run.read_config()
    assert resolved.model.num_classes == 10 and resolved.model.in_channels == 1
    assert resolved.checkpoint.prefix == "keras_mnist_cnn"


def test_resume_from_checkpoint_is_bit_identical(full_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    resumed = resume(copy, epoch=2)
    assert metrics(resumed.history) == metrics(full_run.history)  # exact equality, not approx
    a = load_checkpoint(full_run.run_dir / "checkpoints" / "last.pt")["model_state"]
    b = load_checkpoint(copy / "checkpoints" / "last.pt")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    discarded = [p for p in (copy / "checkpoints").iterdir() if p.name.startswith("discarded-")]
    assert len(discarded) == 1 and {p.name for p in discarded[0].iterdir()} >= {"keras_mnist_cnn-0003.pt"}
    state = RunDir(copy).read_state()
    assert [s["start_epoch"] for s in state["segments"]] == [0, 2] and state["status"] == "finished"


@pytest.mark.parametrize("lr", ["optim.lr=0.0001", "optim={lr: 0.0001}"])  # a mapping sets the same key
def test_resume_with_a_new_learning_rate(full_run, tmp_path, lr):
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    result = resume(copy, epoch=3, overrides=[lr, "train.epochs=6"])
    lrs = [row["lr"] for row in result.history]
    assert lrs[:3] == [row["lr"] for row in full_run.history[:3]]
    assert lrs[3:] == [0.0001, 0.0001, 0.0001]  # fixed by hand from epoch 4 on
    assert RunDir(copy).read_config().optim.lr == 0.0001
    # a later resume keeps the manual rate unless a schedule is given
    again = resume(copy, overrides=["train.epochs=7"])
    assert again.history[-1]["lr"] == 0.0001


def test_reset_optimizer_changes_the_continuation(full_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    result = resume(copy, epoch=2, reset_optimizer=True)
    assert metrics(result.history)[:2] == metrics(full_run.history)[:2]
    assert metrics(result.history)[2] != metrics(full_run.history)[2]  # Adam moments restarted


def test_bad_resumes(full_run, tmp_path):
    with pytest.raises(UserError, match=r"epoch 9 was never saved .*saved epochs: 1, 2, 3, 4"):
        resume(full_run.run_dir, epoch=9)
    with pytest.raises(UserError, match="not a deepvision run directory"):
        resume(tmp_path)
    with pytest.raises(UserError, match="already has 4 epochs"):
        resume(full_run.run_dir)
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    last = copy / "checkpoints" / "last.pt"
    last.write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="last.pt is not a readable checkpoint"):
        resume(copy, overrides=["train.epochs=5"])
    with pytest.raises(UserError, match=r"model.name cannot change on resume \(keras_mnist_cnn -> lenet\)"):
        resume(full_run.run_dir, epoch=1, overrides=["model.name=lenet"])


def test_resuming_on_data_of_other_classes_is_refused_and_changes_nothing(full_run, tmp_path):
    """A digits run resumed on a folder of ten lettered classes would train on and rewrite labels.txt,
    so epoch 1's checkpoint would answer with letters."""
    from tests.helpers import make_image_folder

    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    letters = tuple("abcdefghij")
    make_image_folder(tmp_path / "f10", n_per_class=2, size=28, classes=letters)
    before = {name: (copy / name).read_bytes() for name in ("labels.txt", "config.yaml", "run.json")}
    with pytest.raises(UserError, match=r"the data's classes \(a, b, c, d, \.\.\.\) are not the run's \(0, 1, 2, 3, "
                                        r"\.\.\., in labels.txt\)"):
        resume(copy, overrides=["train.epochs=5", "data.source=folder", f"data.root={tmp_path / 'f10'}",
                                "data.train=.", "data.channels=1"])
    assert {name: (copy / name).read_bytes() for name in before} == before


def test_resuming_with_other_preprocessing_is_refused_and_changes_nothing(full_run, tmp_path):
    """`resume --set data.scale=0.5` rewrote preprocess.json: epoch 1's checkpoint then read its images at
    half the scale it was trained with (rank-1 94% -> 62%, no word)."""
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    before = {name: (copy / name).read_bytes() for name in ("preprocess.json", "config.yaml", "run.json")}
    with pytest.raises(UserError) as info:
        resume(copy, epoch=2, overrides=["train.epochs=5", "data.scale=0.5"])
    assert str(info.value).startswith("the preprocessing would change (scale 0.00392")
    assert "-> 0.5); the run's checkpoints were trained with its own" in str(info.value)
    assert {name: (copy / name).read_bytes() for name in before} == before
    resume(copy, epoch=2, overrides=["train.epochs=5", "optim.lr=0.001"])  # other settings change freely


def test_a_hand_edit_of_config_yaml_is_named_not_replaced(full_run, tmp_path):
    """A resume takes its settings from the checkpoint and rewrites config.yaml: an edit made by hand
    (epochs 4 -> 9) was replaced without a word and never used."""
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    text = (copy / "config.yaml").read_text()
    assert text.startswith("# written by deepvision")
    edited = text.replace("  epochs: 4\n", "  epochs: 9\n", 1)
    assert edited != text
    (copy / "config.yaml").write_text(edited)
    before = {name: (copy / name).read_bytes() for name in ("config.yaml", "run.json", "history.csv")}
    with pytest.raises(UserError) as info:
        resume(copy, epoch=2)
    assert str(info.value) == ("config.yaml was edited by hand (train.epochs: 4 -> 9); a resume takes the settings "
                               "from the checkpoint, so give changes with --set (--set train.epochs=9) or undo "
                               "the edit")
    assert {name: (copy / name).read_bytes() for name in before} == before
    # The same change given with --set is taken; a comment added by hand changes no setting.
    (copy / "config.yaml").write_text(edited + "# tried 9 epochs\n")
    result = resume(copy, epoch=3, overrides=["train.epochs=5"])
    assert len(result.history) == 5
    assert "epochs: 5\n" in (copy / "config.yaml").read_text()


def test_the_suggested_set_for_a_hand_edit_holds_the_whole_value(full_run, tmp_path):
    """A long data.root edited in config.yaml: the message cut the value, inside its --set too, so the suggested
    command could not be pasted. The suggestion holds it whole, quoted for the shell, control characters
    escaped; the named change stays short."""
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    text = (copy / "config.yaml").read_text()
    root = "/data/" + "a_long_folder_name_" * 5 + "with space\x1b/images"
    assert "  source: digits\n" in text
    (copy / "config.yaml").write_text(text.replace("  root: null\n", "", 1).replace(
        "  source: digits\n", "  source: digits\n  root: \"" + root.replace("\x1b", "\\x1b") + "\"\n", 1))
    before = {name: (copy / name).read_bytes() for name in ("config.yaml", "run.json", "history.csv")}
    with pytest.raises(UserError) as info:
        resume(copy, epoch=2)
    shown = root.replace("\x1b", "\\x1b")
    assert str(info.value) == (f"config.yaml was edited by hand (data.root: null -> {shown[:60]}); a resume takes "
                               f"the settings from the checkpoint, so give changes with --set (--set "
                               f"'data.root={shown}') or undo the edit")
    assert {name: (copy / name).read_bytes() for name in before} == before


def test_a_config_yaml_without_the_digest_line_resumes_as_before(full_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    text = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(text.partition("\n")[2].replace("  epochs: 4\n", "  epochs: 9\n", 1))
    assert RunDir.open(copy).config_edited() is None
    assert len(resume(copy, epoch=3).history) == 4


def test_the_checkpoint_prefix_cannot_change_on_resume(full_run, tmp_path):
    """`resume --set checkpoint.prefix=zz` hid the epochs saved as keras_mnist_cnn-NNNN.pt: `--epoch 1`
    then said the epoch was never saved, and `runs prune` passed them over."""
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    prefix = RunDir.open(copy).read_config().checkpoint.prefix
    with pytest.raises(UserError, match=rf"^checkpoint.prefix cannot change on resume: the run's checkpoints are "
                                        rf"{prefix}-NNNN.pt"):
        resume(copy, epoch=2, overrides=["train.epochs=5", "checkpoint={prefix: zz}"])
    assert not list((copy / "checkpoints").glob("zz-*"))


@pytest.mark.parametrize(("override", "named"), [
    ("model.name=lenet", "model.name cannot change on resume (keras_mnist_cnn -> lenet)"),
    ("model.args={width: 2}", "model.args.width cannot change on resume (unset -> 2)"),
    ("model.pretrained=other.pt", "model.pretrained cannot change on resume (unset -> other.pt)"),
    ("data.split_seed=7", "data.split_seed cannot change on resume (42 -> 7): the splits would be drawn again"),
    ("data.val_fraction=0.5", "data.val_fraction cannot change on resume (0.2 -> 0.5)"),
    ("data.test_fraction=0.05", "data.test_fraction cannot change on resume (0.0 -> 0.05)"),
    ("data.val=v.lst", "data.val cannot change on resume (unset -> given)"),
    ("checkpoint.monitor=val_top5", "checkpoint.monitor cannot change on resume (val_acc -> val_top5): best.pt"),
    ("checkpoint.monitor=null", "checkpoint.monitor cannot change on resume (val_acc -> unset)"),
    ("train.topk=1", "train.topk cannot change on resume (5 -> 1): history.csv's top-k columns hold top-5"),
    ("data.max_samples=200", "data.max_samples cannot change on resume (300 -> 200): the earlier epochs were "
                             "trained and validated on other samples"),
])
def test_the_model_and_the_held_out_splits_cannot_change_on_resume(full_run, tmp_path, override, named):
    """`resume --set model.args.activation=relu` was taken: every earlier checkpoint was then rebuilt with relu
    (LeNet's epoch 1, trained with tanh, fell from 88.6% to 74.1%); `--set data.split_seed=7` drew the splits
    again: images epochs 1-3 trained on became val images."""
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    before = (copy / "config.yaml").read_text()
    with pytest.raises(UserError) as info:
        resume(copy, epoch=2, overrides=["train.epochs=5", override])
    assert str(info.value).startswith(named), info.value
    assert (copy / "config.yaml").read_text() == before


def test_resume_rewrites_a_removed_config_yaml_from_the_last_checkpoint(full_run, tmp_path):
    """The advice for a FIFO in config.yaml's place ("delete it: `deepvision resume` rewrites it") led to
    "not a deepvision run directory (no config.yaml)"."""
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    before = RunDir.open(copy).read_config()
    (copy / "config.yaml").unlink()
    with pytest.raises(UserError, match="the run already has 4 epochs"):  # finished: nothing more to train
        resume(copy)
    assert RunDir.open(copy).read_config() == before and RunDir.open(copy).config_edited() is None


def test_a_hand_edited_model_section_is_refused_by_every_loader(full_run, tmp_path):
    """config.yaml edited to `args: {activation: relu}` made evaluate and predict run epoch 1's weights through
    another network (88.6% -> 74.1%) without a word."""
    from deepvision.runs.loading import load_run

    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    text = (copy / "config.yaml").read_text()
    assert "  args: {}\n" in text
    (copy / "config.yaml").write_text(text.replace("  args: {}\n", "  args: {activation: relu}\n", 1))
    with pytest.raises(UserError, match=r"config.yaml names another model than keras_mnist_cnn-0001.pt was trained "
                                        r"with \(model.args.activation \(unset -> relu\)\); undo the edit"):
        load_run(copy, epoch=1)
    with pytest.raises(UserError, match=r"^config.yaml was edited by hand \(model.args.activation: unset -> relu\); "
                                        r"the model cannot change on resume, so undo the edit$"):
        resume(copy, epoch=2, overrides=["train.epochs=5"])
    (copy / "config.yaml").write_text(text.replace("monitor: val_acc", "monitor: val_loss", 1))
    with pytest.raises(UserError, match=r"^config.yaml was edited by hand \(checkpoint.monitor: val_acc -> val_loss\); "
                                        r"checkpoint.monitor cannot change on resume, so undo the edit$"):
        resume(copy, epoch=2, overrides=["train.epochs=5"])


def test_reset_optimizer_with_the_setting_saying_otherwise_is_refused(full_run, tmp_path, run_cli):
    """`resume --reset-optimizer --set train.reset_optimizer_on_resume=false` reset the optimizer while config.yaml
    and run.json recorded false; the flag and the key give two values."""
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    code, out, err = run_cli("resume", copy, "--reset-optimizer", "--set", "train.reset_optimizer_on_resume=false",
                             "--set", "train.epochs=5")
    assert (code, out) == (2, "") and err == (
        "deepvision resume: error: --reset-optimizer and --set train.reset_optimizer_on_resume=false give "
        "train.reset_optimizer_on_resume two values; give one\n")
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before
    with pytest.raises(UserError, match="^--reset-optimizer and --set train={reset_optimizer_on_resume: false} give"):
        resume(copy, reset_optimizer=True, overrides=["train={reset_optimizer_on_resume: false}"])


def test_the_task_cannot_change_on_resume(trained_detection_run, tmp_path, run_cli):
    """`resume --set task=classification` on a detection run was taken and recorded in run.json's overrides,
    and the run went on training its detector."""
    copy = tmp_path / "det"
    shutil.copytree(trained_detection_run, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    code, out, err = run_cli("resume", copy, "--set", "task=classification", "--set", "train.epochs=2")
    assert (code, out) == (2, "") and err == (
        "deepvision resume: error: task cannot change on resume (detection -> classification): the run's checkpoints "
        "hold a detection model; leave --set task out, or start a new run for another task\n")
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


def test_an_older_last_pt_than_a_saved_epoch_is_named_not_rewound_to(full_run, tmp_path):
    """resume "from the latest" with a last.pt of epoch 2 beside the run's epoch-4 file: refused naming both
    (--epoch 2 or --epoch 4), nothing moved aside; --epoch 4 continues from the latest."""
    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    run = RunDir(copy)
    saved = run.saved_epochs()
    last = run.checkpoints / "last.pt"
    last.unlink()
    shutil.copyfile(saved[2], last)
    before = {str(p.relative_to(copy)): p.read_bytes() for p in sorted(copy.rglob("*")) if p.is_file()}
    with pytest.raises(UserError, match=rf"^{last} holds epoch 2 but the run saved epoch 4 \({saved[4].name}\); "
                                        r"name the weights with --epoch 2 or --epoch 4$"):
        resume(copy, overrides=["train.epochs=5"])
    assert {str(p.relative_to(copy)): p.read_bytes() for p in sorted(copy.rglob("*")) if p.is_file()} == before
    resume(copy, epoch=4, overrides=["train.epochs=5"])
    assert load_checkpoint(last)["epoch"] == 5 and not list(run.checkpoints.glob("discarded-*"))


def test_a_detection_run_does_not_resume_on_its_dataset_rebuilt_since(trained_detection_run, tmp_path, run_cli):
    """The run's dataset rebuilt with other splits: resume trained on, and validated on images trained on before.
    Refused in one line until the dataset is as the run recorded it (the same split files, in any place)."""
    from deepvision.datasets.detection import build_dataset, make_fake
    from deepvision.datasets.detection.build import read_annotations
    from tests.detection_helpers import run_on_a_copy_of_its_data

    copy, root = run_on_a_copy_of_its_data(trained_detection_run, tmp_path, edit=False)
    shutil.copytree(root, tmp_path / "kept")
    fake = make_fake(tmp_path / "other", "voc", images=12, size=96, seed=4)
    build_dataset(read_annotations("voc", fake.build_args[1:]), root)  # other annotations, the same class names
    files = lambda: {p: p.read_bytes() for p in sorted([*copy.rglob("*"), *root.rglob("*")]) if p.is_file()}
    before = files()
    code, out, err = run_cli("resume", copy, "--set", "train.epochs=2", "--set", f"data.root={root}")
    assert (code, out) == (2, "") and err.count("\n") == 1 and err.startswith(
        f"deepvision resume: error: the train split of {root} is not the one last.pt was trained with (split "
        f"'train', "), err
    assert err.endswith("the dataset was rebuilt or edited since, and the earlier epochs were trained and validated "
                        "on the other splits; rebuild it as it was, or start a new run from this run's weights (--set "
                        "model.pretrained=CHECKPOINT) for the new splits\n"), err
    assert files() == before
    shutil.rmtree(root)
    shutil.copytree(tmp_path / "kept", root)  # rebuilt as it was
    assert len(resume(copy, overrides=["train.epochs=2", f"data.root={root}"]).history) == 2


def test_resuming_on_splits_carved_from_changed_data_is_refused(tmp_path):
    """Images added to a folder run's class folders: val_fraction/test_fraction carve other images, so the
    earlier epochs were trained and validated on other splits; refused in one line, the run unchanged. The
    same images under another root resume."""
    from tests.helpers import make_image_folder

    root = make_image_folder(tmp_path / "images", n_per_class=15, size=16)
    cfg = tiny_config(1, source="folder", root=str(root), train=".", test=None, val_fraction=0.2,
                      test_fraction=0.2, batch_size=8)
    cfg["model"]["in_channels"] = 3
    run_dir = train(cfg, out=tmp_path / "runs", name="folder").run_dir
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    for image in make_image_folder(tmp_path / "more", n_per_class=10, size=16, seed=3).rglob("*.png"):
        shutil.copy(image, root / image.parent.name / f"new_{image.name}")
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    with pytest.raises(UserError, match=rf"^the train split of {root} is not the one last.pt was trained with "
                                        r"\(18 images, sha256 \w{12} -> 30 images, .*: images were added, moved or "
                                        r"replaced since, and the earlier epochs were trained and validated on the "
                                        r"recorded splits; restore the data as it was, or start a new run"):
        resume(copy, overrides=["train.epochs=2"])
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before
    for image in root.rglob("new_*.png"):
        image.unlink()
    shutil.move(root, tmp_path / "elsewhere")
    assert resume(copy, overrides=["train.epochs=2", f"data.root={tmp_path / 'elsewhere'}"]).history[-1]["epoch"] == 2


@pytest.mark.parametrize("folder", ["tensorboard", "plots", "eval", "checkpoints"])
def test_a_link_planted_at_a_run_folder_is_refused_before_the_resume_changes_anything(full_run, tmp_path, folder):
    """A link at tensorboard/ was refused only after the resume had rewritten config.yaml and marked the
    finished run failed; every sub-folder the new segment writes into is checked first."""
    copy, elsewhere = tmp_path / "copy", tmp_path / "elsewhere"
    shutil.copytree(full_run.run_dir, copy, symlinks=True)
    elsewhere.mkdir()
    if (copy / folder).exists():
        shutil.copytree(copy / folder, elsewhere, dirs_exist_ok=True)
        shutil.rmtree(copy / folder)
    (copy / folder).symlink_to(elsewhere, target_is_directory=True)
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    inside = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(UserError, match=f"^{copy / folder} is a symbolic link; refusing to write through it"):
        resume(copy, overrides=["train.epochs=5"])
    assert {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in elsewhere.iterdir()) == inside
