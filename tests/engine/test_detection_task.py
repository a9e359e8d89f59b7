"""The detection task's pieces without the trainer: data, loss dict -> sum + components, val meter -> mAP."""

from __future__ import annotations

import math

import pytest
import torch

from deepvision.config.schema import Config, DataConfig, ModelConfig
from deepvision.engine.tasks.detection import RCNN_METRICS, SSD_METRICS, DetectionMeter, DetectionTask, LossMeter
from deepvision.errors import UserError
from deepvision.models import create_model, get_model_spec
from tests.detection_helpers import built_fake

RCNN = ("fasterrcnn_mobilenet_v3_large_320_fpn", {"min_size": 96, "max_size": 128, "rpn_pre_nms_top_n_train": 200,
                                                  "rpn_post_nms_top_n_train": 50, "box_batch_size_per_image": 16,
                                                  "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return built_fake(tmp_path_factory.mktemp("task"), images=8, size=96, seed=11)


def _cfg(built, name, args, **data) -> Config:
    return Config(model=ModelConfig(name=name, args=dict(args)),
                  data=DataConfig(source="detection", root=str(built), batch_size=3, workers=0, test="test",
                                  **{"val": "test", **data}))


def test_task_contract_and_a_training_step_that_learns(built):
    torch.manual_seed(0)
    task = DetectionTask(_cfg(built, *RCNN))
    assert task.name == "detection" and task.default_monitor == "val_map50" and task.val_metrics == ("map50", "map")
    assert task.train_metrics == RCNN_METRICS
    spec = get_model_spec(RCNN[0])
    data = task.load_data(("train", "val"), spec.input_size, spec.preprocess)
    assert data.counts() == {"train": 6, "val": 2} and data.classes == ["disc", "square", "triangle"]
    assert data.preprocess.channels == 3 and not data.preprocess.mean  # the detector normalises itself
    assert task.notes(data) == []
    again = DetectionTask(_cfg(built, *RCNN, **{"val": "train"}))  # the training split named again as val
    twice = again.load_data(("train", "val"), spec.input_size, spec.preprocess)
    assert again.notes(twice) == ["[WARN] 6 of the 6 val images are training images too: val scores do not "
                                  "measure generalisation"]
    model = create_model(RCNN[0], num_classes=task.num_outputs(len(data.classes)), **RCNN[1])
    assert model.roi_heads.box_predictor.cls_score.out_features == 4
    loaders = data.loaders(("train", "val"), seed=0)
    batch = next(iter(loaders["train"]))
    x, y = task.to_device(batch, torch.device("cpu"))
    assert x[0].dtype == torch.float32 and float(x[0].min()) >= 0 and float(x[0].max()) <= 1
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    meter = task.meter(torch.device("cpu"), "train")
    first = None
    for _ in range(4):  # the same batch: the summed loss must fall
        loss, out = task.train_loss(model, x, y)
        assert set(out) == set(RCNN_METRICS[1:]) and torch.isclose(loss, sum(out.values()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        meter.update(out, y, loss.detach())
        first = first if first is not None else float(loss.detach())
    assert float(loss.detach()) < first
    m = meter.compute()
    assert m["count"] == 12 and set(m) == {*RCNN_METRICS, "count"}
    assert m["loss"] == pytest.approx(sum(m[k] for k in RCNN_METRICS[1:]), rel=1e-6)
    val = task.meter(torch.device("cpu"), "val")
    for vb in loaders["val"]:
        vx, vy = task.to_device(vb, torch.device("cpu"))
        outputs, vloss = task.eval_outputs(model, vx, vy)
        assert vloss is None and model.training  # eval_outputs restores the mode
        val.update(outputs, vy, vloss)
    scores = val.compute()
    assert scores["count"] == 2 and 0.0 <= scores["map50"] <= 1.0


def test_ssd_column_names_and_batch_guard(built):
    task = DetectionTask(_cfg(built, "ssdlite320_mobilenet_v3_large", {"size": 96}))
    assert task.train_metrics == SSD_METRICS and DetectionTask.train_metrics == RCNN_METRICS
    spec = get_model_spec("ssdlite320_mobilenet_v3_large")
    data = task.load_data(("train",), spec.input_size)
    assert data.min_batch == 2
    model = create_model("ssdlite320_mobilenet_v3_large", num_classes=4, size=96)
    x, y = task.to_device(next(iter(data.loaders(("train",))["train"])), torch.device("cpu"))
    loss, out = task.train_loss(model, x, y)
    assert set(out) == {"loss_classifier", "loss_box_reg"} and torch.isclose(loss, sum(out.values()))
    one = _cfg(built, "ssdlite320_mobilenet_v3_large", {})
    one.data.batch_size = 1
    with pytest.raises(UserError, match="batch_size >= 2"):
        DetectionTask(one).load_data(("train",), spec.input_size)
    with pytest.raises(UserError, match="needs a detection model, not 'lenet'"):
        DetectionTask(_cfg(built, "lenet", {}))


def _targets():
    return [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]), "labels": torch.tensor([1, 2]),
             "difficult": torch.tensor([False, False]), "image_id": torch.tensor(0)},
            {"boxes": torch.tensor([[5.0, 5, 25, 30]]), "labels": torch.tensor([1]),
             "difficult": torch.tensor([True]), "image_id": torch.tensor(1)}]


def test_val_meter_perfect_and_empty_detections():
    meter = DetectionMeter(["a", "b"])
    perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["labels"])), "labels": t["labels"]} for t in _targets()]
    meter.update(perfect, _targets())
    m = meter.compute()
    assert m == {"map50": 1.0, "map": pytest.approx(1.0), "count": 2}
    assert [c.ap for c in meter.voc.per_class] == [1.0, 1.0] and meter.voc.per_class[0].positives == 1
    empty = DetectionMeter(["a", "b"])
    empty.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}]
                 * 2, _targets())
    assert empty.compute()["map50"] == 0.0


def test_val_meter_gathers_across_ranks(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        meter = DetectionMeter(["a", "b"])
        targets = _targets()
        meter.update([{"boxes": t["boxes"], "scores": torch.ones(len(t["labels"])), "labels": t["labels"]}
                      for t in reversed(targets)], list(reversed(targets)))
        assert [r[0] for r in meter.gathered(distributed=True)] == [0, 1]
        assert meter.compute(distributed=True)["map50"] == 1.0
        losses = LossMeter(torch.device("cpu"), ("loss", "loss_a"))
        losses.update({"loss_a": torch.tensor(2.0)}, targets * 2, torch.tensor(3.0))
        losses.update({"loss_a": torch.tensor(4.0)}, targets, torch.tensor(6.0))
        assert losses.compute(distributed=True) == {"loss": 4.0, "loss_a": pytest.approx(8 / 3), "count": 6}
    finally:
        dist.destroy_process_group()
    assert math.isnan(DetectionMeter(["a"]).compute()["map50"])


def test_detection_trains_through_the_engine_resumes_and_evaluates(built, tmp_path):
    """The generic trainer runs the detection task: history with the loss components and mAP, checkpoints,
    resume, `evaluate` (mAP report) and `predict` refused with a pointer to `detect`."""
    from deepvision.api import evaluate, predict, resume, train
    from deepvision.runs.rundir import RunDir

    cfg = {"task": "detection", "model": {"name": "ssdlite320_mobilenet_v3_large",
                                           "args": {"size": 96, "detections_per_img": 20}},
           "data": {"source": "detection", "root": str(built), "train": "train", "val": "test", "test": "test",
                    "batch_size": 2, "workers": 0},
           "optim": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
           "train": {"epochs": 1, "max_steps": 2, "tensorboard": False, "clip_grad_norm": 10.0}}
    result = train(cfg, out=tmp_path, name="det")
    run = RunDir(result.run_dir)
    header = run.history_path.read_text().splitlines()[0].split(",")
    assert header == ["epoch", "lr", *(f"train_{m}" for m in SSD_METRICS), "val_map50", "val_map",
                      "samples_per_s", "seconds"]
    row = result.history[0]
    assert math.isfinite(row["train_loss"]) and 0.0 <= row["val_map50"] <= 1.0
    assert run.read_config().model.num_classes == len(run.read_labels()) + 1  # the background class
    assert len(resume(run.path, overrides=["train.epochs=2"]).history) == 2
    report = evaluate(run.path, data="test", out=tmp_path / "report")
    assert 0.0 <= report["voc_map50"] <= 1.0 and (tmp_path / "report" / "metrics.json").is_file()
    with pytest.raises(UserError, match="is a detection run: use `deepvision detect"):
        predict(run.path, [str(next(p for p in built.parent.rglob("*") if p.suffix in (".jpg", ".png")))])


def test_a_class_with_no_training_box_is_refused_as_a_class_with_no_sample(tmp_path):
    """A class the dataset lists but no training box holds was trained (exit 0; the build printed its count of
    0); one with difficult boxes only counts when data.train_difficult takes them."""
    from deepvision.datasets.detection.build import build_dataset, read_annotations
    from deepvision.datasets.detection.fake import make_fake

    fake = make_fake(tmp_path / "voc", "voc", images=6, size=96, seed=11)
    ann = read_annotations("voc", fake.build_args[1:])
    build_dataset(ann, tmp_path / "b", classes=["disc", "square", "triangle", "star"])
    spec = get_model_spec(RCNN[0])
    with pytest.raises(UserError, match=r"^class 'star' has no box in the training split \(.*b: train\); the model "):
        DetectionTask(_cfg(tmp_path / "b", *RCNN)).load_data(("train", "val"), spec.input_size, spec.preprocess)
    smoke = DetectionTask(_cfg(tmp_path / "b", *RCNN, max_samples=2))  # a smoke run's first images: not refused
    assert smoke.load_data(("train", "val"), spec.input_size, spec.preprocess).classes[-1] == "star"
