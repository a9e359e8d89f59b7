"""`deepvision export RUN` on a detection run trained by the engine: TorchScript and ONNX through the CLI,
boxes/scores/labels parity, one result type with classification exports, nothing written on failure."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from deepvision.data.detection import load_index
from deepvision.data.preprocess import open_image, pil_to_tensor
from deepvision.errors import UserError
from deepvision.export.detection import SingleImageDetector, load_exported
from deepvision.export.result import ExportResult
from deepvision.runs.loading import load_run


def _test_image(run) -> torch.Tensor:
    root = load_run(run).cfg.data.root
    return pil_to_tensor(open_image(load_index(root, ["test"]).splits["test"][0].file, 3))


def _same_detections(got, ref) -> None:
    """The same detections as the PyTorch model, box for box (the barely trained model ties many scores at its
    20-detection cap, where which tied box survives is arbitrary)."""
    from deepvision.export.detection import compare_detections

    got = tuple(np.asarray(t) for t in got)
    ref = tuple(t.numpy() for t in ref)
    assert len(got[1]) == len(ref[1]) > 0
    report = compare_detections([ref], [got], min_score=0.0, score_tol=1e-4, cap=20)
    assert report.ok and report.matched > 0 and report.max_box_diff < 1e-2, report.line()


def test_export_onnx_through_the_cli(trained_detection_run, run_cli, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    target = tmp_path / "det.onnx"
    code, out, err = run_cli("export", trained_detection_run, "--out", target)  # --format onnx is the default
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("parity on 3 image(s): ") and lines[0].endswith(": ok")
    assert lines[1:] == [f"exported {target}",
                         f"  {target.stat().st_size / 1e6:.1f} MB, onnx, 3 classes; verified against PyTorch"]
    from deepvision.fileio import file_mode

    assert target.stat().st_mode & 0o777 == file_mode()  # like every other output, not mkstemp's 0600
    run_model, classes = load_exported(target)
    assert classes == ["disc", "square", "triangle"]
    image = _test_image(trained_detection_run)
    with torch.inference_mode():
        ref = SingleImageDetector(load_run(trained_detection_run).model.cpu())(image)
    _same_detections(run_model(image.numpy()), ref)
    meta = json.loads({p.key: p.value for p in onnx.load(str(target)).metadata_props}["deepvision"])
    assert meta["task"] == "detection" and meta["classes"] == classes and meta["input"]["dtype"] == "uint8"
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    code, _, err = run_cli("predict", target, tmp_path / "x.png")
    assert code == 2 and "is an exported detector" in err
    model = onnx.load(str(target))  # the plain class list no longer the deepvision metadata's
    next(p for p in model.metadata_props if p.key == "classes").value = '["square", "disc", "triangle"]'
    onnx.save(model, str(tmp_path / "swapped.onnx"))
    with pytest.raises(UserError, match="its metadata's two classes records differ"):
        load_exported(tmp_path / "swapped.onnx")
    model = onnx.load(str(target))  # a second `classes` entry: onnxruntime's map would answer with it alone
    entry = model.metadata_props.add()
    entry.key, entry.value = "classes", '["square", "disc", "triangle"]'
    onnx.save(model, str(tmp_path / "twice.onnx"))
    with pytest.raises(UserError, match=r"twice.onnx: ONNX metadata key 'classes' is given twice; the file is damaged"):
        load_exported(tmp_path / "twice.onnx")


def test_export_torchscript_api_result_and_failures(trained_detection_run, run_cli, tmp_path, monkeypatch, capsys):
    from deepvision.api import export
    from deepvision.export import detection

    result = export(trained_detection_run, format="torchscript")  # default: RUN/export/RUN_NAME.torchscript
    printed = capsys.readouterr().out.splitlines()
    assert printed == [result.parity.line(), *result.summary().splitlines()]
    assert result.summary().endswith("verified against PyTorch")
    assert isinstance(result, ExportResult) and result.task == "detection" and result.verified
    assert result.path == trained_detection_run / "export" / "det.torchscript"
    assert result.parity.ok and result.parity.compared > 0 and result.parity.max_box_diff < 1e-2
    assert result.checked == 3 and "test image(s)" in result.check_source
    run_model, classes = load_exported(result.path)
    assert classes == ["disc", "square", "triangle"]
    image = torch.randint(0, 256, (3, 70, 110), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = SingleImageDetector(load_run(trained_detection_run).model.cpu())(image)
    _same_detections(run_model(image), ref)  # another size than the check images
    import zipfile

    twice = tmp_path / "twice.torchscript"  # a member listed twice: torch reads the first, zip tools the last
    twice.write_bytes(result.path.read_bytes())
    with zipfile.ZipFile(twice, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile's "Duplicate name"
        zf.writestr(next(n for n in zf.namelist() if n.endswith("classes.json")), '["a", "b", "c"]')
    with pytest.raises(UserError, match=r"twice\.torchscript is damaged \(it holds the member .*classes\.json' "):
        load_exported(twice)

    code, _, err = run_cli("export", trained_detection_run, "--dynamic-batch")
    assert code == 2 and "--dynamic-batch does not apply" in err
    code, _, err = run_cli("export", trained_detection_run, "--format", "torchscript", "--out", tmp_path / "a.pt")
    assert code == 2 and "must end in .torchscript" in err

    # a parity failure leaves the previous file untouched and no temporary file behind
    before = result.path.read_bytes()
    failing = detection.ParityReport(3, 1, 0, 0.0, 0.0, ["image 0: no exported match"])
    monkeypatch.setattr(detection, "compare_detections", lambda *a, **k: failing)
    code, _, err = run_cli("export", trained_detection_run, "--format", "torchscript")
    assert code == 2 and "differs from PyTorch" in err and "nothing was written" in err
    assert result.path.read_bytes() == before and [p.name for p in result.path.parent.iterdir()] == [result.path.name]
    result.path.unlink()  # the session's run as it was


def test_parity_tolerates_ties_at_the_detection_cap():
    from deepvision.export.detection import compare_detections

    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float32)
    ref = [(boxes[:2], np.array([0.9, 0.3], np.float32), np.array([1, 1]))]
    other_tie = [(boxes[[0, 2]], np.array([0.9, 0.3], np.float32), np.array([1, 1]))]  # the other box of a tie
    assert compare_detections(ref, other_tie, cap=2).ok  # the list is full: which tied box survives is arbitrary
    assert not compare_detections(ref, other_tie, cap=3).ok  # not full: every detection must match
    assert not compare_detections(ref, other_tie).ok


def test_detection_export_subcommand_goes_through_the_one_exporter(trained_detection_run, run_cli, tmp_path):
    target = tmp_path / "det.torchscript"
    code, out, err = run_cli("detection", "export", trained_detection_run, "--out", target, "--no-check")
    assert code == 0, err
    assert out.splitlines() == [f"exported {target}",
                                f"  {target.stat().st_size / 1e6:.1f} MB, torchscript, 3 classes; not verified "
                                f"(--no-check)"]
    _, classes = load_exported(target)
    assert classes == ["disc", "square", "triangle"]
    code, _, err = run_cli("export", trained_detection_run, "--format", "torchscript", "--opset", "17")
    assert code == 2 and "--opset applies to --format onnx only" in err
