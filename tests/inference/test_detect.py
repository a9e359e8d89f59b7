"""deepvision detect, detection evaluation files, the export parity check (export through the CLI:
tests/cli/test_detection_cli.py)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from deepvision.errors import Terminated, UserError
from tests.detection_helpers import built_fake, make_detection_run

cv2 = pytest.importorskip("cv2")
CLASSES = ["disc", "square", "triangle"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect")
    data = built_fake(root, images=8, size=96, seed=4)
    return make_detection_run(root / "runs", data, CLASSES)


def test_long_side_capped_and_json_boxes_in_original_pixels(run, tmp_path, run_cli):
    from deepvision.inference.detect import Detector
    from deepvision.runs.loading import load_run

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    code, out, _ = run_cli("detect", run, tmp_path / "big.png", "--min-confidence", "0.2", "--json",
                           "--out", tmp_path / "out")
    assert code == 0
    result = json.loads(out)["images"][0]
    assert (result["width"], result["height"]) == (1200, 900) and result["detections"]
    assert all(d["score"] >= 0.2 and d["class"] in CLASSES for d in result["detections"])
    drawn = cv2.imread(str(tmp_path / "out" / "big.jpg"))
    assert drawn.shape == (750, 1000, 3)  # longer side capped at 1,000
    detector = Detector.from_run(load_run(run), min_confidence=0.2)
    capped, scale = detector.cap(np.asarray(Image.open(tmp_path / "big.png")))
    assert capped.shape == (750, 1000, 3) and scale == pytest.approx(1000 / 1200)
    direct = detector.detect([capped])[0]
    assert len(direct) == len(result["detections"])
    for d, j in zip(direct, result["detections"]):
        assert np.allclose(np.array(d.box) / scale, j["box"], atol=0.01) and d.name == j["class"]
    saved = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert saved["images"][0]["detections"] == result["detections"]
    assert not list((tmp_path / "out").glob(".*"))  # each picture written under a temporary name, then renamed
    code, out, _ = run_cli("detect", run, tmp_path / "big.png", "--min-confidence", "1.0")
    assert code == 0 and "0 detection(s)" in out


def test_refusals_are_one_line_on_a_busy_machine(run, tmp_path, run_cli, busy_machine):
    """A missing image, --min-confidence nan and --out over an input: the error line alone (no empty line on
    stdout, no busy-cores note before it), the threshold and outputs refused before the model loads."""
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "a.jpg")
    before = (tmp_path / "a.jpg").read_bytes()
    cases = [((tmp_path / "nope.jpg",), f"image or video not found: {tmp_path / 'nope.jpg'}; give an image or video "
                                        f"file, or a folder of images"),
             ((tmp_path / "a.jpg", "--min-confidence", "nan"), "--min-confidence must be in [0, 1], got nan"),
             ((tmp_path / "a.jpg", "--out", tmp_path), f"--out {tmp_path} would overwrite the input "
                                                       f"{tmp_path / 'a.jpg'} with its annotated copy; choose "
                                                       f"another folder")]
    for args, message in cases:
        code, out, err = run_cli("detect", run, *args)
        assert (code, out) == (2, "") and err.splitlines() == [f"deepvision detect: error: {message}"], err
    assert (tmp_path / "a.jpg").read_bytes() == before and sorted(tmp_path.iterdir()) == [tmp_path / "a.jpg"]


def test_detection_export_refuses_an_out_that_is_one_of_its_images(run, tmp_path, run_cli):
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "d.onnx", format="JPEG")
    before = (tmp_path / "d.onnx").read_bytes()
    code, out, err = run_cli("detection", "export", run, "--format", "onnx", "--images", tmp_path / "d.onnx",
                             "--out", tmp_path / "d.onnx")
    assert (code, out) == (2, "")
    assert err.splitlines() == [f"deepvision detection export: error: --out {tmp_path / 'd.onnx'} is an input of this "
                                f"command ({tmp_path / 'd.onnx'}) and would be overwritten; choose another output file"]
    assert (tmp_path / "d.onnx").read_bytes() == before and sorted(tmp_path.iterdir()) == [tmp_path / "d.onnx"]


def test_label_placement_and_colours(run):
    from deepvision.inference.detect import Detection, Detector
    from deepvision.runs.loading import load_run

    detector = Detector.from_run(load_run(run))
    canvas = np.zeros((120, 160, 3), np.uint8)
    detector.draw(canvas, [Detection(1, "disc", 0.91, (20, 5, 70, 40)),
                           Detection(2, "square", 0.5, (90, 60, 150, 110))])
    colour1 = np.round(detector.colours[1]).astype(int)
    assert (np.abs(canvas[20, 20].astype(int) - colour1) <= 1).all()  # the box edge, thickness 2
    # near the image top the label's baseline is 10 px below the box top; elsewhere 10 px above it
    assert canvas[8:16, 22:68].any() and not canvas[:4, 22:68].any() and not canvas[17:38, 22:68].any()
    assert canvas[43:53, 92:148].any() and not canvas[63:108, 93:148].any()


def test_video_in_annotated_video_out(run, tmp_path):
    from deepvision.inference.detect import run_detect

    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    rng = np.random.default_rng(1)
    for _ in range(6):
        writer.write(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    writer.release()
    images, videos = run_detect(run, [tmp_path / "clip.mp4"], min_confidence=0.2, out=tmp_path / "out")
    assert not images and videos[0].frames == 6 and len(videos[0].per_frame) == 6
    assert videos[0].detections == sum(len(f) for f in videos[0].per_frame) > 0
    cap = cv2.VideoCapture(videos[0].output)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 128
    cap.release()
    doc = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len(doc["videos"][0]["detections"]) == 6
    with pytest.raises(UserError, match="not found"):
        run_detect(run, [tmp_path / "missing.mp4"])
    assert not list((tmp_path / "out").glob(".*partial*"))  # written under a temporary name, then renamed


def _frame_means(path) -> list[float]:
    """The mean of each frame of a video file, in order."""
    cap, means = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        means.append(float(got[1].mean()))
    cap.release()
    return means


def test_a_video_too_small_to_encode_is_named_as_such(run, tmp_path, run_cli):
    """A valid 1x1-pixel video was refused as "could not open OUT/x.mp4 for writing" (a writable folder)."""
    path = tmp_path / "one.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1, 1))
    for i in range(4):
        writer.write(np.full((1, 1, 3), i * 50, np.uint8))
    writer.release()
    code, out, err = run_cli("detect", run, path, "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{path}: its frames are 1x1 pixels, too small to write as an annotated video (2x2 at least)" in err, err
    assert not (tmp_path / "out").exists()
    code, out, err = run_cli("detect", run, path)  # without --out: detected, nothing written
    assert code == 0 and "one.avi: 4 frames" in out, (out, err)


def test_a_damaged_video_frame_is_skipped_and_named_and_a_mostly_damaged_video_refused(run, tmp_path, run_cli):
    from tests.inference.videotools import damaged_avi

    video = damaged_avi(tmp_path / "clip.avi", damaged=(4,))
    before = video.read_bytes()
    code, out, err = run_cli("detect", run, video, "--out", tmp_path / "out")
    assert code == 0, err
    assert "clip.avi: skipped 1 damaged frame of 10 (frame 4)" in out and "clip.avi: 9 frames" in out
    doc = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert doc["videos"][0]["frames"] == 9 and doc["videos"][0]["skipped_frames"] == [4]
    # indexed by the video's frames: the skipped frame is null, the frames after it keep their own numbers
    assert [f is None for f in doc["videos"][0]["detections"]] == [False] * 4 + [True] + [False] * 5
    # the output keeps the input's timing: a black frame in the damaged frame's slot
    assert [m < 6 for m in _frame_means(tmp_path / "out" / "clip.mp4")] == [False] * 4 + [True] + [False] * 5
    assert video.read_bytes() == before
    ends = damaged_avi(tmp_path / "ends.avi", damaged=(8, 9))  # damaged frames at the end: their slots too
    assert run_cli("detect", run, ends, "--out", tmp_path / "out3")[0] == 0
    assert [m < 6 for m in _frame_means(tmp_path / "out3" / "ends.mp4")] == [False] * 8 + [True] * 2
    bad = damaged_avi(tmp_path / "bad.avi", damaged=(1, 2, 3, 4, 5, 6))
    code, out, err = run_cli("detect", run, bad, "--out", tmp_path / "out2")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "bad.avi: 6 of its 10 frames could not be decoded (frames 1, 2, 3, 4, 5 and 1 more)" in err
    assert not (tmp_path / "out2").exists()


def test_a_folder_gives_its_images_and_videos_at_every_level(run, tmp_path):
    """As classify and predict search folders: the images of sub-folders are detected and a video in the folder
    is read as a video (neither was left out without a word); hidden files stay out; a folder with neither is
    refused in one line."""
    from deepvision.inference.detect import run_detect

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(photos / "a.jpg")
    Image.fromarray(np.full((60, 80, 3), 10, np.uint8)).save(photos / "sub" / "b.png")
    Image.fromarray(np.full((60, 80, 3), 10, np.uint8)).save(photos / ".hidden.png")
    writer = cv2.VideoWriter(str(photos / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    for _ in range(3):
        writer.write(np.full((96, 128, 3), 90, np.uint8))
    writer.release()
    images, videos = run_detect(run, [photos], out=tmp_path / "out")
    assert [r.source for r in images] == [str(photos / "a.jpg"), str(photos / "sub" / "b.png")]
    assert [(v.source, v.frames) for v in videos] == [(str(photos / "clip.mp4"), 3)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "b.jpg", "clip.mp4", "detections.json"]
    (tmp_path / "none" / "deep").mkdir(parents=True)
    (tmp_path / "none" / "deep" / "notes.txt").write_text("no image\n")
    with pytest.raises(UserError, match=r"none holds no image \(.jpg.*\) or video \(.mp4.*\) at any level$"):
        run_detect(run, [tmp_path / "none"])


def test_a_video_path_holding_a_frame_number_pattern_is_refused_before_anything_is_read(run, tmp_path, run_cli):
    """OpenCV would read "pat%01d.avi" as pat0.avi, pat1.avi, ... (files never named; a FIFO among them blocks
    for good): named or found in a folder, it is refused in one line before the model loads, nothing written."""
    folder = tmp_path / "in"
    folder.mkdir()
    named = folder / "pat%01d.avi"
    named.write_bytes(b"\x00\x01garbage" * 100)
    (folder / "pat0.avi").write_bytes(cv2.imencode(".png", np.full((64, 64, 3), 200, np.uint8))[1].tobytes())
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(folder / "a.jpg")
    before = {p: p.read_bytes() for p in folder.iterdir()}
    line = (f"deepvision detect: error: {named}: '%01d' in a video's path is a frame-number pattern (OpenCV and "
            f"FFmpeg would read other, numbered files in its place); rename it without the '%'")
    for source in (folder, named):  # a folder holding a FIFO is refused for it: made for the video named alone
        code, out, err = run_cli("detect", run, source, "--out", tmp_path / "out")
        assert (code, out, err.splitlines()) == (2, "", [line])
        if source == folder:
            os.mkfifo(folder / "pat1.avi")
    assert {p: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert sorted(tmp_path.iterdir()) == [folder]


def test_a_video_named_like_an_ffmpeg_protocol_is_the_video_read(run, tmp_path, run_cli, monkeypatch):
    """FFmpeg would read "concat:g.avi|long.avi" as g.avi then long.avi (frames of files never named), and
    "concat:f.avi" beside a FIFO f.avi would block for good: the file named is read and written out, by the
    absolute paths FFmpeg is handed; the other files unchanged."""
    monkeypatch.chdir(tmp_path)
    for name, frames, value in (("long.avi", 9, 200), ("concat:g.avi|long.avi", 3, 90), ("concat:f.avi", 2, 90)):
        writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
        for _ in range(frames):
            writer.write(np.full((48, 64, 3), value, np.uint8))
        writer.release()
    (tmp_path / "g.avi").write_bytes(b"\x00\x01garbage" * 90)
    os.mkfifo("f.avi")
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    written = []
    real = cv2.VideoWriter
    monkeypatch.setattr(cv2, "VideoWriter", lambda name, *a: written.append(name) or real(name, *a))
    for name, frames in (("concat:g.avi|long.avi", 3), ("concat:f.avi", 2)):
        code, out, err = run_cli("detect", run, name, "--out", "out")
        assert code == 0 and out.lstrip().startswith(f"{name}: {frames} frames, "), err
        stem = name.rsplit(".", 1)[0]
        cap = cv2.VideoCapture(str(tmp_path / "out" / f"{stem}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
        cap.release()
    assert len(written) == 2 and all(os.path.isabs(name) for name in written)
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_device_refusal_names_the_option_given(run, tmp_path, run_cli, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "a.jpg")
    code, out, err = run_cli("detect", run, tmp_path / "a.jpg", "--out", tmp_path / "out", "--device", "cuda")
    assert (code, out, err) == (2, "", "deepvision detect: error: --device cuda: no CUDA GPU is available; use "
                                       "--device cpu\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]


def test_options_for_the_other_kind_of_input_are_refused_before_the_model_loads(tmp_path, run_cli):
    """--show with images only (it opens a window for videos) and --batch-size with videos only (read frame by
    frame) were taken and ignored."""
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "a.jpg")
    (tmp_path / "v.avi").write_bytes(b"RIFF")  # a name is enough: refused before anything is read
    for given, line in ((("a.jpg", "--show"), "--show applies to videos, and no video was given; leave --show out"),
                        (("v.avi", "--batch-size", "2"), "--batch-size applies to images (a video is read frame by "
                                                         "frame), and only videos were given; leave --batch-size out")):
        code, out, err = run_cli("detect", tmp_path / "no-run", tmp_path / given[0], *given[1:])
        assert (code, out, err) == (2, "", f"deepvision detect: error: {line}\n")


def test_an_out_in_an_input_folder_is_refused_before_the_model_loads(tmp_path, run_cli):
    """The annotated copies, named as the photos, would be detected again by the next run over the folder
    (which reads sub-folders too): an --out that is an input folder or lies inside one is one line, exit 2,
    before the run is read; the folder unchanged."""
    photos = tmp_path / "photos"
    (photos / "day").mkdir(parents=True)  # the photos only in a sub-folder: --out photos holds none directly
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(photos / "day" / "a.jpg")
    before = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}
    (tmp_path / "link").symlink_to(photos)
    for out in (photos, photos / "sub", photos / "day", tmp_path / "link" / "sub"):
        code, stdout, err = run_cli("detect", tmp_path / "no-run", tmp_path / "link", photos / "day" / "a.jpg",
                                    "--out", out)
        assert (code, stdout) == (2, "") and err.splitlines() == [
            f"deepvision detect: error: --out {out} is inside the input folder {tmp_path / 'link'}; its files "
            f"would be read as part of it next time, so choose a folder outside it"], err
    assert {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()} == before
    assert [p.name for p in photos.iterdir()] == ["day"]
    code, _, err = run_cli("detect", tmp_path / "no-run", photos, "--out", tmp_path / "out")
    assert code == 2 and "no-run" in err  # beside the folder: past the check, to the run


def test_outputs_never_overwrite_inputs_or_each_other(run, tmp_path):
    from deepvision.inference.detect import run_detect

    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    for _ in range(3):
        writer.write(np.full((96, 128, 3), 90, np.uint8))
    writer.release()
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(np.full((60, 80, 3), 10, np.uint8)).save(tmp_path / "a.png")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(UserError, match="would overwrite the input .*clip.mp4"):
        run_detect(run, [tmp_path / "clip.mp4"], out=tmp_path)  # used to read the video while overwriting it
    with pytest.raises(UserError, match="would overwrite the input .*a.jpg"):
        run_detect(run, [tmp_path / "a.jpg"], out=tmp_path)
    with pytest.raises(UserError, match="a.jpg and .*a.png would both be written"):
        run_detect(run, [tmp_path / "a.jpg", tmp_path / "a.png"], out=tmp_path / "out")
    from deepvision.inference.detect import Detector, detect_images
    from deepvision.runs.loading import load_run

    detector = Detector.from_run(load_run(run))
    with pytest.raises(UserError, match="would overwrite the input .*a.jpg"):
        next(detect_images(detector, [tmp_path / "a.jpg"], tmp_path))  # the same rule for direct callers
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before and not (tmp_path / "out").exists()
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(other / "a.jpg")
    data = tmp_path / "data"  # a data set's image folder holding a photo of the same name
    data.mkdir()
    (data / "a.jpg").write_bytes(before["a.jpg"])
    with pytest.raises(UserError, match=f"^--out {data} holds files but no detections.json of an earlier detect"):
        run_detect(run, [other / "a.jpg"], out=data)
    assert (data / "a.jpg").read_bytes() == before["a.jpg"] and [p.name for p in data.iterdir()] == ["a.jpg"]
    run_detect(run, [tmp_path / "a.jpg"], out=tmp_path / "again")
    run_detect(run, [other / "a.jpg"], out=tmp_path / "again")  # its own folder: the copy is replaced
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["a.jpg", "detections.json"]
    (tmp_path / "again" / "b.jpg").write_bytes(b"the user's own photo, put there since")
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(other / "b.jpg")
    with pytest.raises(UserError, match=r"holds b\.jpg, which its detections\.json does not list as an output of "
                                        r"the earlier detect; it would be replaced"):
        run_detect(run, [other / "b.jpg"], out=tmp_path / "again")
    assert (tmp_path / "again" / "b.jpg").read_bytes() == b"the user's own photo, put there since"


def test_evaluate_writes_metrics_table_and_curves(run):
    from deepvision.engine.detection_metrics import evaluate_voc
    from deepvision.evaluation.detection import evaluate_detection_run
    from deepvision.inference.detect import Detector
    from deepvision.runs.loading import load_run

    result = evaluate_detection_run(run, "test")
    files = sorted(p.name for p in result.out_dir.iterdir())
    assert files == ["metrics.json", "per_class_ap.csv", "pr_curves.png"]
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics["images"] == 2 and "all-point" in metrics["definitions"]["voc_map50"]
    rows = (result.out_dir / "per_class_ap.csv").read_text().splitlines()
    assert rows[0].startswith("class,positives") and len(rows) == 2 + len(CLASSES)
    # the same number from the model called directly on the test images
    loaded = load_run(run)
    from deepvision.data.detection import load_index

    index = load_index(loaded.cfg.data.root, ["test"])
    detector = Detector.from_run(loaded, min_confidence=0.0)
    dets, gts = [], []
    for im in index.splits["test"]:
        found = detector.detect([np.asarray(Image.open(im.file).convert("RGB"))])[0]
        dets.append({"boxes": np.array([d.box for d in found]).reshape(-1, 4), "scores": [d.score for d in found],
                     "labels": [d.class_id for d in found]})
        gts.append({"boxes": im.pixel_boxes(), "labels": im.labels, "difficult": im.difficult})
    expected = evaluate_voc(dets, gts, CLASSES).map
    assert metrics["voc_map50"] == pytest.approx(expected, abs=1e-9)
    assert "VOC mAP@0.5, 11-point (VOC2007)" in "\n".join(result.lines())


def _contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else None


@pytest.mark.parametrize(("stop", "code", "line"), [
    (Terminated, 143, "deepvision detect: terminated (SIGTERM); unfinished files were removed"),
    (KeyboardInterrupt, 130, "interrupted")])
def test_a_stopped_detect_leaves_out_as_it_was(run, tmp_path, run_cli, monkeypatch, stop, code, line):
    """Ctrl+C or SIGTERM while detect draws a folder of images: no drawing of this invocation stays (nor a
    temporary file), an earlier detect's outputs stay as they were, and the same command then runs."""
    from deepvision.inference import detect

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(photos / f"p{i}.png")
    out = tmp_path / "out"
    assert run_cli("detect", run, photos / "p0.png", "--out", out)[0] == 0
    real_write, written = detect.write_image, []

    def stop_at_the_third(path, bgr):
        written.append(path)
        if len(written) == 3:
            raise stop
        real_write(path, bgr)

    monkeypatch.setattr(detect, "write_image", stop_at_the_third)
    for target in (out, tmp_path / "new" / "out"):
        before = _contents(out)
        got, _, err = run_cli("detect", run, photos, "--out", target)
        assert (got, err.splitlines()) == (code, [line])
        assert _contents(out) == before and not (tmp_path / "new").exists()
        written.clear()
    monkeypatch.setattr(detect, "write_image", real_write)
    assert run_cli("detect", run, photos, "--out", out)[0] == 0
    assert sorted(_contents(out)) == ["detections.json", "p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]


def test_a_stopped_detection_evaluate_leaves_the_report_whole(run, tmp_path, run_cli, monkeypatch):
    """A stop while the report is written: the folder holds the earlier report, whole, or nothing (no new
    folder), never metrics.json without pr_curves.png."""
    from deepvision.evaluation import detection

    def stop(*args, **kwargs):
        raise Terminated

    assert run_cli("evaluate", run, "--out", tmp_path / "earlier")[0] == 0
    before = _contents(tmp_path / "earlier")
    assert sorted(before) == ["metrics.json", "per_class_ap.csv", "pr_curves.png"]
    monkeypatch.setattr(detection, "plot_pr_curves", stop)  # the last file of the report
    for out in (tmp_path / "earlier", tmp_path / "new" / "report"):
        code, _, err = run_cli("evaluate", run, "--out", out)
        assert (code, err.count("\n")) == (143, 1) and "terminated (SIGTERM)" in err
    assert _contents(tmp_path / "earlier") == before and not (tmp_path / "new").exists()


def test_parity_check_catches_a_changed_model():
    from deepvision.export.detection import compare_detections

    ref = [(np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32), np.array([0.9, 0.6], np.float32),
            np.array([1, 2]))]
    same = compare_detections(ref, ref)
    assert same.ok and same.matched == 2
    moved = [(ref[0][0] + np.array([[0, 0, 0, 0], [3, 0, 3, 0]], np.float32), ref[0][1], ref[0][2])]
    bad = compare_detections(ref, moved)
    assert not bad.ok and "label 2" in bad.line()
    relabelled = [(ref[0][0], ref[0][1], np.array([1, 1]))]
    assert not compare_detections(ref, relabelled).ok


def test_a_video_declaring_an_impossible_frame_rate_is_written_at_a_plain_one(run, tmp_path, capfd):
    """An AVI header claiming 4e9 frames/s: the encoder refused to open, and OpenCV printed two lines of its
    own before ours. The output is written at 30 frames/s instead."""
    import struct

    from deepvision.inference.detect import run_detect

    writer = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    data = bytearray((tmp_path / "v.avi").read_bytes())
    struct.pack_into("<II", data, data.find(b"strh") + 28, 1, 4_000_000_000)  # scale 1, rate 4e9
    (tmp_path / "fast.avi").write_bytes(bytes(data))
    _, videos = run_detect(run, [tmp_path / "fast.avi"], out=tmp_path / "out")
    cap = cv2.VideoCapture(videos[0].output)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and cap.get(cv2.CAP_PROP_FPS) == 30
    cap.release()
    assert "[ERROR" not in capfd.readouterr().err


def test_an_mpeg_ts_video_is_read_to_its_end_without_a_damage_note(run, tmp_path, run_cli):
    """A .ts file was refused as "cannot read ... as an image"; its frame count is OpenCV's estimate from the
    duration (199 for 10 frames), and the failed reads past its real end are not damaged frames."""
    writer = cv2.VideoWriter(str(tmp_path / "clip.ts"), cv2.VideoWriter_fourcc(*"PIM1"), 25, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    code, out, err = run_cli("detect", run, tmp_path / "clip.ts", "--out", tmp_path / "out")
    assert code == 0 and "clip.ts: 10 frames" in out and "damaged" not in out, (out, err)
