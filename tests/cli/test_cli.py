"""The `deepvision` command line: help everywhere, the train -> evaluate -> predict -> plot -> runs path,
and one-line errors (exit code 2, no traceback) for bad input."""

import json
import os
import shutil
import signal
import stat

import numpy as np
import pytest
import yaml
from PIL import Image

from deepvision.cli.main import build_parser
from tests.helpers import make_image_folder, tiny_config


def commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


def test_every_command_has_help(run_cli):
    names = commands()
    assert {"demo", "train", "resume", "evaluate", "predict", "plot", "runs"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as exc:
            run_cli(name, "--help")
        assert exc.value.code == 0
    code, out, _ = run_cli()
    assert code == 0 and "train" in out


def parsers(parser=None, path=("deepvision",)):
    """(command path, parser) of every command and sub-command."""
    import argparse

    parser = parser or build_parser()
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in dict(action.choices).items():
                yield from parsers(child, (*path, name))


def test_every_help_fits_80_columns_on_any_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    seen = 0
    for name, parser in parsers():
        wide = [line for line in parser.format_help().splitlines() if len(line) > 80]
        assert not wide, f"{name} --help: {wide[0]!r}"
        seen += 1
    assert seen > 40


def test_help_wrapping_keeps_examples_readable():
    from deepvision.cli.main import fit_lines

    example = "  deepvision features runs/my_run test.lst --out f.h5" + " " * 20 + "  # the input of its classifier"
    assert fit_lines(example + "\n") == ("  deepvision features runs/my_run test.lst --out f.h5\n"
                                          "    # the input of its classifier\n")
    prose = "word " * 40
    lines = fit_lines(prose).splitlines()
    assert max(map(len, lines)) <= 80 and " ".join(lines).split() == prose.split()


@pytest.mark.parametrize("argv, message", [
    (("trian",), "deepvision: error: unknown command 'trian' (did you mean train?)"),
    (("detection", "biuld"), "deepvision detection: error: unknown command 'biuld' (did you mean build?)"),
    (("recipes", "lst"), "invalid choice: 'lst' (did you mean list? choose from list, show)"),
])
def test_mistyped_commands_get_a_suggestion(capsys, argv, message):
    from deepvision.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and err.count("\n") == 1


def test_recipes_list_fits_80_columns_and_keeps_names_whole(run_cli):
    from deepvision.recipes import recipe_names

    code, out, err = run_cli("recipes")
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80
    assert set(recipe_names()) <= set(lines)  # each name whole, on its own line
    assert "  tv:mobilenet_v2 on folder, 10 epochs, batch 16, lr cosine" in lines
    age = lines[lines.index("adience_age") + 1:lines.index("adience_gender")]
    assert "reference val 71.65 (one-off 94.14), test 71.15 (one-off 88.28)" in " ".join(x.strip() for x in age)


def test_recipes_show_takes_recipe_names_and_names_a_file_as_one(run_cli, tmp_path, monkeypatch):
    """A config file or folder given to `recipes show` is named as the user's own, not called missing; a
    path never reaches outside the shipped recipes; a recipe name prints the recipe."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mt.yaml").write_text("model: {name: lenet}\ndata: {source: digits}\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "x.yaml").write_text("secret: 1\n")
    from deepvision.recipes import recipe_path

    outside = os.path.relpath(tmp_path / "x", recipe_path("demo").parent)  # ../../../tmp/.../x from the recipes
    for name, message in [("mt.yaml", "recipes show prints a shipped recipe by name; mt.yaml is a file of your own, "
                                      "not a recipe (see a config file with `cat mt.yaml`"),
                          ("d", "d is a folder of your own, not a recipe"),
                          (outside, f"no recipe named '{outside}'")]:
        code, out, err = run_cli("recipes", "show", name)
        assert (code, out) == (2, "") and err.count("\n") == 1 and message in err, err
    code, out, err = run_cli("recipes", "show", "lenet_mnist")
    assert code == 0 and "lenet" in out, err
    code, _, err = run_cli("train", "nothing_here")
    assert code == 2 and "no config file or recipe named 'nothing_here'" in err


def test_a_recipe_name_that_is_also_a_file_here_is_refused(run_cli, tmp_path, monkeypatch):
    """`train demo` trained a file named `demo` in the current folder instead of the shipped recipe, without
    a word; `./demo` names the file and `demo.yaml` beside it never shadowed the recipe."""
    from deepvision.recipes import recipe_path, resolve_config_arg

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("train: {epochs: 1}\n")
    before = (tmp_path / "demo").read_bytes()
    code, out, err = run_cli("train", "demo", "--out", tmp_path / "runs")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "'demo' is a shipped recipe and a file in this folder; give ./demo for the file, or rename it to " \
           "use the recipe" in err
    assert (tmp_path / "demo").read_bytes() == before and not (tmp_path / "runs").exists()
    assert resolve_config_arg("./demo").resolve() == (tmp_path / "demo").resolve()
    (tmp_path / "demo").unlink()
    (tmp_path / "demo.yaml").write_text("train: {epochs: 1}\n")
    assert resolve_config_arg("demo") == recipe_path("demo")


@pytest.mark.parametrize(("flag", "given", "said"), [
    (("--name", "NX"), "name=NY", "--name NX and --set name=NY give name two values"),
    (("--data-root", "empty"), "data.root=/elsewhere",
     "--data-root empty and --set data.root=/elsewhere give data.root two values"),
])
def test_a_flag_and_a_set_giving_one_setting_two_values_are_refused(run_cli, tmp_path, flag, given, said):
    """`train demo --name NX --set name=NY` trained run NX and dropped NY without a word; the --data-root refusal
    spoke of "--set data.root is given twice" to a user who gave --data-root."""
    code, out, err = run_cli("train", "demo", *flag, "--set", given, "--out", tmp_path / "runs")
    assert (code, out) == (2, "") and err == f"deepvision train: error: {said}; give one\n"
    assert not (tmp_path / "runs").exists()


def test_the_name_given_twice_is_refused_by_the_api_too(tmp_path):
    from deepvision.api import train
    from deepvision.errors import UserError

    with pytest.raises(UserError, match=r"^--name NX and --set name=NY give name two values; give one$"):
        train("demo", ["name=NY"], name="NX", out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-class run on an image folder (exercises the folder source and the binary reports)."""
    from deepvision.cli.main import main

    root = tmp_path_factory.mktemp("cli")
    data = make_image_folder(root / "stripes", n_per_class=40)
    cfg = tiny_config(3, source="folder", root=str(data), train=".", val_fraction=0.25, test_fraction=0.25,
                      batch_size=16, workers=0, image_size=32)
    cfg["model"] = {"name": "lenet", "args": {"activation": "relu"}}
    cfg["data"]["channels"] = 3
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--out", str(root / "runs"), "--name", "stripes"]) == 0
    return root, root / "runs" / "stripes", data


def test_train_writes_a_complete_run(trained):
    _, run, _ = trained
    assert (run / "checkpoints" / "lenet-0003.pt").is_file()
    assert json.loads((run / "preprocess.json").read_text())["size"] == [32, 32]
    assert (run / "labels.txt").read_text().split() == ["horizontal", "vertical"]


def test_evaluate_binary_reports(trained, run_cli):
    _, run, _ = trained
    code, out, err = run_cli("evaluate", run, "--data", "test", "--batch-size", "7")
    assert code == 0, err
    assert "[INFO] rank-1:" in out and "ROC AUC" in out
    report = run / "eval" / "test-best"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["samples"] == 20  # 80 images, 25% test: every sample once, although 7 does not divide 20
    assert np.array(metrics["confusion_matrix"]).sum() == 20
    assert metrics["rank1"] >= 0.9 and metrics["roc_auc"] >= 0.9
    for name in ("roc_pr.png", "roc_pr.json", "confusion_matrix.png", "confusion_matrix.csv", "report.csv",
                 "predictions.csv"):
        assert (report / name).is_file(), name
    curves = json.loads((report / "roc_pr.json").read_text())
    assert curves["roc"]["fpr"][0] == 0.0 and curves["roc"]["tpr"][-1] == 1.0


def test_evaluate_on_new_folder_data(trained, run_cli, tmp_path):
    _, run, _ = trained
    fresh = make_image_folder(tmp_path / "fresh", n_per_class=5, seed=9)
    code, out, err = run_cli("evaluate", run, "--data", fresh, "--epoch", "2")
    assert code == 0, err
    assert json.loads((run / "eval" / "fresh-lenet-0002" / "metrics.json").read_text())["samples"] == 10


def test_predict_top_k(trained, run_cli):
    _, run, data = trained
    image = data / "vertical" / "vertical_000.png"
    code, out, err = run_cli("predict", run, image, "--top", "2", "--json")
    assert code == 0, err
    result = json.loads(out)[0]
    probs = [t["probability"] for t in result["top"]]
    assert result["top"][0]["class"] == "vertical" and probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    code, out, _ = run_cli("predict", run, image)
    assert code == 0 and "1. vertical:" in out


def test_plot_and_runs_journal(trained, run_cli):
    root, run, _ = trained
    (run / "plots" / "loss.png").unlink()
    code, out, _ = run_cli("plot", run)
    assert code == 0 and (run / "plots" / "loss.png").is_file()
    code, out, _ = run_cli("runs", root / "runs", "--csv")
    assert code == 0
    header, row = out.strip().splitlines()[:2]
    assert header.startswith("name,model,data,epochs,lr_schedule")
    assert row.startswith("stripes,lenet,folder:.,3,1-3: 0.05,")
    assert (root / "runs" / "journal.csv").is_file()
    code, out, _ = run_cli("runs", root / "runs", "--markdown")
    assert "| stripes | lenet | 3 | 1-3: 0.05 |" in out


@pytest.mark.parametrize(("command", "argv", "device", "said"), [
    ("predict", ["IMAGE"], "cuda", "--device cuda: no CUDA GPU is available; use --device cpu"),
    ("evaluate", [], "cuda:1", "--device cuda:1: no CUDA GPU is available; use --device cpu"),
    ("evaluate", [], "tpu", "--device tpu: must be auto, cpu, cuda or cuda:N"),
    ("features", ["DATA", "--out", "OUT"], "cuda", "--device cuda: no CUDA GPU is available; use --device cpu"),
    ("classify", ["IMAGE", "--run"], "cuda", "--device cuda: no CUDA GPU is available; use --device cpu"),
])
def test_device_refusals_name_the_option_given(trained, run_cli, tmp_path, monkeypatch, command, argv, device, said):
    """The commands take --device, not the train.device key of a config: the refusal speaks of the option,
    in one line, exit 2, nothing written."""
    import torch

    _, run, data = trained
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    words = {"IMAGE": data / "vertical" / "vertical_000.png", "DATA": data, "OUT": tmp_path / "f.h5"}
    args = [words.get(a, a) for a in argv]
    args = [*args, run] if command == "classify" else [run, *args]
    before = sorted(run.rglob("*"))
    code, out, err = run_cli(command, *args, "--device", device)
    assert (code, out, err) == (2, "", f"deepvision {command}: error: {said}\n")
    assert sorted(run.rglob("*")) == before and not list(tmp_path.iterdir())


def test_train_device_refusal_names_the_config_key(run_cli, cfg_file, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_cli("train", cfg_file(), "--out", tmp_path / "runs", "--set", "train.device=cuda")
    assert (code, err) == (2, "deepvision train: error: train.device=cuda: no CUDA GPU is available; use "
                              "train.device=cpu\n")
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def cfg_file(tmp_path):
    def write(**changes):
        cfg = tiny_config(1, max_samples=200)
        for dotted, value in changes.items():
            section, key = dotted.split("__")
            cfg.setdefault(section, {})[key] = value
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model__name": "lenett"}, "unknown model 'lenett' (did you mean: lenet"),
        ({"optim__name": "sgdd"}, "unknown optimizer 'sgdd' (did you mean: sgd?); valid: adadelta, adam"),
        ({"schedule__name": "steps"}, "unknown schedule 'steps'"),
        ({"optim__momentom": 0.9}, "unknown config key 'optim.momentom'"),
        ({"optim__lr": "fast"}, "optim.lr must be a number, got 'fast'"),
        ({"data__source": "mnist", "data__root": "/nonexistent/mnist"}, "MNIST folder not found: /nonexistent/mnist"),
        ({"model__args": {"dropout": 0.3}}, "model 'lenet' has no option 'dropout'"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_cli, cfg_file, tmp_path, changes, message):
    code, out, err = run_cli("train", cfg_file(**changes), "--out", tmp_path / "runs")
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_idx_file_is_one_line(run_cli, cfg_file, tmp_path, mnist_dir):
    bad = tmp_path / "mnist"
    bad.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_dir / name, bad / name)
    data = (bad / "t10k-images-idx3-ubyte.gz").read_bytes()
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    path = cfg_file(data__source="mnist", data__root=str(bad), data__train="test")
    code, _, err = run_cli("train", path, "--out", tmp_path / "runs")
    assert code == 2 and "t10k-images-idx3-ubyte.gz is corrupt or truncated" in err


def test_predict_rejects_non_images(trained, run_cli, tmp_path):
    _, run, _ = trained
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), "red").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    for path in (text, empty, truncated, tmp_path / "missing.png"):
        code, out, err = run_cli("predict", run, path)
        assert code == 2 and err.startswith("deepvision predict: error:") and err.count("\n") == 1, (path, err)
        assert str(path) in err


def test_unwritable_output_directory(run_cli, cfg_file, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/deepvision-runs"  # not writable even for root
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(stat.S_IRUSR | stat.S_IXUSR)
    code, _, err = run_cli("train", cfg_file(), "--out", target)
    assert code == 2 and "is not writable" in err and "--out" in err


def test_evaluate_bad_checkpoints(trained, run_cli, tmp_path):
    _, run, _ = trained
    code, _, err = run_cli("evaluate", run, "--epoch", "42")
    assert code == 2 and "epoch 42 was never saved" in err
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "best.pt").write_text("not a checkpoint")
    code, _, err = run_cli("evaluate", copy)
    assert code == 2 and "best.pt is not a readable checkpoint" in err
    code, _, err = run_cli("evaluate", tmp_path / "nothing")
    assert code == 2 and "run directory not found" in err


def test_checkpoint_of_another_model(trained, run_cli, tmp_path):
    _, run, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["model"]["name"] = "mlp"
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("evaluate", copy)
    assert code == 2 and "holds model 'lenet'" in err and "'mlp'" in err


def test_disk_full_during_training_keeps_the_last_checkpoint(run_cli, cfg_file, tmp_path, monkeypatch):
    import errno

    import torch

    from deepvision.runs.checkpoint import load_checkpoint

    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 2:  # the second epoch's checkpoint hits a full disk
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", flaky_save)
    path = cfg_file(train__epochs=3)
    code, _, err = run_cli("train", path, "--out", tmp_path / "runs", "--name", "full")
    monkeypatch.undo()
    assert code == 2 and "No space left on device" in err and "previous file is intact" in err
    ckpt = load_checkpoint(tmp_path / "runs" / "full" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1
    assert not [p for p in (tmp_path / "runs" / "full" / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_data_info_and_download_help(run_cli, tmp_path, mnist_dir):
    # the shared folder holds only the t10k pair; the recipe trains on the official train split
    code, out, err = run_cli("data", "info", "lenet_mnist", "--set", f"data.root={mnist_dir}", "--set",
                             "data.train=test", "--set", "data.test=null")
    assert code == 0, err
    assert "source mnist: 10 classes" in out and "train" in out and "val" in out
    with pytest.raises(SystemExit) as exc:
        run_cli("data", "download", "--help")
    assert exc.value.code == 0


def test_data_info_summarises_a_detection_dataset_by_role(run_cli, tmp_path, monkeypatch):
    from deepvision.datasets.detection import make_fake
    from deepvision.datasets.detection.build import build_from_files

    fake = make_fake(tmp_path / "shapes", "voc", images=12, size=64, seed=4)
    report = build_from_files("voc", fake.build_args[1:], tmp_path / "built")
    monkeypatch.chdir(tmp_path)  # the recipe's data.root (shapes-built) is not here
    before = sorted(p.name for p in (tmp_path / "built").iterdir())
    code, out, err = run_cli("data", "info", "detection_synthetic", "--set", f"data.root={tmp_path / 'built'}")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"source detection: 3 classes ({', '.join(report.classes)}), built dataset {tmp_path / 'built'}"
    train = report.counts["train"]
    assert lines[1].split()[:5] == ["train", str(train.images), "images,", str(train.boxes), "boxes"]
    assert lines[1].endswith("per class " + ", ".join(f"{k} {train.per_class.get(k, 0)}" for k in report.classes))
    assert [line.split()[0] for line in lines[1:]] == ["train", "val", "test"]  # the recipe's val is its test split
    assert sorted(p.name for p in (tmp_path / "built").iterdir()) == before
    assert "[WARN]" not in out
    # the training split named again as val: said as training says it
    code, out, err = run_cli("data", "info", "detection_synthetic", "--set", f"data.root={tmp_path / 'built'}",
                             "--set", "data.val=train")
    assert code == 0, err
    assert out.splitlines()[-1] == (f"[WARN] {train.images} of the {train.images} val images are training images "
                                    f"too: val scores do not measure generalisation")
    code, out, err = run_cli("data", "info", "detection_synthetic")  # the config sets task: detection
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "shapes-built is not a built detection dataset (no dataset.json)" in err and "set task" not in err


def test_record_runs_resolve_files_under_the_data_root(tmp_path, run_cli, monkeypatch):
    """Relative .rec/labels/mean names live under data.root; no test.rec is needed to train; evaluation on
    another record file works from any working directory."""
    images = make_image_folder(tmp_path / "images", n_per_class=12, size=32)
    data = tmp_path / "data"
    data.mkdir()
    assert run_cli("im2rec", "--list", "--recursive", "--train-ratio", "0.75", data / "set", images)[0] == 0
    assert run_cli("im2rec", "--encoding", ".png", "--num-thread", "1", data / "set", images)[0] == 0
    (data / "labels.txt").write_text("horizontal\nvertical\n")
    (data / "mean.json").write_text('{"R": 120.0, "G": 120.0, "B": 120.0}')
    cfg = tiny_config(2, source="rec", root=str(data), train="set_train.rec", val="set_val.rec", test="test.rec",
                      val_fraction=0.0, batch_size=6, workers=0, image_size=32, channels=3, mean="mean.json",
                      options={"labels": "labels.txt"})
    cfg["model"] = {"name": "lenet", "args": {"activation": "relu"}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("train", "cfg.yaml", "--out", "runs", "--name", "rec")
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "runs" / "rec" / "config.yaml").read_text())["data"]
    assert saved["train"] == str(data / "set_train.rec") and saved["options"]["labels"] == str(data / "labels.txt")
    assert saved["mean"] == str(data / "mean.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run_cli("evaluate", tmp_path / "runs" / "rec", "--data", data / "set_val.rec")
    assert code == 0, err
    report = json.loads(next((tmp_path / "runs" / "rec" / "eval").glob("*/metrics.json")).read_text())
    assert report["samples"] == 6 and "[INFO] rank-1:" in out


@pytest.mark.parametrize("command, argv", [("predict", ["RUN", "a.png", "--device", "cpu"]),
                                           ("detect", ["RUN", "a.png", "--device", "cpu"]),
                                           ("evaluate", ["RUN"]), ("classify", ["a.png"]),
                                           ("features", ["tv:resnet18", "photos/"]), ("export", ["RUN"]),
                                           ("emotion", ["RUN", "--headless"])])
def test_computing_commands_run_on_the_free_cores(busy_machine, monkeypatch, capsys, command, argv):
    import importlib

    import torch

    from deepvision.cli.main import COMPUTING, main

    module = importlib.import_module(f"deepvision.cli.commands.{command}")
    seen = []
    monkeypatch.setattr(module, "run", lambda args: seen.append(torch.get_num_threads()) or 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([command, *argv]) == 0
    assert command in COMPUTING and seen == [1] and torch.get_num_threads() == 4  # restored afterwards
    assert capsys.readouterr().err == (f"3.0 of 4 cores are busy with other processes: running {command} on 1 "
                                       f"thread(s) instead of 4 (set OMP_NUM_THREADS to choose)\n")


def test_thread_policy_leaves_gpu_and_chosen_counts_alone(busy_machine, monkeypatch, capsys):
    import torch

    from deepvision.cli.commands import predict
    from deepvision.cli.main import COMPUTING, main

    seen = []
    monkeypatch.setattr(predict, "run", lambda args: seen.append(torch.get_num_threads()) or 0)
    assert main(["predict", "RUN", "a.png", "--device", "cuda"]) == 0  # the GPU computes
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert main(["predict", "RUN", "a.png", "--device", "cpu"]) == 0  # the user's choice wins
    assert seen == [4, 4] and capsys.readouterr().err == ""
    assert set(COMPUTING) <= set(commands()) and not {"runs", "train", "resume"} & COMPUTING


def test_long_class_names_are_shortened_at_a_synonym_never_mid_word():
    from deepvision.cli.output import shorten_name

    van = "n03977966 police van, police wagon, paddy wagon, patrol wagon, wagon, black Maria"
    assert shorten_name(van, 64) == "n03977966 police van, police wagon, paddy wagon, ..."
    assert shorten_name("n04118776 rule, ruler", 64) == "n04118776 rule, ruler"
    assert shorten_name("a very long class name without any synonyms at all", 20) == "a very long ..."
    for width in range(12, 80):
        short = shorten_name(van, width)
        assert len(short) <= width and (short == van or short.endswith("..."))
        assert all(word in van.replace(",", "").split() for word in short.replace(",", "").split()[:-1])


@pytest.mark.parametrize("argv", [
    ["features", "run", "imgs", "--seed", "-1", "--out", "f.h5"],
    ["imagenet", "fake", "--out", "o", "--seed", "-5"],
    ["detection", "fake", "--format", "voc", "--out", "o", "--seed", str(2**32)],
])
def test_every_seed_is_checked_once_before_the_command(run_cli, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(*argv)
    assert code == 2 and err.count("\n") == 1 and "--seed must be a whole number from 0 to 4,294,967,295" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("sides", "shown"), [(("50", "10"), "50 and 10"), (("50000", "60000"), "50000 and 60000"),
                                             (("0", "10"), "0 and 10")])
def test_imagenet_fake_sides_are_bounded(run_cli, tmp_path, sides, shown):
    code, _, err = run_cli("imagenet", "fake", "--out", tmp_path / "o", "--classes", "1", "--per-class", "1",
                           "--min-side", sides[0], "--max-side", sides[1])
    assert code == 2 and err.count("\n") == 1 and f"8 <= min <= max <= 2048 pixels, got {shown}" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["adience", "fake", "--out", "o", "--size", "100000"], "--size must be a whole number from 8 to 2,048"),
    (["adience", "fake", "--out", "o", "--faces", "100000000"], "--faces must be a whole number from 20 to 20,000"),
    (["detection", "fake", "--format", "voc", "--out", "o", "--images", "2", "--size", "100000"],
     "--size must be a whole number from 48 to 2,048, got 100000"),
    (["detection", "fake", "--format", "yolo", "--out", "o", "--images", "100000000"],
     "--images must be a whole number from 2 to 20,000"),
    (["stl10", "fake", "--out", "o", "--train-per-class", "1000000000", "--test-per-class", "1"],
     "--train-per-class must be a whole number from 1 to 2,000"),
    (["stl10", "fake", "--out", "o", "--train-per-class", "1500", "--test-per-class", "1500"],
     "ask for 30,000 images; a fake data set holds at most 20,000"),
    (["cars", "fake", "--out", "o", "--per-class", "1000000000"], "--per-class must be a whole number from 1 to "),
    (["imagenet", "fake", "--out", "o", "--classes", "100000000", "--per-class", "1", "--val-per-class", "1"],
     "ask for 200,000,000 images; a fake data set holds at most 20,000"),
])
def test_fake_generators_sizes_and_counts_are_bounded(run_cli, tmp_path, monkeypatch, argv, message):
    """One ceiling rule (safeload.check_range, MAX_FAKE_SIDE, MAX_FAKE_IMAGES), checked before anything
    is allocated or written."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(*argv)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_data_download_offline_says_no_network_not_could_not_write(run_cli, tmp_path, monkeypatch):
    """A DNS failure is reported as the network's, naming the mirrors tried; nothing is written."""
    import socket
    import urllib.error
    import urllib.request

    from deepvision.datasets.mnist import MIRRORS

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, _, err = run_cli("data", "download", "mnist", "--root", tmp_path / "m")
    assert code == 2 and err.count("\n") == 1, err
    assert "could not download train-images-idx3-ubyte.gz: no network, or the host is unknown (Name or " \
           "service not known); tried " + ", ".join(MIRRORS) in err
    assert "could not write" not in err and list((tmp_path / "m").iterdir()) == []



def test_data_download_with_deepvision_offline_tries_no_mirror(run_cli, tmp_path, monkeypatch):
    """DEEPVISION_OFFLINE=1 refuses at once, naming the switch: no mirror is tried, no folder is made."""
    import urllib.request

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"tried {url}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("DEEPVISION_OFFLINE", "1")
    code, out, err = run_cli("data", "download", "mnist", "--root", tmp_path / "m", "--splits", "test")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert ("DEEPVISION_OFFLINE is set, so nothing is downloaded (MNIST's t10k-images-idx3-ubyte.gz, "
            f"t10k-labels-idx1-ubyte.gz); unset it to download, or copy what was fetched elsewhere to "
            f"{tmp_path / 'm'}") in err
    assert list(tmp_path.iterdir()) == []


def test_data_download_root_that_is_a_file_or_fifo_is_named(run_cli, tmp_path):
    """A file or FIFO given as --root is named for what it is, not answered with the bare "File exists"."""
    (tmp_path / "afile").write_text("x\n")
    os.mkfifo(tmp_path / "ff")
    for name, kind in (("afile", "a file"), ("ff", "a FIFO")):
        code, out, err = run_cli("data", "download", "mnist", "--root", tmp_path / name)
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert f"--root {tmp_path / name} is {kind}, not a folder; give a folder for the MNIST files" in err
    assert (tmp_path / "afile").read_text() == "x\n"

@pytest.mark.parametrize("error", [
    MemoryError("Caught MemoryError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 51539607552 bytes."),
    "cuda",
])
def test_running_out_of_memory_is_one_line(run_cli, cfg_file, tmp_path, monkeypatch, error):
    """Host or GPU memory exhausted mid-run (a worker's MemoryError, PyTorch's allocators): one line, exit 2."""
    import torch

    from deepvision.engine.trainer import Trainer

    if error == "cuda":
        error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 48.00 GiB.\nmore text")

    def exhausted(self, epoch):
        raise error

    monkeypatch.setattr(Trainer, "train_epoch", exhausted)
    code, _, err = run_cli("train", cfg_file(), "--out", tmp_path / "runs", "--name", "oom")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("deepvision train: error: out of ")
    assert lines[0].endswith("; use a smaller batch size or input size, or free memory")


def test_other_runtime_errors_still_surface(run_cli, cfg_file, tmp_path, monkeypatch):
    from deepvision.engine.trainer import Trainer

    def broken(self, epoch):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Trainer, "train_epoch", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        run_cli("train", cfg_file(), "--out", tmp_path / "runs", "--name", "bug")


def test_an_option_given_twice_is_refused(run_cli, tmp_path, capsys):
    """argparse kept the last value: `emotion --image a --image b` looked at b alone, without a word."""
    with pytest.raises(SystemExit) as exc:
        run_cli("emotion", tmp_path, "--image", "a.png", "--image", "b.png")
    assert exc.value.code == 2
    assert capsys.readouterr().err == ("deepvision emotion: error: argument --image: given twice ('a.png', then "
                                       "'b.png'); give it once (see deepvision emotion --help)\n")
    with pytest.raises(SystemExit):
        run_cli("models", "show", "lenet", "--set", "a=1", "--set", "b=2", "--input", "1x28x28", "--input", "1x32x32")
    assert "argument --input: given twice ('1x28x28', then '1x32x32')" in capsys.readouterr().err  # not --set
    code, _, _ = run_cli("models", "show", "lenet", "--input", "1x28x28", "--input", "1x28x28")
    assert code == 0  # the same value twice (a wrapper's default and the user's) is one value


@pytest.mark.parametrize(("argv", "prog"), [
    (["import", "mxnet", "x", "0", "--epoch", "3"], "deepvision import mxnet"),
    (["evaluate", "run", "--bogus"], "deepvision evaluate"),
    (["--bogus"], "deepvision"),
])
def test_an_unknown_option_is_named_by_the_command_that_does_not_take_it(capsys, argv, prog):
    """Every unknown option was reported as `deepvision: error: ... (see deepvision --help)`, whose help does
    not list the command's options."""
    from deepvision.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    extra = " ".join(argv[argv.index(next(a for a in argv if a.startswith("--"))):])
    assert (info.value.code, out) == (2, "")
    assert err == f"{prog}: error: unrecognized arguments: {extra} (see {prog} --help)\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["predict", "run", "x.png", "--top", "٣"], "argument --top: must be a whole number in ASCII digits, got '٣'"),
    (["serve", "run", "--max-upload-mb", "５"], "argument --max-upload-mb: must be a number in ASCII digits"),
    (["train", "demo", "--set", "train.epochs=١"], "train.epochs must be an integer, got '١'"),
    (["train", "demo", "--set", "optim.lr=１e-3"], "optim.lr must be a number, got '１e-3'"),
    (["train", "demo", "--set", "train.epochs=1_1"], "the value 1_1 on line 1 is a number with a digit separator"),
    (["models", "show", "alexnet_ref", "--set", "fc_units=1_0"], "is a number with a digit separator"),
])
def test_numbers_are_written_in_ascii_digits(capsys, argv, message):
    """int() and float() read other scripts' digits ('٣' is 3): options and --set values took them, while the
    text readers and serve refused them."""
    from deepvision.cli.main import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert (code, out) == (2, "") and message in err and err.count("\n") == 1, err


def test_sigterm_removes_a_commands_unfinished_files_and_says_so_in_one_line(tmp_path):
    """Every command but serve turns SIGTERM into an exception: the atomic writers' hidden temporary files
    (fer2013 build left three .partial HDF5 files, 136 MB) are removed as on Ctrl+C."""
    import signal

    from tests.helpers import run_main, stop_group_when

    assert run_main("fer2013", "fake", "--out", tmp_path / "fer.csv", "--rows", "3000")[0] == 0
    before = (tmp_path / "fer.csv").read_bytes()
    out = tmp_path / "fo"
    code, err = stop_group_when(["fer2013", "build", tmp_path / "fer.csv", "--out", out],
                                lambda: any(out.glob(".*partial*")), signal.SIGTERM)
    assert (code, err) == (143, "deepvision fer2013 build: terminated (SIGTERM); unfinished files were removed\n")
    assert not out.exists() or os.listdir(out) == []
    assert (tmp_path / "fer.csv").read_bytes() == before


def _raised_from(stop: type[BaseException]):
    """A function raising what a compiled extension's initialiser raises when `stop` lands while it imports."""

    def failing(*args, **kwargs):
        try:
            raise stop
        except BaseException as exc:
            raise ImportError("initialization failed") from exc

    return failing


@pytest.mark.parametrize(("stop", "code", "line"), [
    ("Terminated", 143, "deepvision im2rec: terminated (SIGTERM); unfinished record files were removed\n"),
    ("KeyboardInterrupt", 130, "interrupted\n")])
def test_an_error_raised_from_a_stop_ends_as_that_stop(tmp_path, run_cli, monkeypatch, stop, code, line):
    """A SIGTERM landing while scipy or sklearn imported (export, evaluate) became "ImportError: initialization
    failed", raised from the stop: a 67-line traceback and exit 1 instead of the stop's one line."""
    from deepvision import errors

    monkeypatch.setattr("deepvision.safeload.check_workers",
                        _raised_from(getattr(errors, stop, KeyboardInterrupt)))
    images = make_image_folder(tmp_path / "images", n_per_class=2)
    assert run_cli("im2rec", "--list", "--recursive", tmp_path / "set", images) == (code, "", line)
    assert not list(tmp_path.glob("set*"))


def test_an_error_raised_from_a_stop_twice_over_ends_as_that_stop(run_cli, monkeypatch):
    """The stop is found however deep in the chain, through a cause or a context; a chain looping back on itself
    that holds no stop is still the error it is."""
    from deepvision.errors import Terminated

    def deep(*args, **kwargs):
        try:
            _raised_from(Terminated)()
        except ImportError:
            raise RuntimeError("loading the model failed")  # noqa: B904 - the implicit context, as library code has it

    monkeypatch.setattr("deepvision.cli.main.check_environment", deep)
    assert run_cli("recipes", "list") == (
        143, "", "deepvision recipes: terminated (SIGTERM); unfinished files were removed\n")

    def looping(*args, **kwargs):
        first, second = ValueError("a"), ValueError("b")
        first.__context__, second.__cause__ = second, first
        raise first

    monkeypatch.setattr("deepvision.cli.main.check_environment", looping)
    with pytest.raises(ValueError, match="^a$"):
        run_cli("recipes", "list")


def test_the_sigterm_rule_is_in_place_before_the_command_modules_and_torch_are_imported():
    """A SIGTERM in the first second or so, while the command modules and torch were imported, ended the
    command with exit 143 and no line: the rule is installed first thing in main. Here SIGTERM arrives as the
    command modules are about to be imported (a fresh interpreter, so nothing heavy is imported yet)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, signal, sys, time
        from deepvision.cli import main as cli

        def build_parser():
            print(signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, "torch" in sys.modules, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between two bytecodes; this waits for it at most 10 s
                time.sleep(0.01)

        cli.build_parser = build_parser
        sys.exit(cli.main(["evaluate", "runs/r1"]))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (143, "True False\n",
                                                           "deepvision evaluate: terminated (SIGTERM)\n")


def test_trainings_own_stop_raised_while_handling_ctrl_c_keeps_its_own_lines(tmp_path, run_cli, monkeypatch):
    """The trainer's StopRequested says where training stopped and how to resume; raised while a Ctrl+C was
    handled, it is not taken for that Ctrl+C."""
    import signal

    from deepvision.engine.signals import StopRequested

    def stopped(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise StopRequested(signal.SIGINT, 1, str(tmp_path / "r"))  # noqa: B904 - as the trainer may

    monkeypatch.setattr("deepvision.cli.main.check_environment", stopped)
    code, out, err = run_cli("recipes", "list")
    assert (code, out) == (130, "") and err.startswith("training stopped after 1 completed epoch; resume with:"), err


def test_signals_while_a_ctrl_c_unwinds_change_nothing(tmp_path, run_cli, monkeypatch):
    """A double Ctrl+C, or `timeout` signalling the process group again: once the stop is raised, further SIGINTs
    and SIGTERMs are ignored while it unwinds; one line, exit 130, and the handlers are the caller's again."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    cleaned = []

    def interrupted(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)
        finally:  # the command's cleanup, reached by more signals
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGTERM)
            cleaned.append(True)

    monkeypatch.setattr("deepvision.cli.main.check_environment", interrupted)
    assert run_cli("recipes", "list") == (130, "", "interrupted\n")
    assert cleaned == [True]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_that_lands_while_a_module_imports_is_raised_once_the_import_ends(tmp_path, run_cli, monkeypatch,
                                                                                  sig):
    """A signal while a module imports: C code there (a compiled extension's initialiser, the compiler) can turn
    the stop into an ImportError that an optional import swallows, or drop it. The stop waits for the import
    to end and then ends the command all the same (a second signal meanwhile changes nothing)."""
    import sys
    import time

    (tmp_path / "optional_probe.py").write_text(
        "try:\n    import dropping_extension\nexcept ImportError:\n    dropping_extension = None\n")
    (tmp_path / "dropping_extension.py").write_text(
        "import signal\ntry:\n"
        f"    signal.raise_signal({int(sig)})\n    signal.raise_signal(signal.SIGINT)\n"
        "except BaseException as exc:\n    raise ImportError('initialization failed') from exc\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    finished = []

    def importing(*args, **kwargs):
        import optional_probe  # noqa: F401

        time.sleep(5)  # the command's work, which the stop cuts short
        finished.append(True)

    monkeypatch.setattr("deepvision.cli.main.check_environment", importing)
    try:
        code, out, err = run_cli("recipes", "list")
        assert sys.modules["optional_probe"].dropping_extension is not None  # the import itself ran undisturbed
    finally:
        sys.modules.pop("optional_probe", None), sys.modules.pop("dropping_extension", None)
    line = "deepvision recipes: terminated (SIGTERM); unfinished files were removed\n"
    assert (code, out, err) == ((143, "", line) if sig == signal.SIGTERM else (130, "", "interrupted\n"))
    assert finished == []
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_once_a_stop_is_raised_signals_stay_ignored_to_the_end_of_the_process(sig):
    """The console script's rule: after the stop, through the interpreter's shutdown (atexit callbacks, torch's
    among them), a late signal is ignored rather than raised as a traceback."""
    from deepvision.cli.terminate import sigterm_raises
    from deepvision.errors import Terminated

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(KeyboardInterrupt if sig == signal.SIGINT else Terminated), sigterm_raises(True):
            signal.raise_signal(sig)
        assert [signal.getsignal(s) for s in before] == [signal.SIG_IGN, signal.SIG_IGN]
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


@pytest.mark.parametrize(("args", "line"), [
    (["export", "RUN", "--out", ""], "argument --out: an empty value; give one, or leave the option out"),
    (["export", "RUN", "--out", " "], "argument --out: an empty value; give one, or leave the option out"),
    (["train", "mnist_lenet", "--out", ""], "argument --out: an empty value; give one, or leave the option out"),
    (["evaluate", "RUN", "--data", ""], "argument --data: an empty value; give one, or leave the option out"),
    (["export", "RUN", "--out", "a\nb.onnx"], "argument --out: 'a\\nb.onnx': a name holding a control character"),
    (["export", "RUN", "--out", " lead.onnx"], "argument --out: ' lead.onnx': a name holding a control character"),
    (["detection", "build", "coco", "x.json", "--out", "out/b\x1b"], "argument --out: 'out/b\\x1b': a name holding"),
    (["im2rec", "--list", "", "RUN"], "argument prefix: an empty value; give one (see"),
    (["im2rec", "--list", " p", "RUN"], "argument prefix: ' p': a name holding a control character"),
    (["orientation", "dataset", "RUN", ""], "argument OUT: an empty value; give one (see"),
    (["runs", "RUN", "--bogus\nx"], "unrecognized arguments: --bogus\\nx (see"),
])
def test_an_option_given_empty_or_an_output_name_that_prints_as_another_is_refused(capsys, tmp_path, args, line):
    """`export --out ''` exported to the default place, exit 0 (an empty value read as "not given"); a newline
    or a leading space in --out wrote a file printed over two lines or as another name."""
    from deepvision.cli.main import main

    with pytest.raises(SystemExit) as info:  # argparse's refusal, as for every malformed option
        main([str(tmp_path / "run") if a == "RUN" else a for a in args])
    code, (out, err) = info.value.code, capsys.readouterr()
    assert (code, out, err.count("\n")) == (2, "", 1) and line in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_worker_that_cannot_hand_a_batch_over_is_one_line():
    """Under `ulimit -f 20` a loader worker's shared-memory batch file cannot be sized: 74 lines of two
    tracebacks, exit 1; it is one line naming the limit and the way round it."""
    from deepvision.cli.main import out_of_memory

    exc = RuntimeError("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                       "last):\n ...\nRuntimeError: unable to resize file </torch_18066_1960424101_0> to the right "
                       "size: File too large (27)")
    line = out_of_memory(exc)
    assert line is not None and "\n" not in line
    assert line.startswith("the data loader's worker processes could not hand a batch over (File too large: ")
    assert "ulimit -f" in line and "data.workers=0" in line
    assert out_of_memory(RuntimeError("unable to open shared memory object </torch_1_2_3> in read-write mode: "
                                      "No space left on device (28)")).startswith(
        "the data loader's worker processes could not hand a batch over (No space left on device")
    assert out_of_memory(RuntimeError("some other failure")) is None


def test_a_library_error_caused_by_a_full_disk_is_one_line(run_cli, monkeypatch):
    """joblib's "Could not pickle the task to send it to the workers", caused by its hand-over file hitting the
    file size limit (a worker's traceback, as text), ended `logreg` in 36 lines; it is one line, exit 2."""
    import errno
    import pickle

    from deepvision.cli.commands import recipes

    class RemoteTraceback(Exception):
        pass

    def fail(args):
        try:
            raise RemoteTraceback('\n"""\nTraceback ...\nOSError: [Errno 27] File too large\n"""')
        except RemoteTraceback as remote:
            raise pickle.PicklingError("Could not pickle the task to send it to the workers.") from remote

    monkeypatch.setattr(recipes, "run", fail)
    code, out, err = run_cli("recipes")
    assert code == 2 and err.count("\n") == 1, err
    assert "error: File too large while handing data to worker processes" in err and "ulimit -f" in err
    def full(args):
        raise RuntimeError("a library's own words") from OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recipes, "run", full)
    code, out, err = run_cli("recipes")
    assert code == 2 and "error: No space left on device while handing data" in err
