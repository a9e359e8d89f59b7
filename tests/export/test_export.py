"""`deepvision export`: one file with the normalisation inside and the run's metadata, verified against
PyTorch; `deepvision predict` on the exported .onnx gives the run's own predictions."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from deepvision.errors import UserError
from deepvision.interop.mxnet_import import import_mxnet
from deepvision.runs.loading import load_run
from tests.helpers import make_image_folder

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "mxnet"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """MXNet graph runs (concat, LRN, 'full' pooling; every other operator) and a zoo run (lenet), and images."""
    tmp = tmp_path_factory.mktemp("export")
    graph = import_mxnet(FIX / "inception_bn_block", 7, input_size=(3, 32, 32), out=tmp / "graph", scale=1 / 255,
                         mean=[120.0, 110.0, 100.0], std=[60.0, 60.0, 60.0], quiet=True).run_dir
    zoo = import_mxnet(FIX / "lenet", 7, model="lenet", input_size=(1, 16, 16), out=tmp / "zoo", quiet=True).run_dir
    ops = import_mxnet(FIX / "operators", 7, input_size=(3, 8, 8), out=tmp / "ops", quiet=True).run_dir
    images = make_image_folder(tmp / "images", n_per_class=3, size=40)
    return graph, zoo, ops, sorted(images.rglob("*.png"))


def test_onnx_file_predicts_like_the_run(runs, run_cli, tmp_path):
    graph, _, _, images = runs
    target = tmp_path / "model.onnx"
    code, out, err = run_cli("export", graph, "--out", target, "--images", *images[:4])
    assert code == 0, err
    assert "parity on the 4 given images: max |logits difference|" in out and "top-1 agreement 100.0%" in out
    assert target.is_file() and not list(tmp_path.glob("*.data"))  # one self-contained file
    from deepvision.fileio import file_mode

    assert target.stat().st_mode & 0o777 == file_mode()  # like every other output, not mkstemp's 0600
    import onnx

    model = onnx.load(str(target))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["deepvision"])
    loaded = load_run(graph)
    assert meta["classes"] == loaded.classes and meta["preprocess"] == loaded.pre.to_dict()
    assert meta["input"]["shape"] == [1, 3, 32, 32] and meta["model"] == "mxnet:graph"

    code, out, err = run_cli("predict", target, *images, "--json")
    assert code == 0, err
    from_onnx = json.loads(out)
    code, out, err = run_cli("predict", graph, *images, "--json")
    from_run = json.loads(out)
    assert [r["top"][0]["class"] for r in from_onnx] == [r["top"][0]["class"] for r in from_run]
    for a, b in zip(from_onnx, from_run):
        assert np.allclose([t["probability"] for t in a["top"]], [t["probability"] for t in b["top"]], atol=1e-5)


def test_dynamic_batch_onnx_and_torchscript(runs, tmp_path):
    from deepvision.export.export import export_run
    from deepvision.onnxrt import ort_session

    _, zoo, ops, images = runs
    # every operator of the graph importer (sum pooling, PReLU, SELU, Reshape, clip, ...) through ONNX
    result = export_run(ops, format="onnx", dynamic_batch=True, out=tmp_path / "ops.onnx", quiet=True)
    assert result.checked == 8 and result.top1_agreement == 1.0 and result.max_abs_diff < 1e-4
    assert "synthetic" in result.check_source  # the imported run has no data.root
    loaded = load_run(ops)
    pixels = torch.stack([loaded.pre.load(p) for p in images[:5]])
    with torch.inference_mode():
        expected = loaded.model(loaded.pre.normalize(pixels)).numpy()
    got = ort_session(result.path).run(["logits"], {"pixels": pixels.float().numpy()})[0]
    assert got.shape == (5, 6) and np.abs(got - expected).max() < 1e-4

    loaded = load_run(zoo)
    pixels = torch.stack([loaded.pre.load(p) for p in images[:5]])
    with torch.inference_mode():
        expected = loaded.model(loaded.pre.normalize(pixels)).numpy()

    ts = export_run(zoo, format="torchscript", dynamic_batch=True, quiet=True)
    assert ts.path == zoo / "export" / "zoo.torchscript"
    from deepvision.fileio import file_mode

    assert ts.path.stat().st_mode & 0o777 == result.path.stat().st_mode & 0o777 == file_mode()
    extra = {"deepvision.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream; files still load
        module = torch.jit.load(str(ts.path), _extra_files=extra)
    assert json.loads(extra["deepvision.json"])["classes"] == loaded.classes
    with torch.inference_mode():
        assert np.abs(module(pixels.float()).numpy() - expected).max() < 1e-4


def test_export_refuses_a_file_that_differs_and_bad_options(runs, tmp_path, monkeypatch):
    from deepvision.export import export as E

    _, zoo, _, _ = runs
    real = E._run_file
    monkeypatch.setattr(E, "_run_file", lambda *a: real(*a) + np.eye(10, dtype=np.float32)[[3] * 8] * 5)
    target = tmp_path / "bad.torchscript"
    with pytest.raises(UserError, match=r"differs from PyTorch \(max abs difference 5 > .*nothing was written"):
        E.export_run(zoo, format="torchscript", dynamic_batch=True, out=target, quiet=True)
    assert not list(tmp_path.iterdir())  # no file, no temporary left behind
    with pytest.raises(UserError, match="--opset applies to --format onnx only"):
        E.export_run(zoo, format="torchscript", opset=17, quiet=True)
    with pytest.raises(UserError, match=r"--opset \(an ONNX opset version\) must be a whole number from 7 to 99, "
                                        r"got 1"):
        E.export_run(zoo, format="onnx", opset=1, quiet=True)
    with pytest.raises(UserError, match=r"must end in \.onnx"):
        E.export_run(zoo, format="onnx", out=tmp_path / "x.pt", quiet=True)
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(UserError, match=r"need the 'onnxruntime' package: pip install 'deepvision\[onnx\]'"):
        from deepvision.inference.onnx_runtime import OnnxClassifier

        OnnxClassifier(Path(__file__))  # any existing file: the missing package is reported first


def test_export_refuses_an_out_that_is_one_of_its_images(runs, run_cli, tmp_path):
    _, zoo, _, images = runs
    image = tmp_path / "digit.onnx"  # an image whose name ends like the model file
    image.write_bytes(images[0].read_bytes())
    before = image.read_bytes()
    code, out, err = run_cli("export", zoo, "--images", image, "--out", image)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"deepvision export: error: --out {image} is an input of this command ({image}) and "
                                f"would be overwritten; choose another output file"]
    assert image.read_bytes() == before and sorted(tmp_path.iterdir()) == [image]


def test_onnx_opset_is_the_one_asked_for_or_refused(runs, tmp_path, capsys):
    from deepvision.export import export as E

    _, zoo, _, _ = runs
    target = tmp_path / "z13.onnx"
    try:  # the exporter writes opset 18 and converts down; a model it cannot convert must not pass as opset 13
        E.export_run(zoo, format="onnx", opset=13, out=target, quiet=True)
    except UserError as exc:
        assert "could not write this model at opset 13" in str(exc) and not list(tmp_path.iterdir())
    else:
        onnx = pytest.importorskip("onnx")
        assert [o.version for o in onnx.load(str(target)).opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert "Traceback" not in capsys.readouterr().err  # the converter's own log lines stay quiet


def test_parity_is_judged_relative_to_the_logits():
    """A freshly initialised network has tiny logits: a difference of 1e-10 is small in absolute terms
    but 0.1% of logits of 1e-7, and must fail a 1e-4 relative check."""
    from deepvision.export.export import ClassificationExport

    layer = torch.nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.mul_(1e-9)
        layer.bias.zero_()
    samples = torch.rand(6, 4, generator=torch.Generator().manual_seed(0)) * 255
    with torch.inference_mode():
        expected = layer(samples).numpy()
    peak = float(np.abs(expected).max())
    assert 1e-8 < peak < 1e-6
    hooks = ClassificationExport(None)
    same = hooks.parity(layer, samples, expected.copy(), 1e-4, "6 samples")
    assert same.ok and same.fields["relative_diff"] == 0.0
    off = hooks.parity(layer, samples, expected + np.float32(1e-3 * peak), 1e-4, "6 samples")
    assert not off.ok and off.fields["max_abs_diff"] < 1e-9
    assert abs(off.fields["relative_diff"] - 1e-3) < 1e-4
    assert "relative error 1.00e-03" in off.line


def test_a_run_exports_with_the_hooks_of_its_task():
    from deepvision.export.detection import DetectionExport
    from deepvision.export.export import ClassificationExport
    from deepvision.export.hooks import hooks_for

    assert hooks_for("classification") is ClassificationExport
    assert hooks_for("age") is ClassificationExport  # derived from classification: exported like it
    assert hooks_for("detection") is DetectionExport
    with pytest.raises(UserError, match="task"):
        hooks_for("segmentation")


def test_export_replaces_only_a_model_file_of_its_format(runs, run_cli, tmp_path):
    """A history.csv copied to h.onnx (any file named like the output) was replaced without a word."""
    _, zoo, _, _ = runs
    (tmp_path / "pb.onnx").write_bytes(b"\x08\x01\x12\x04none")  # a protobuf (a TensorFlow .pb opens so)
    code, out, err = run_cli("export", zoo, "--out", tmp_path / "pb.onnx")
    assert (code, out) == (2, "") and "exists and is not an ONNX file deepvision exported" in err
    assert (tmp_path / "pb.onnx").read_bytes() == b"\x08\x01\x12\x04none"
    (tmp_path / "h.onnx").write_text("epoch,loss\n1,0.5\n")
    code, out, err = run_cli("export", zoo, "--out", tmp_path / "h.onnx")
    assert (code, out) == (2, "")
    assert f"--out {tmp_path / 'h.onnx'} exists and is not an ONNX file deepvision exported" in err
    assert (tmp_path / "h.onnx").read_text() == "epoch,loss\n1,0.5\n"
    for _ in range(2):  # a new file, then its own export again
        code, _, err = run_cli("export", zoo, "--out", tmp_path / "m.onnx")
        assert code == 0, err
    import onnx  # a user's own model (no deepvision record) is not replaced either

    model = onnx.load(str(tmp_path / "m.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "theirs.onnx"))
    before = (tmp_path / "theirs.onnx").read_bytes()
    code, out, err = run_cli("export", zoo, "--out", tmp_path / "theirs.onnx")
    assert (code, out) == (2, "") and "exists and is not an ONNX file deepvision exported" in err, err
    assert (tmp_path / "theirs.onnx").read_bytes() == before


def test_a_torchscript_export_replaces_only_a_torchscript_archive(runs, run_cli, tmp_path):
    """A checkpoint renamed to ck.torchscript was replaced: its zip header passed for TorchScript's."""
    _, zoo, _, _ = runs
    checkpoint = next((Path(zoo) / "checkpoints").glob("*.pt"))
    (tmp_path / "ck.torchscript").write_bytes(checkpoint.read_bytes())
    code, out, err = run_cli("export", zoo, "--format", "torchscript", "--out", tmp_path / "ck.torchscript")
    assert (code, out) == (2, "") and "exists and is not a TorchScript file deepvision exported" in err
    assert (tmp_path / "ck.torchscript").read_bytes() == checkpoint.read_bytes()
    for _ in range(2):  # a new file, then its own export again
        code, _, err = run_cli("export", zoo, "--format", "torchscript", "--out", tmp_path / "m.torchscript")
        assert code == 0, err
    import torch

    torch.jit.save(torch.jit.script(torch.nn.ReLU()), str(tmp_path / "theirs.torchscript"))  # another program's
    before = (tmp_path / "theirs.torchscript").read_bytes()
    code, out, err = run_cli("export", zoo, "--format", "torchscript", "--out", tmp_path / "theirs.torchscript")
    assert (code, out) == (2, "") and "exists and is not a TorchScript file deepvision exported" in err, err
    assert (tmp_path / "theirs.torchscript").read_bytes() == before


def test_a_detection_export_says_why_it_checks_on_noise(tmp_path):
    """A run whose dataset is refused was checked on noise images "(the run's dataset is not at hand)"."""
    from types import SimpleNamespace

    from deepvision.export.detection import sample_images

    (tmp_path / "dataset.json").write_text('{"format": "deepvision-detection", "version": 99}')
    loaded = SimpleNamespace(cfg=SimpleNamespace(data=SimpleNamespace(root=str(tmp_path))))
    images, source = sample_images(loaded)
    assert len(images) == 2 and source.startswith("2 noise images (the run's dataset was refused: ")
    assert "is not a deepvision detection dataset of version 1" in source
    loaded.cfg.data.root = str(tmp_path / "absent")
    assert sample_images(loaded)[1] == "2 noise images (the run's dataset is not at hand)"


def test_sigterm_during_an_export_leaves_no_hidden_temporary_file(runs, run_cli, tmp_path, monkeypatch):
    """SIGTERM's default action raised nothing: the atomic writer's .NAME.onnx.XXXX.tmp stayed beside --out."""
    import os
    import shutil
    import signal

    from deepvision.export.export import ClassificationExport

    _, zoo, _, _ = runs
    written = ClassificationExport.run_file

    def run_file(self, fmt, path, samples, dynamic_batch):
        assert path.is_file()  # the temporary file is there when the signal comes
        os.kill(os.getpid(), signal.SIGTERM)
        return written(self, fmt, path, samples, dynamic_batch)

    monkeypatch.setattr(ClassificationExport, "run_file", run_file)
    run = shutil.copytree(zoo, tmp_path / "run", ignore=shutil.ignore_patterns("export"))
    outs = tmp_path / "outs"
    outs.mkdir()
    for out in (outs / "m.onnx", outs / "new" / "m.onnx", None):  # nor a folder made for it (RUN/export)
        code, _, err = run_cli("export", run, *(("--out", out) if out else ()))
        assert (code, err) == (143, "deepvision export: terminated (SIGTERM); unfinished files were removed\n"), err
        assert os.listdir(outs) == [] and not (run / "export").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the caller's again


def test_export_never_writes_through_a_link_planted_as_the_runs_export_folder(runs, run_cli, tmp_path):
    """RUN/export -> a folder elsewhere: the default --out replaced an export lying outside the run."""
    import shutil

    _, zoo, _, images = runs
    run = tmp_path / "run"
    shutil.copytree(zoo, run)
    shutil.rmtree(run / "export", ignore_errors=True)  # an earlier test's export of the shared run
    (tmp_path / "outside").mkdir()
    (run / "export").symlink_to(tmp_path / "outside")
    code, out, err = run_cli("export", run, "--images", *images[:2])
    assert (code, out) == (2, "") and err == (f"deepvision export: error: {run / 'export'} is a symbolic link; "
                                              f"refusing to write through it (make it a real folder of the run)\n"), err
    assert list((tmp_path / "outside").iterdir()) == []
    (run / "export").unlink()
    code, out, err = run_cli("export", run, "--images", *images[:2])
    assert code == 0 and (run / "export" / "run.onnx").is_file(), err


def test_external_data_is_recorded_and_another_one_is_refused(runs, run_cli, tmp_path, monkeypatch):
    """Weights stored beside the file (past protobuf's limit, forced here) have their size and sha256 in the
    metadata; a `.data` file copied in from another export, or external data no record names (another tool's
    file), is refused by predict and the detector loader in one line naming both files."""
    import onnx

    from deepvision.export import onnx_export
    from deepvision.export.detection import load_exported
    from deepvision.fileio import sha256_of

    _, zoo, _, images = runs
    monkeypatch.setattr(onnx_export, "_ONNX_SINGLE_FILE_LIMIT", 0)
    target, sidecar = tmp_path / "a.onnx", tmp_path / "a.onnx.data"
    code, out, err = run_cli("export", zoo, "--out", target)
    assert code == 0 and sidecar.is_file(), err
    meta = json.loads({p.key: p.value for p in onnx.load(str(target), load_external_data=False).metadata_props}
                      ["deepvision"])
    assert meta["external_data"] == {"file": "a.onnx.data", "bytes": sidecar.stat().st_size,
                                     "sha256": sha256_of(sidecar)}
    code, out, err = run_cli("predict", target, images[0])
    assert code == 0, err
    own = sidecar.read_bytes()
    other = bytearray(own)
    other[-4:] = b"\x00\x00\x80\x3f"  # another export of the architecture: other weights, the same size
    for data in (bytes(other), own[:-4]):
        sidecar.write_bytes(data)
        code, out, err = run_cli("predict", target, images[0])
        assert (code, out) == (2, "") and err.count("\n") == 1, err
        assert f"{sidecar} is not the external data exported with {target} ({len(data):,} bytes" in err
        assert f"records {len(own):,} bytes, sha256 {meta['external_data']['sha256'][:12]}); put back" in err
        with pytest.raises(UserError, match="is not the external data exported with"):
            load_exported(target)
        assert sidecar.read_bytes() == data
    sidecar.write_bytes(own)
    foreign = tmp_path / "f.onnx"  # re-saved by onnx itself: the record names a.onnx.data, the graph f.onnx.data
    model = onnx.load(str(target))
    onnx.save_model(model, str(foreign), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="f.onnx.data", size_threshold=0)
    code, out, err = run_cli("predict", foreign, images[0])
    assert code == 2 and "keeps its weights in f.onnx.data, but its metadata records them in a.onnx.data" in err
    model = onnx.load(str(target))  # and without the record: a file another tool wrote
    entry = next(p for p in model.metadata_props if p.key == "deepvision")
    entry.value = json.dumps({k: v for k, v in meta.items() if k != "external_data"})
    (tmp_path / "f.onnx.data").unlink()
    onnx.save_model(model, str(foreign), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="f.onnx.data", size_threshold=0)
    code, out, err = run_cli("predict", foreign, images[0])
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"{foreign} keeps its weights in f.onnx.data beside it but its deepvision metadata records no size and " \
           "sha256 of them" in err and "onnx.save(onnx.load(IN), OUT)" in err
    with pytest.raises(UserError, match="records no size and sha256"):
        load_exported(foreign)


def test_check_images_under_the_data_root_are_found_in_linked_folders(tmp_path):
    """The export's check batch takes the run's images as training reads them: a linked class folder's
    sub-folder is followed, not left out."""
    from types import SimpleNamespace

    from deepvision.export.export import check_inputs

    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "ext").mkdir()
    for i in range(2):
        (tmp_path / "ext" / f"{i}.png").write_bytes(b"x")
    os.symlink(tmp_path / "ext", tmp_path / "root" / "a" / "more")
    loaded = SimpleNamespace(cfg=SimpleNamespace(data=SimpleNamespace(root=str(tmp_path / "root"))),
                             pre=SimpleNamespace(load=lambda p: torch.zeros(1, 2, 2)))
    batch, source = check_inputs(loaded, None)
    assert batch.shape == (2, 1, 2, 2) and source == f"the 2 images under {tmp_path / 'root'}"
