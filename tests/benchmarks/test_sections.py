"""The BENCHMARKS.md sections the benchmark scripts write, built from fake measurements (nothing is timed)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
MACHINE = "2026-12-05, Test CPU, 2 cores (2 torch threads), no GPU"


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    loaded = []

    def load(name: str):
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in [*loaded, "machine", "corpus"]:
        sys.modules.pop(name, None)


def table(text: str) -> list[str]:
    """The lines of the first markdown table in `text`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


@pytest.mark.parametrize(("argv", "message"), [
    (["--images", "1000000"], "--images must be a whole number from 1 to 19,990, got 1000000"),
    (["--images", "0"], "--images must be a whole number from 1 to 19,990, got 0"),
    (["--batch", "256", "--steps", "100"], "--batch 256 x --steps 100 asks for 25,600 record images"),
])
def test_imagenet_throughput_refuses_more_images_than_the_fake_ceiling_up_front(script, monkeypatch, capsys,
                                                                                argv, message):
    """--images (or batch x steps) past the shared fake-data ceiling: one line, exit 2, no photo made."""
    from deepvision.safeload import MAX_FAKE_IMAGES

    module = script("imagenet_throughput")
    assert module.record_images(None, 8, 3) == 24
    assert module.record_images(MAX_FAKE_IMAGES - module.CLASSES, 8, 3) == MAX_FAKE_IMAGES - module.CLASSES
    monkeypatch.setattr(module, "make_records", lambda *a: pytest.fail("records were built"))
    monkeypatch.setattr(sys, "argv", ["imagenet_throughput.py", "--device", "cpu", *argv])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("imagenet_throughput.py: error: ") and message in err, err


def test_serve_load_section(script):
    rows = [{"clients": 1, "requests": 150, "failed": 0, "rps": 90.64, "p50": 9.26, "p95": 17.21},
            {"clients": 16, "requests": 150, "failed": 2, "rps": 66.5, "p50": 179.3, "p95": 250.349}]
    text = script("serve_load").section(rows, "the MXNet ResNet fixture run (3x32x32)", MACHINE)
    assert text.startswith(f"Machine: {MACHINE}. Server: the MXNet ResNet fixture run (3x32x32), ")
    assert table(text) == ["| clients | requests | failed | requests/s | median (ms) | p95 (ms) |",
                           "|---:|---:|---:|---:|---:|---:|",
                           "| 1 | 150 | 0 | 90.6 | 9.3 | 17.2 |", "| 16 | 150 | 2 | 66.5 | 179.3 | 250.3 |"]


def test_orientation_section_and_one_title_per_variant(script):
    orientation = script("orientation")
    info = {"dim": 5120, "images_per_second": 21.24}
    res = {"best_params": {"C": 1.0}, "fit_seconds": 12.44, "test_rows": 300, "accuracy": 0.96333,
           "per_class": {"0": {"precision": 0.9, "recall": 1.0, "f1-score": 0.947, "support": 75.0}},
           "weighted_avg": {"precision": 0.96, "recall": 0.963, "f1-score": 0.962}}
    text = orientation.section("photos", False, 1200, 2.51, info, res, MACHINE)
    assert "whole image at 224 x 224, `features.18` pooled 2x2, 5,120 values" in text
    assert table(text) == ["| step | result |", "|---|---|",
                           "| dataset (exact quarter turns) | 1,200 images in 2.5 s |",
                           "| feature extraction, batch 32, CPU | **21.2 images/s** (decode + preprocess + forward) |",
                           "| logreg | best C = 1, fit 12.4 s |",
                           "| held-out accuracy (300 images) | **0.9633** (reference: 93%) |"]
    assert "| 0 | 0.90 | 1.00 | 0.95 | 75 |\n| average | 0.96 | 0.96 | 0.96 | 300 |" in text
    assert "resize 256 + centre crop 224" in orientation.section("photos", True, 1200, 2.5, info, res, MACHINE)
    titles = {orientation.section_title(s, c) for s in ("photos", "corpus") for c in (False, True)}
    assert orientation.section_title("photos", False) == orientation.TITLE
    assert len(titles) == 4 and orientation.section_title("corpus", True) == (
        f"{orientation.TITLE}: corpus mosaics, centre crop")


def test_mxnet_parity_section(script):
    mxnet_parity = script("mxnet_parity")
    rows = [{"net": "lenet", "input": "1x16x16", "target": "mxnet:graph", "probs": 8.94e-08, "logits": 6.01e-07,
             "scale": 2.7012, "top1": 1.0}]
    text = mxnet_parity.section(rows, MACHINE)
    assert text.startswith(mxnet_parity.INTRO) and f"Machine: {MACHINE}." in text
    assert table(text)[2:] == ["| lenet | 1x16x16 | mxnet:graph | 8.9e-08 | 6.0e-07 | 2.7 | 100% |"]
    assert set(mxnet_parity.TITLES) == {False, True} and len(set(mxnet_parity.TITLES.values())) == 2


def test_keras_parity_sections(script):
    keras_parity = script("keras_parity")
    result = {"probs": 3.21e-07, "logits": 9.3e-07, "largest": 0.8131, "top1": 1.0}
    committed = keras_parity.section([{"name": "conv1d.h5", "keras": "Keras 3.15", **result},
                                      {"name": "dense_raw.keras", "keras": "Keras 3.15", **result, "probs": None}],
                                     False, MACHINE)
    assert keras_parity.COMMITTED in committed and keras_parity.LIVE not in committed
    assert table(committed)[2:] == ["| conv1d.h5 | Keras 3.15 | 3.2e-07 | 9.3e-07 | 0.813 | 100% |",
                                    "| dense_raw.keras | Keras 3.15 | - | 9.3e-07 | 0.813 | 100% |"]
    live = keras_parity.section([{"name": "VGG16", "input": "32x32x3", "layers": 21, "worst": 4.94e-07,
                                  "where": "fc2", **result, "top1": 2 / 3}], True, MACHINE)
    assert keras_parity.LIVE in live
    assert table(live)[2:] == ["| VGG16 | 32x32x3 | 21 | 4.9e-07 (fc2) | 3.2e-07 | 9.3e-07 | 0.813 | 67% |"]


def test_decode_guards_section(script):
    rows = [("JPG 256x256x3", 1500.0, 1600.0, "simplejpeg", 400_000.0),
            ("PNG 28x28x1", 20_000.0, 40_000.0, "cv2.imdecode", 2_000_000.0)]
    text = script("decode_guards").section(rows, 2.0, MACHINE)
    assert "2 s per measurement" in text
    assert table(text)[2:] == ["| JPG 256x256x3 | 1,500 | 1,600 (simplejpeg) | 0.94 | 2.5 |",
                               "| PNG 28x28x1 | 20,000 | 40,000 (cv2.imdecode) | 0.50 | 0.5 |"]


def test_records_slots_section_gives_medians(script):
    results = {"shared-memory slot pool": [{"rate": 900.0, "cpu_us": 700.0}, {"rate": 1000.0, "cpu_us": 650.0},
                                           {"rate": 1200.0, "cpu_us": 600.0}],
               "plain DataLoader, fresh batches": [{"rate": 800.0, "cpu_us": 900.0}]}
    args = argparse.Namespace(count=300, batch=64, workers=2, rounds=3, seconds=4.0)
    text = script("records_slots").section(results, args, MACHINE)
    assert "300 corpus photos" in text and "3 rounds of 4 s" in text
    assert table(text)[2:] == ["| shared-memory slot pool | 1,000 | 650 |",
                               "| plain DataLoader, fresh batches | 800 | 900 |"]


def test_face_detectors_section(script):
    rows = {"haar": {"found": 119, "recall": 0.3125, "false": 0, "pick_ok": 0.54, "cpu_ms": 11.2, "wall_ms": 50.62},
            "mtcnn": {"found": 234, "recall": 0.92, "false": 1, "pick_ok": 0.925, "cpu_ms": 62.5, "wall_ms": 292.4}}
    text = script("face_detectors").section(rows, "/clips/short_hamilton_clip.mp4", 275, 300, 40, 64,
                                            "hand-checked reference (faces.json)", MACHINE)
    assert "Clip: short_hamilton_clip.mp4, 275 frames resized to width 300" in text
    assert "64 faces in 40 frames (hand-checked reference (faces.json))" in text
    assert table(text)[2:] == ["| haar | 119/275 (43%) | 31% | 0 | 54% | 11.2 | 89 | 50.6 |",
                               "| mtcnn | 234/275 (85%) | 92% | 1 | 92% | 62.5 | 16 | 292.4 |"]
    assert "tracked" not in text
    rows["mtcnn, tracked"] = {"found": 240, "recall": 0.9, "false": 0, "pick_ok": 0.9, "cpu_ms": 12.5,
                              "wall_ms": 60.0, "searched": 70, "fast": 20, "detect_every": 5}
    text = script("face_detectors").section(rows, "clip.mp4", 275, 300, 40, 64, "reference", MACHINE)
    assert table(text)[-1] == "| mtcnn, tracked | 240/275 (87%) | 90% | 0 | 90% | 12.5 | 80 | 60.0 |"
    assert ("mtcnn, tracked: as the emotion app runs it by default, a search every 5th frame, the faces "
            "carried and re-checked by O-Net in between; 70 of 275 frames searched, 20 of them") in text


def test_fer_pretrained_section_with_and_without_keras(script):
    fer = script("fer_pretrained")
    assert fer.split_name(Path("fer2013_7/val.hdf5")) == "PrivateTest (`val.hdf5`)"
    assert fer.split_name(Path("mine.hdf5")) == "`mine.hdf5`"
    with_keras = {"samples": 3589, "deepvision_rank1": 0.58150, "rank5": 0.98411, "cross_entropy": 1.14762,
                  "deepvision_rank1_6class": 0.58818, "keras_rank1": 0.58150, "agree": 1.0, "top_prob_diff": 1.8e-6,
                  "keras_rank1_6class": 0.58818, "keras_cv2_rank1": 0.58178}
    alone = {"samples": 3589, "deepvision_rank1": 0.58373, "rank5": None, "cross_entropy": 1.2,
             "deepvision_rank1_6class": 0.58902}
    text = fer.section({"PrivateTest (`val.hdf5`)": with_keras, "PublicTest (`test.hdf5`)": alone}, MACHINE)
    assert table(text)[2:] == [
        "| PrivateTest (`val.hdf5`) | 3,589 | 58.15% | 58.15% | 100.00% | 1.8e-06 | 58.82% |",
        "| PublicTest (`test.hdf5`) | 3,589 | 58.37% | - | - | - | 58.90% |"]
    assert ("- PrivateTest (`val.hdf5`): deepvision rank-5 98.41%, cross-entropy 1.1476; Keras on faces resized "
            "by cv2.resize as fer does: 58.18%") in text
    assert "- PublicTest (`test.hdf5`): deepvision cross-entropy 1.2000\n" in text


def test_detection_curve_table_marks_the_first_epoch_at_the_target(script):
    detection = script("detection_synthetic")
    curve = [{"epoch": 9, "map50": 0.631, "map": 0.353, "seconds": 538.2},
             {"epoch": 18, "map50": 0.9012, "map": 0.641, "seconds": 1607.4},
             {"epoch": 27, "map50": 0.937, "map": 0.731, "seconds": 2668.0}]
    assert detection.curve_table(curve) == [
        "| epoch | 9 | 18 | 27 |", "|---|---|---|---|",
        "| VOC mAP@0.5 | 0.631 | **0.901** | 0.937 |", "| COCO mAP | 0.353 | 0.641 | 0.731 |",
        "| training s | 538 | 1,607 | 2,668 |", "",
        "VOC mAP@0.5 >= 0.90 first at epoch 18, after 1,607 s of training; 0.937 (COCO mAP 0.731) at the end."]
    assert detection.curve_table(curve[:1])[-1] == (
        "VOC mAP@0.5 >= 0.90 not reached; 0.631 (COCO mAP 0.353) at the end.")


def test_fer2013_runs_section_one_row_per_run(script):
    fer = script("fer2013_runs")
    run = {"recipe": "E4: EmotionVGGNet", "model": "emotion_vgg", "classes": 6, "precision": "float32", "epochs": 75,
           "minutes": 76.5,
           "reference_val": 68.51, "reference_test": 66.96, "best_epoch": 70,
           "best_val": 0.689, "val": 0.6851, "val_flip": 0.69, "test": 0.6696, "test_flip": 0.672}
    text = fer.section({"e4": run}, MACHINE)
    rows = table(text)[2:]  # under the header and its rule
    assert len(rows) == 1
    assert rows[0].startswith("| e4 | E4: EmotionVGGNet (`emotion_vgg`) | 6 | float32 | 75 | 76.5 min |")
    assert "| 68.51% | **66.96%** | 67.20% | 68.90% (70) | 68.51% / 66.96% |" in rows[0] and MACHINE in text


def test_onnx_vs_torch_section_names_the_weights_and_relative_parity(script):
    onnx_vs_torch = script("onnx_vs_torch")
    rows = [{"model": "lenet", "weights": "random", "input": "1x28x28", "batch": 1, "torch": 1202.31,
             "ort": 5228.4, "diff": 1.23e-7, "scale": 0.0412},
            {"model": "tv:mobilenet_v2", "weights": "IMAGENET1K_V1", "input": "3x224x224", "batch": 32,
             "torch": 23.7, "ort": 154.3, "diff": 2.5e-6, "scale": 17.31}]
    text = onnx_vs_torch.section(rows, MACHINE, "1.32.0", None)
    assert text.startswith(f"Machine: {MACHINE}; onnxruntime 1.32.0, default threads. Weights: torchvision's "
                           "published ones where the weights column names them, else random")
    assert "relative to the largest PyTorch logit" in text
    assert table(text) == [
        "| model | weights | input | batch | PyTorch eager (img/s) | onnxruntime (img/s) | speed-up | largest logit "
        "| max diff / largest logit |", "|---|---|---|---:|---:|---:|---:|---:|---:|",
        "| lenet | random | 1x28x28 | 1 | 1,202.3 | 5,228.4 | 4.35x | 0.041 | 1.2e-07 |",
        "| tv:mobilenet_v2 | IMAGENET1K_V1 | 3x224x224 | 32 | 23.7 | 154.3 | 6.51x | 17 | 2.5e-06 |"]
    assert onnx_vs_torch.TITLE in (BENCHMARKS.parent / "BENCHMARKS.md").read_text()


def test_onnx_vs_torch_uses_published_weights_only_when_cached(script, monkeypatch, tmp_path):
    onnx_vs_torch = script("onnx_vs_torch")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert onnx_vs_torch.published_weights("lenet") is None
    assert onnx_vs_torch.published_weights("tv:mobilenet_v2") is None  # not in the empty hub cache
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth").write_bytes(b"")
    assert onnx_vs_torch.published_weights("tv:mobilenet_v2") == "IMAGENET1K_V1"


def test_data_layer_section_medians_ratios_and_verdicts(script):
    layer = script("data_layer_before_after")
    faster = layer.Workload("records uint8, img/s", "", None, before=[900.0, 1000.0, 1100.0],
                            after=[990.0, 1050.0, 1210.0])
    noisy = layer.Workload("LeNet, samples/s", "", None, before=[3600.0, 3700.0], after=[3800.0, 3500.0])
    slower = layer.Workload("SSDlite, img/s", "", None, before=[20.0, 21.0], after=[18.0, 20.16],
                            failed={})
    lost = layer.Workload("records f32, img/s", "", None, after=[700.0], failed={"before": "ImportError: x"})
    trees = {"before": "084421fb96e1", "after": "this checkout (a14815d)"}
    mxnet = {"rates": [240.0, 250.0, 260.0], "version": "1.9.1"}
    text = layer.section([faster, lost, noisy, slower], trees, "3 rounds.", MACHINE, mxnet)
    flat = " ".join(text.split())  # the notes are wrapped at 80 columns
    assert flat.startswith(f"Machine: {MACHINE}. Before: 084421fb96e1; after: this checkout")
    assert table(text)[2:] == [
        "| records uint8, img/s | 1,000 (900-1,100) | 1,050 (990-1,210) | 1.10 (1.05-1.10) |",
        "| records f32, img/s | n/a | 700 | n/a |",
        "| LeNet, samples/s | 3,650 (3,600-3,700) | 3,650 (3,500-3,800) | 1.00 (0.95-1.06) |",
        "| SSDlite, img/s | 20.5 (20-21) | 19.1 (18-20.2) | 0.93 (0.90-0.96) |"]
    assert "- records uint8, img/s: after/before 1.10, at least as fast in every round -" in flat
    assert "- LeNet, samples/s: after/before 1.00, unchanged within noise (the per-round ratios" in flat
    assert "- SSDlite, img/s: after/before 0.93, SLOWER in every round -" in flat
    assert "- records f32, img/s: not measured in the before tree: ImportError: x -" in flat
    assert "- records uint8, img/s / MXNet: before 4.00x, after 4.20x (goal >= 3x: met) -" in flat
    assert flat.endswith("- records f32, img/s / MXNet: after 2.80x")
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("|"))


def test_data_layer_steady_rate_leaves_the_first_epoch_out(script, tmp_path):
    layer = script("data_layer_before_after")
    history = tmp_path / "history.csv"
    history.write_text("epoch,lr,train_loss,samples_per_s,seconds\n1,0.1,2.0,1000.0,9\n2,0.1,1.0,3000.0,3\n"
                       "3,0.1,0.5,3600.0,2.5\n4,0.1,0.4,3500.0,2.6\n")
    assert layer.steady_rate(history) == 3500.0
    history.write_text("epoch,lr,train_loss,samples_per_s,seconds\n1,0.1,2.0,1000.0,9\n")
    assert layer.steady_rate(history) == 1000.0
    history.write_text("epoch,lr,train_loss,samples_per_s,seconds\n")
    with pytest.raises(layer.ChildFailed):
        layer.steady_rate(history)


def _profile(step: float, untraced: float, overlap: float, dtype: str, layout: str, **ms: float) -> dict:
    cats = ("conv forward", "conv backward", "tanh fwd+bwd", "max-pool fwd+bwd", "dense fwd+bwd", "loss/softmax",
            "optimizer update", "casts, layout copies", "other ops")
    categories = dict(zip(cats, ms.values(), strict=True))
    return {"step_ms": step, "categories": categories, "untraced_ms": untraced, "overlap_ms": overlap,
            "profiled_ms": sum(categories.values()) + untraced, "dtype": dtype, "memory_format": layout,
            "threads": 2, "keras": "3.15.1", "tensorflow": "2.21.0"}


def test_lenet_step_profile_section_tables_the_categories_and_computes_the_gap(script):
    profile = script("lenet_step_profile")
    dv = _profile(10.0, 1.0, 0.0, "bfloat16", "channels_last", cf=1.0, cb=3.1, t=1.55, p=1.0, d=0.5, lo=0.1,
                  o=0.2, ca=0.35, ot=0.45)
    base = _profile(11.5, 1.0, 0.0, "float32", "NCHW", cf=1.5, cb=4.0, t=1.5, p=1.2, d=0.6, lo=0.1, o=0.2,
                    ca=0.0, ot=0.4)
    keras = _profile(13.5, 1.5, 2.0, "float32", "NHWC", cf=1.2, cb=4.2, t=2.4, p=1.8, d=0.9, lo=0.15, o=0.75,
                     ca=0.0, ot=0.3)
    text = profile.section(dv, base, keras, 3, 200, MACHINE)
    assert text.startswith(f"Machine: {MACHINE}. One batch of 100 random 28x28x1 images")
    assert "medians over 3 round(s)" in text and "(bfloat16, channels_last) on 2 torch thread(s)" in text
    assert table(text) == [
        "| category (ms/step) | deepvision bfloat16, channels_last | deepvision float32, NCHW "
        "| Keras float32, NHWC | ratio |",
        "|---|---:|---:|---:|---:|",
        "| conv forward | 1.00 | 1.50 | 1.20 | 1.20x |",
        "| conv backward | 3.10 | 4.00 | 4.20 | 1.35x |",
        "| tanh fwd+bwd | 1.55 | 1.50 | 2.40 | 1.55x |",
        "| max-pool fwd+bwd | 1.00 | 1.20 | 1.80 | 1.80x |",
        "| dense fwd+bwd | 0.50 | 0.60 | 0.90 | 1.80x |",
        "| loss/softmax | 0.10 | 0.10 | 0.15 | 1.50x |",
        "| optimizer update | 0.20 | 0.20 | 0.75 | 3.75x |",
        "| casts, layout copies | 0.35 | 0.00 | 0.00 | 0.00x |",
        "| other ops | 0.45 | 0.40 | 0.30 | 0.67x |",
        "| untraced (Python, dispatch) | 1.00 | 1.00 | 1.50 | 1.50x |",
        "| **sum = profiled step** | 9.25 | 10.50 | 13.20 | 1.43x |",
        "| **step, no profiler** | 10.00 | 11.50 | 13.50 | 1.35x |",
        "| **samples/s** | 10,000 | 8,696 | 7,407 | 1.35x |"]
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert bullets == [
        "- deepvision's step takes 10.00 ms, Keras' 13.50 ms: 1.35x Keras' samples/s. 1.5x needs 9.00 ms, "
        "1.00 ms less.",
        "- In the profiled step, over 1/1.5 of Keras' time (by how much): casts, layout copies 0.35 vs 0.00 ms "
        "(+0.35); conv backward 3.10 vs 4.20 ms (+0.30); other ops 0.45 vs 0.30 ms (+0.25); conv forward "
        "1.00 vs 1.20 ms (+0.20).",
        "- Already under 1/1.5 of Keras' time: optimizer update (0.30 ms to spare), max-pool fwd+bwd (0.20 ms "
        "to spare), dense fwd+bwd (0.10 ms to spare), tanh fwd+bwd (0.05 ms to spare).",
        "- TensorFlow ran two or more ops at once for 2.00 ms of its profiled step (its inter-op threads); "
        "torch's ops ran one after another.",
        "- bfloat16, channels_last against float32, NCHW (time saved per category): conv backward +0.90 ms; "
        "conv forward +0.50 ms; max-pool fwd+bwd +0.20 ms; dense fwd+bwd +0.10 ms; other ops -0.05 ms; "
        "tanh fwd+bwd -0.05 ms; casts, layout copies -0.35 ms; whole step +1.50 ms.",
        "- deepvision: profiled step 9.25 ms against 10.00 ms without the profiler (its cost: -0.75 ms).",
        "- Keras: profiled step 13.20 ms against 13.50 ms without the profiler (its cost: -0.30 ms)."]
    alone = profile.section(dv, base, None, 1, 5, MACHINE)
    assert table(alone)[0] == ("| category (ms/step) | deepvision bfloat16, channels_last "
                               "| deepvision float32, NCHW |")
    assert "Keras" not in table(alone)[0] and not any(line.startswith("- deepvision's step") for line in
                                                      alone.splitlines())


def test_lenet_step_profile_shares_wall_time_among_concurrent_ops(script):
    profile = script("lenet_step_profile")
    events = [("a", 0.0, 10.0, "conv forward"), ("a", 2.0, 4.0, None), ("a", 6.0, 8.0, "casts, layout copies"),
              ("b", 5.0, 9.0, "tanh fwd+bwd"), ("b", 9.0, 12.0, None)]
    shares, overlap = profile.wall_shares(events, default=None)
    assert shares == pytest.approx({"conv forward": 7.0, "tanh fwd+bwd": 2.0, "casts, layout copies": 1.0})
    assert overlap == pytest.approx(4.0)
    shares, overlap = profile.wall_shares(events)  # a top-level event without a category: "other ops"
    assert shares == pytest.approx({"conv forward": 6.5, "tanh fwd+bwd": 2.0, "casts, layout copies": 1.0,
                                    "other ops": 2.5})
    assert overlap == pytest.approx(5.0)


def test_lenet_step_profile_names_the_ops_of_both_frameworks(script):
    profile = script("lenet_step_profile")
    torch_names = {"aten::conv2d": "conv forward", "aten::mkldnn_convolution": "conv forward",
                   "autograd::engine::evaluate_function: ConvolutionBackward0": "conv backward",
                   "aten::convolution_backward": "conv backward", "TanhBackward0": "tanh fwd+bwd",
                   "aten::max_pool2d_with_indices_backward": "max-pool fwd+bwd",
                   "MaxPool2DWithIndicesBackward0": "max-pool fwd+bwd", "aten::addmm": "dense fwd+bwd",
                   "TBackward0": "dense fwd+bwd", "aten::t": "dense fwd+bwd", "NllLossBackward0": "loss/softmax",
                   "aten::_log_softmax": "loss/softmax", "Optimizer.step#SGD.step": "optimizer update",
                   "aten::_foreach_add_": "optimizer update", "aten::_to_copy": "casts, layout copies",
                   "ToCopyBackward0": "casts, layout copies", "aten::empty": None, "aten::view": None}
    assert {n: profile.torch_category(n) for n in torch_names} == torch_names
    tf_names = {
        "StatefulPartitionedCall/sequential/conv2d/BiasAdd:_MklNativeFusedConv2D": "conv forward",
        "StatefulPartitionedCall/gradient_tape/sequential/conv2d_1/convolution/Conv2DBackpropFilter:"
        "_MklNativeConv2DBackpropFilterWithBias": "conv backward",
        "StatefulPartitionedCall/gradient_tape/sequential/conv2d/TanhGrad:TanhGrad": "tanh fwd+bwd",
        "StatefulPartitionedCall/sequential/max_pooling2d/MaxPool2d:_MklNativeMaxPool": "max-pool fwd+bwd",
        "StatefulPartitionedCall/sequential/dense/Tanh:_MklNativeFusedMatMul": "dense fwd+bwd",
        "StatefulPartitionedCall/gradient_tape/sequential/dense_1/BiasAdd/BiasAddGrad:BiasAddGrad":
            "dense fwd+bwd",
        "StatefulPartitionedCall/compile_loss/sparse_categorical_crossentropy/Sum:Sum": "loss/softmax",
        "StatefulPartitionedCall/sgd/Mul_9:Mul": "optimizer update",
        "StatefulPartitionedCall/sgd/AssignAddVariableOp_4:AssignAddVariableOp": "optimizer update",
        "StatefulPartitionedCall/Cast_3:Cast": "casts, layout copies",
        "StatefulPartitionedCall/ArgMax:ArgMax": "other ops",
        "ExecutorState::Process": None, "EagerLocalExecute: OptionalHasValue": None}
    assert {n: profile.tf_category(n) for n in tf_names} == tf_names


def test_fer2013_release_vs_csv_section(script):
    fer = script("fer2013_release_vs_csv")
    result = {"splits": {"Training": {"rows": 1167, "pool": 28709, "matched": 1160, "same_emotion": 1158,
                                      "distinct_files": 1159}},
              "skipped": 1, "threshold": 0.9, "unmatched_best_max": 0.8712, "second_max": 0.9501,
              "second_p95": 0.8123, "r_min": 0.9012, "r_median": 0.9876, "mae_median": 24.834, "mae_p95": 41.456,
              "max_abs": 170, "max_abs_median": 96.0, "psnr_median": 17.21, "psnr_min": 11.04,
              "linear_mae_median": 3.214, "linear_mae_p95": 6.5, "equalized_mae_median": 4.25}
    text = fer.section(result, MACHINE)
    assert table(text)[2:] == ["| Training | 1,167 | 28,709 | 1,160 (99.40%) | 1,158 (99.83%) | 1,159 |"]
    assert ("- Found pairs, as stored: MAE median 24.83, 95th percentile 41.46; largest absolute pixel difference "
            "170 (median over pairs 96); PSNR median 17.2 dB, lowest 11.0 dB; r median 0.988, lowest 0.901.") in text
    assert ("MAE median 3.21, 95th percentile 6.50; CSV face histogram-equalized (cv2.equalizeHist): MAE "
            "median 4.25.") in text
    assert ("- Separation: the second-best r is at most 0.950 (95th percentile 0.812); the highest best r "
            "under the threshold: 0.871.") in text
    assert "- 1 CSV line(s) skipped" in text and "r >= 0.9." in text and MACHINE in text
    nothing = {k: v for k, v in result.items() if k in ("threshold", "second_max", "second_p95")}
    nothing.update(splits={"Training": {**result["splits"]["Training"], "matched": 0}}, skipped=0,
                   unmatched_best_max=None)
    text = fer.section(nothing, MACHINE)
    assert "| 0 (0.00%) | - |" in text and "threshold: none." in text
    assert "skipped" not in text and "Found pairs" not in text


def test_fer2013_release_vs_csv_finds_faces_under_a_gray_level_map(script, tmp_path):
    from PIL import Image

    fer = script("fer2013_release_vs_csv")
    rng = np.random.default_rng(0)
    faces = rng.integers(10, 200, (5, 48, 48), dtype=np.uint8)
    for i, face in enumerate(faces):
        folder = tmp_path / "rel" / "train" / fer.FER7_LABELS[i]
        folder.mkdir(parents=True)
        Image.fromarray(face).save(folder / f"Training_{i}.png")
        Image.fromarray(255 - face).save(folder / f"Training_{i}.png0.png")  # an augmented copy: left out
    csv_faces = (faces[[3, 1]].astype(int) - 10) // 2  # faces 3 and 1, darker and flatter
    lines = ["emotion,pixels,Usage", f"3,{' '.join(map(str, csv_faces[0].ravel()))},Training",
             f"0,{' '.join(map(str, csv_faces[1].ravel()))},Training", "2,1 2 3"]
    (tmp_path / "part.csv").write_text("\n".join(lines))
    r = fer.compare(tmp_path / "part.csv", tmp_path / "rel", threshold=0.9)
    assert r["skipped"] == 1 and r["splits"]["Training"] == {
        "rows": 2, "pool": 5, "matched": 2, "same_emotion": 1, "distinct_files": 2}
    assert r["r_min"] > 0.99 and r["mae_median"] > 30 and r["linear_mae_median"] < 2
    assert r["second_max"] < 0.1 and r["unmatched_best_max"] is None
