"""Data-layer guarantees: each case reproduces a way a careless or malicious input used to hang, exhaust the
machine or mislead (huge labels, decompression bombs, FIFOs, link loops, odd file names, alpha, SIGTERM).
Kept in one file (over 400 lines) so its cases and docs/data-reliability.md's data-layer table map one to one."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepvision.data.imageio import Decoder, PixelLimitError, decode_opencv, open_image, simplejpeg
from deepvision.data.lst import read_lst
from deepvision.data.records import IRHeader, pack_header
from deepvision.datasets import im2rec
from deepvision.datasets.records import RecordWriter
from deepvision.errors import UserError
from deepvision.safeload.images import ENV_MAX_PIXELS, set_max_image_pixels
from tests.data.recordtools import jpeg_bytes, noise_image, png_bytes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _default_pixel_limit():
    # `im2rec --max-pixels` sets the environment variable for its workers: restore it before resetting,
    # or Pillow's own limit would stay at a test's value for every later test
    saved = os.environ.pop(ENV_MAX_PIXELS, None)
    set_max_image_pixels(None)
    yield
    os.environ.pop(ENV_MAX_PIXELS, None)
    if saved is not None:
        os.environ[ENV_MAX_PIXELS] = saved
    set_max_image_pixels(None)


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block blocks longer than `seconds`."""
    def fire(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def bomb_jpeg(side: int = 30000) -> bytes:
    """A small real JPEG whose frame header announces side x side pixels (what a decoder allocates)."""
    data = bytearray(jpeg_bytes(noise_image(1, (16, 16))))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, side, side)
    return bytes(data)


def bomb_png(side: int = 30000) -> bytes:
    data = bytearray(png_bytes(noise_image(2, (16, 16))))
    struct.pack_into(">II", data, 16, side, side)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))  # a valid IHDR: only the size lies
    return bytes(data)


def write_records(path: Path, items: list[tuple[float, bytes]]) -> Path:
    with RecordWriter(path) as w:
        for i, (label, body) in enumerate(items):
            w.write(pack_header(IRHeader(0, label, i, 0), body), i)
    return path


# -- huge labels and decompression bombs, under a memory cap ---------------------------------------------
CAPPED = """
import contextlib, io, json, resource, sys
from deepvision.cli.main import main
import deepvision.data.builtin_sources, deepvision.data.records.loader, torch
from deepvision.data.imageio import Decoder
from deepvision.data.imageio import open_image
status = open("/proc/self/status").read()
vm = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize"))) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1536 << 20), vm + (1536 << 20)))  # 1.5 GB more, at most
out = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        out[name] = [main(argv), err.getvalue()]
def attempt(fn):
    try:
        fn()
        return "decoded"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
bomb = open(sys.argv[2], "rb").read()
png = open(sys.argv[3], "rb").read()
out["decoder_cv2"] = attempt(lambda: Decoder(3, "cv2")(bomb))
out["decoder_auto"] = attempt(lambda: Decoder(3, "auto")(bomb))
out["decoder_png"] = attempt(lambda: Decoder(1, "auto")(png))
out["open_image"] = attempt(lambda: open_image(sys.argv[3], 3))
print(json.dumps(out))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc and RLIMIT_AS")
def test_huge_or_fractional_labels_and_bombs_under_a_memory_cap(tmp_path):
    """Cases 1 and 2: a label of 1e9 used to build a billion class names (OOM at 24 GB), 1.5 was truncated,
    and a 30000x30000 JPEG header made im2rec allocate 2.7 GB. Now: one line before any allocation."""
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / name)
    png = png_bytes(noise_image(3, (8, 8)))
    cases = {}
    for tag, label in (("huge", "1e9"), ("frac", "1.5")):
        (tmp_path / f"{tag}.lst").write_text(f"0\t0\ta.png\n1\t{label}\tb.png\n")
        write_records(tmp_path / f"{tag}.rec", [(0.0, png), (float(label), png)])
        for source in ("lst", "rec"):
            cfg = tmp_path / f"{tag}_{source}.yaml"
            cfg.write_text(json.dumps({"data": {"source": source, "root": str(tmp_path), "train":
                                                str(tmp_path / f"{tag}.{source}"), "test": None}}))
            cases[f"{tag}_{source}"] = ["data", "info", str(cfg)]
    bomb = tmp_path / "imgs" / "bomb.jpg"
    bomb.parent.mkdir()
    bomb.write_bytes(bomb_jpeg())
    (tmp_path / "imgs" / "bomb.png").write_bytes(bomb_png())
    (tmp_path / "imgs" / "ok.jpg").write_bytes(jpeg_bytes(noise_image(4, (20, 20))))
    (tmp_path / "pack.lst").write_text("0\t0\tok.jpg\n1\t0\tbomb.jpg\n2\t0\tbomb.png\n")
    cases["im2rec"] = ["im2rec", str(tmp_path / "pack"), str(tmp_path / "imgs"), "--num-thread", "1"]
    (tmp_path / "pt.lst").write_text("0\t0\tbomb.jpg\n1\t0\tok.jpg\n")
    cases["pass_through"] = ["im2rec", str(tmp_path / "pt"), str(tmp_path / "imgs"), "--num-thread", "1",
                             "--pass-through"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1"}
    env.pop(ENV_MAX_PIXELS, None)
    proc = subprocess.run([sys.executable, "-c", CAPPED, json.dumps(cases), str(bomb),
                           str(tmp_path / "imgs" / "bomb.png")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for source in ("lst", "rec"):
        rc, err = out[f"huge_{source}"]
        assert rc == 2 and err.count("\n") == 1
        assert "has label 1e+09, beyond the class numbers 0..99,999 allowed without a labels file" in err
        rc, err = out[f"frac_{source}"]
        assert rc == 2 and err.count("\n") == 1 and "has label 1.5; single-label data needs whole class numbers" in err
    assert "entry 1" in out["huge_lst"][1] and "record 1" in out["huge_rec"][1]
    assert out["im2rec"][0] == 0
    skipped = (tmp_path / "pack.skipped.txt").read_text().splitlines()[1:]
    assert [line.split("\t")[1] for line in skipped] == ["bomb.jpg", "bomb.png"]
    assert all("30000x30000 = 900,000,000 pixels is above the pixel limit of 178,956,970" in s for s in skipped)
    assert out["pass_through"][0] == 0 and "bomb.jpg" in (tmp_path / "pt.skipped.txt").read_text()
    for key in ("decoder_cv2", "decoder_auto", "decoder_png", "open_image"):
        assert "pixel limit of 178,956,970" in out[key], (key, out[key])
    assert out["open_image"].startswith("UserError: cannot read") and "bomb.png" in out["open_image"]


def test_pixel_limit_is_configurable_and_shared_by_every_decoder(tmp_path, run_cli, monkeypatch):
    jpg, png = jpeg_bytes(noise_image(5, (16, 12))), png_bytes(noise_image(6, (16, 12)))  # 192 pixels each
    rgba = png_bytes(noise_image(7, (16, 12), "RGBA"))
    decoders = [Decoder(3, "cv2"), Decoder(1, "cv2")] + ([Decoder(3, "simplejpeg")] if simplejpeg else [])
    monkeypatch.setenv(ENV_MAX_PIXELS, "191")
    for data in (jpg, png, rgba):
        for decode in [*decoders, lambda d: decode_opencv(d, 1), lambda d: decode_opencv(d, -1),
                       lambda d: decode_opencv(d, 0)]:
            with pytest.raises(PixelLimitError, match="16x12 = 192 pixels is above the pixel limit of 191"):
                decode(data)
        with pytest.raises(UserError, match="pixel limit of 191"):
            open_image(data, 3)
    from deepvision.data.records import unpack_img

    with pytest.raises(PixelLimitError, match="pixel limit of 191"):
        unpack_img(pack_header(IRHeader(0, 1.0, 0, 0), jpg))
    monkeypatch.setenv(ENV_MAX_PIXELS, "192")
    for data in (jpg, png, rgba):
        assert all(d(data).shape[:2] == (12, 16) for d in decoders)
        assert open_image(data, 3).size == (16, 12)
    monkeypatch.setenv(ENV_MAX_PIXELS, "lots")
    with pytest.raises(UserError, match="MAX_IMAGE_PIXELS must be a whole number of pixels from 1 to .*, got .lots."):
        open_image(png, 3)
    monkeypatch.delenv(ENV_MAX_PIXELS)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(jpg)
    (tmp_path / "a.lst").write_text("0\t0\ta.jpg\n")
    code, _, err = run_cli("im2rec", tmp_path / "a", tmp_path / "imgs", "--num-thread", "1", "--max-pixels", "100")
    assert code == 2 and "pixel limit of 100" in (tmp_path / "a.skipped.txt").read_text()
    code, out, _ = run_cli("im2rec", tmp_path / "a", tmp_path / "imgs", "--num-thread", "1", "--max-pixels", "192")
    assert code == 0 and "packed 1 images" in out
    code, _, err = run_cli("im2rec", tmp_path / "a", tmp_path / "imgs", "--max-pixels", "nan")
    assert code == 2 and "--max-pixels must be a positive number" in err


# -- special files and directory-link loops ------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_and_devices_named_like_images_are_refused_without_blocking(tmp_path, run_cli):
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "ok.jpg").write_bytes(jpeg_bytes(noise_image(8, (20, 20))))
    os.mkfifo(root / "pipe.jpg")
    os.symlink("/dev/zero", root / "zero.jpg")
    (tmp_path / "f.lst").write_text("0\t0\tok.jpg\n1\t0\tpipe.jpg\n2\t0\tzero.jpg\n")
    with deadline(30):
        code, out, _ = run_cli("im2rec", tmp_path / "f", root, "--num-thread", "1")
        assert code == 0 and "packed 1 images" in out
        reasons = dict(line.split("\t")[1:] for line in (tmp_path / "f.skipped.txt").read_text().splitlines()[1:])
        assert reasons == {"pipe.jpg": "cannot read file (not a regular file (a FIFO))",
                           "zero.jpg": "cannot read file (not a regular file (a character device))"}
        from deepvision.datasets.mean import compute_mean

        result = compute_mean(tmp_path / "f.lst", root=root, workers=1)
        assert result.count == 1 and [r for _, r in result.skipped] == list(reasons.values())
        with pytest.raises(UserError, match=r"pipe.jpg: not a regular file \(a FIFO\)"):
            open_image(root / "pipe.jpg", 3)


FIFO_INPUTS = [  # (name of the FIFO, command line with {f} for its path, what the file is called)
    ("f.h5", ("logreg", "{f}"), "HDF5 file"),
    ("f.h5", ("features", "lenet", "{f}", "--out", "{d}/o.h5"), "HDF5 file"),
    ("f.yaml", ("train", "{f}"), "config file"),
    ("f.pt", ("classify", "--model", "lenet", "--weights", "{f}", "{d}/imgs"), "weights file"),
    ("f.pt", ("features", "lenet", "{d}/imgs", "--weights", "{f}", "--out", "{d}/o.h5"), "weights file"),
    ("om/model.npz", ("orientation", "apply", "{d}/om", "{d}/imgs", "--out", "{d}/oa"), "model file"),
]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name, args, what", FIFO_INPUTS)
def test_a_fifo_named_as_an_input_file_is_named_not_reported_missing(tmp_path, run_cli, name, args, what):
    fifo = tmp_path / name
    fifo.parent.mkdir(exist_ok=True)
    os.mkfifo(fifo)
    (tmp_path / "imgs" / "0").mkdir(parents=True)
    Image.fromarray(np.full((28, 28), 90, np.uint8)).save(tmp_path / "imgs" / "0" / "a.png")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with deadline(30):
        code, out, err = run_cli(*(a.format(f=fifo, d=tmp_path) for a in args))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    prog = " ".join(args[:2]) if args[0] == "orientation" else args[0]  # a nested command names itself
    assert err.startswith(f"deepvision {prog}: error: {what} {fifo} is a FIFO, not a regular file"), err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_record_files_and_configs_are_named_by_the_readers(tmp_path):
    from deepvision.config.io import read_yaml
    from deepvision.data.hdf5 import HDF5Dataset
    from deepvision.data.records import RecordFile, RecordReader
    from deepvision.recipes import resolve_config_arg

    for name in ("p.rec", "p.idx", "c.yaml", "d.h5"):
        os.mkfifo(tmp_path / name)
    (tmp_path / "q.rec").write_bytes(b"")
    cases = [(lambda: RecordFile.open(tmp_path / "p.rec", cache=False), "record file", "p.rec"),
             (lambda: RecordFile.open(tmp_path / "q.rec", tmp_path / "p.idx", cache=False), "index file", "p.idx"),
             (lambda: RecordReader(tmp_path / "p.rec"), "record file", "p.rec"),
             (lambda: read_yaml(tmp_path / "c.yaml"), "config file", "c.yaml"),
             (lambda: resolve_config_arg(str(tmp_path / "c.yaml")), "config file", "c.yaml"),
             (lambda: HDF5Dataset(tmp_path / "d.h5"), "HDF5 file", "d.h5")]
    with deadline(30):
        for call, what, name in cases:
            with pytest.raises(UserError, match=f"^{what} {tmp_path / name} is a FIFO, not a regular file"):
                call()
    with pytest.raises(UserError, match=f"^config file not found: {tmp_path / 'none.yaml'}$"):
        resolve_config_arg(str(tmp_path / "none.yaml"))


def mxnet_list_image(root, recursive, exts):
    """MXNet's tools/im2rec.py list_image, verbatim: the compatibility reference."""
    i = 0
    if recursive:
        cat = {}
        for path, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            files.sort()
            for fname in files:
                fpath = os.path.join(path, fname)
                suffix = os.path.splitext(fname)[1].lower()
                if os.path.isfile(fpath) and (suffix in exts):
                    if path not in cat:
                        cat[path] = len(cat)
                    yield (i, os.path.relpath(fpath, root), cat[path])
                    i += 1


def test_list_follows_directory_links_like_mxnet_but_never_loops(tmp_path, run_cli):
    root, outside = tmp_path / "imgs", tmp_path / "outside"
    for folder in (root / "cat", root / "dog" / "puppies", outside / "owl"):
        folder.mkdir(parents=True)
        for k in range(2):
            (folder / f"img_{k}.jpg").write_bytes(b"x")
    os.symlink(outside, root / "linked")  # a link that is not a loop: followed, as MXNet does
    os.symlink(root / "cat", root / "dog" / "cat_again")  # a second path to a folder: listed twice, as MXNet
    exts = (".jpeg", ".jpg", ".png")
    expected = list(mxnet_list_image(str(root), True, exts))
    assert len(expected) == 8
    assert list(im2rec.list_images(root, True, exts)) == expected
    os.symlink(root, root / "cat" / "up")  # loops: back to the root, and to itself
    os.symlink(".", root / "dog" / "self")
    os.symlink(root / "dog", outside / "owl" / "back")  # reached through 'linked': dog/ again, not a loop from there
    loops: list[str] = []
    got = list(im2rec.list_images(root, True, exts, loops=loops))
    assert got[:8] == expected
    assert [(p, label) for _, p, label in got[8:]] == [
        ("linked/owl/back/cat_again/img_0.jpg", 4), ("linked/owl/back/cat_again/img_1.jpg", 4),
        ("linked/owl/back/puppies/img_0.jpg", 5), ("linked/owl/back/puppies/img_1.jpg", 5)]
    assert sorted(loops) == ["cat/up", "dog/cat_again/up", "dog/self", "linked/owl/back/cat_again/up",
                             "linked/owl/back/self"]
    # the list command refuses a list holding one image twice (under two labels: packing would refuse it)
    code, _, err = run_cli("im2rec", "--list", "--recursive", "--no-shuffle", tmp_path / "d", root)
    assert code == 2 and f"{root / 'dog/cat_again/img_0.jpg'} and {root / 'cat/img_0.jpg'} are one file" in err
    os.unlink(root / "dog" / "cat_again")
    os.unlink(outside / "owl" / "back")
    code, _, err = run_cli("im2rec", "--list", "--recursive", "--no-shuffle", tmp_path / "d", root)
    assert code == 0 and len(read_lst(tmp_path / "d.lst")) == 6
    assert "not followed: 2 directory link(s) that loop back" in err


# -- names a list line cannot hold -------------------------------------------------------------------------
def test_names_with_tabs_or_line_breaks_are_left_out_of_lists_and_said(tmp_path, run_cli):
    root = tmp_path / "imgs" / "cls"
    root.mkdir(parents=True)
    for name in ("good.jpg", "tab\there.jpg", "new\nline.jpg", "sep\u2028arator.jpg"):
        (root / name).write_bytes(b"x")
    code, _, err = run_cli("im2rec", "--list", "--recursive", tmp_path / "d", tmp_path / "imgs")
    assert code == 0
    entries = read_lst(tmp_path / "d.lst")  # the reader accepts what the writer wrote
    assert [e.path for e in entries] == ["cls/good.jpg"]
    assert "left out: 3 file(s) whose names hold a tab or a line break" in err and "'cls/tab\\there.jpg'" in err
    from deepvision.data.lst import ListEntry
    from deepvision.datasets.listing import write_lst

    with pytest.raises(UserError, match="holds a tab or a line break"):
        write_lst(tmp_path / "x.lst", [ListEntry(0, (0.0,), "a\tb.jpg")])


# -- one alpha rule ------------------------------------------------------------------------------------------
def test_transparent_images_decode_the_same_in_training_and_prediction(tmp_path, run_cli):
    from deepvision.data import RecordDataset
    from deepvision.data.preprocess import Preprocess

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # transparent red: training used to see red, predict white
    rgba[:4, :, 3] = 255
    rgba[:4, :, 1] = 80
    pal = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.ADAPTIVE, colors=4)
    pal.info["transparency"] = int(np.asarray(pal)[7, 0])
    la = Image.fromarray(np.stack([np.full((8, 8), 30, np.uint8), rgba[..., 3]], -1), "LA")
    root = tmp_path / "imgs"
    root.mkdir()
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    pal.save(root / "pal.png", transparency=pal.info["transparency"])
    la.save(root / "la.png")
    noise_image(10, (8, 8)).save(root / "rgb.png")  # plain PNGs take OpenCV's fast path: same pixels
    noise_image(11, (8, 8), "L").save(root / "gray.png")
    names = ["rgba.png", "pal.png", "la.png", "rgb.png", "gray.png"]
    (tmp_path / "a.lst").write_text("".join(f"{i}\t0\t{n}\n" for i, n in enumerate(names)))
    assert run_cli("im2rec", tmp_path / "a", root, "--pass-through", "--num-thread", "1")[0] == 0
    for channels in (3, 1):
        ds = RecordDataset(tmp_path / "a.rec", channels=channels)
        pre = Preprocess(channels=channels, size=(8, 8))
        for i, name in enumerate(names):
            trained = ds.decode(i)
            predicted = pre.load(root / name).numpy().transpose(1, 2, 0)
            assert np.array_equal(trained, predicted), (name, channels)
            if i < 3:
                assert (trained[4:] == 255).all(), name  # the transparent half is white on every path
    packed = decode_opencv((root / "rgba.png").read_bytes(), 1)
    assert (packed[4:] == 255).all()


# -- SIGTERM during packing -----------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_im2rec_exits_143_in_one_line_and_removes_temporary_files(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    noise_image(9, (600, 600)).save(root / "big.jpg", quality=95)
    (tmp_path / "big.lst").write_text("".join(f"{i}\t0\tbig.jpg\n" for i in range(8000)))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "deepvision", "im2rec", str(tmp_path / "big"), str(root),
                             "--num-thread", "2", "--resize", "300"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    t0 = time.time()
    while not list(tmp_path.glob(".big.rec.*.partial")) and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    time.sleep(1.0)  # the workers are encoding
    assert proc.poll() is None, "packing ended before the signal: make the list longer"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert err.strip().splitlines()[-1] == ("deepvision im2rec: terminated (SIGTERM); unfinished record files "
                                            "were removed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.lst", "imgs"]


# -- smaller items ------------------------------------------------------------------------------------------
def test_offset_message_says_why_an_offset_near_the_end_is_wrong(tmp_path):
    from deepvision.data.records import RecordFile

    rec = write_records(tmp_path / "a.rec", [(0.0, b"x" * 20), (1.0, b"y" * 20)])
    size = rec.stat().st_size
    (tmp_path / "a.idx").write_text(f"0\t0\n1\t{size - 4}\n")
    with pytest.raises(UserError, match=rf"at byte offset {size - 4}, only 4 byte\(s\) before the end of the "
                                        rf"{size}-byte file, too close for an 8-byte record header"):
        RecordFile.open(rec, cache=False)
    (tmp_path / "a.idx").write_text(f"0\t0\n1\t{size + 8}\n")
    with pytest.raises(UserError, match=f"at byte offset {size + 8}, beyond the end of the {size}-byte file"):
        RecordFile.open(rec, cache=False)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    from deepvision.config.io import load_config, load_yaml_text

    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.5\n")
    with pytest.raises(UserError, match=r"c.yaml is not valid YAML \(line 4\): duplicate key 'lr' \(first given on "
                                        r"line 2\)"):
        load_config(path)
    assert load_yaml_text("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  a: 3\n")["x"] == {"a": 3, "b": 2}  # merges ok


def test_shuffled_list_order_is_unchanged_for_sane_trees(tmp_path):
    """The loop guard must not change im2rec.py's output: same shuffled .lst as the reference walk."""
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for k in range(5):
            (root / c / f"{k}.png").write_bytes(b"x")
    im2rec.make_list(tmp_path / "d", root, recursive=True)
    expected = list(mxnet_list_image(str(root), True, (".jpeg", ".jpg", ".png")))
    random.seed(100)
    random.shuffle(expected)
    assert (tmp_path / "d.lst").read_text() == "".join(f"{i}\t{lab:f}\t{p}\n" for i, p, lab in expected)


def test_mean_file_with_nan_or_out_of_range_values_is_refused(tmp_path):
    from deepvision.data.mean_file import read_mean_rgb as read_mean_json

    for text, bad in (('{"R": NaN, "G": 1, "B": 2}', "mean R is nan"), ('{"R": 1, "G": Infinity, "B": 2}',
                                                                         "mean G is inf"),
                      ('{"R": 1, "G": 2, "B": 1e9}', "mean B is 1000000000.0")):
        (tmp_path / "m.json").write_text(text)
        with pytest.raises(UserError, match=f"{bad}; mean values must be finite numbers in"):
            read_mean_json(tmp_path / "m.json")
    for value in ('"1_2_3"', '"123"', "true"):  # a hand-written file: the text 123 was read as 123, true as 1
        (tmp_path / "m.json").write_text(f'{{"R": {value}, "G": 1, "B": 2}}')
        with pytest.raises(UserError, match=r"m.json: R, G and B must be numbers, got"):
            read_mean_json(tmp_path / "m.json")


CONFIG_CASES = [
    ("data.batch_size=1e30", "data.batch_size must be a finite number in [1, 65,536]"),
    ("train.seed=1e23", "train.seed must be a finite number in [0, 4,294,967,295]"),
    ("data.image_size=100000", "data.image_size must be a finite number in [1, 8,192]"),
    ("optim.lr=1e308", "optim.lr must be a finite number in (0, 100]"),
    ("optim.lr=.nan", "optim.lr must be a finite number in (0, 100], got nan"),
    ("optim.lr=.inf", "optim.lr must be a finite number"),
    ("data.mean=[.nan]", "data.mean[0] must be a finite number"),
    ("data.std=[0.5, .inf, 0.5]", "data.std[1] must be a finite number"),
    ("data.scale=.nan", "data.scale must be a finite number"),
    ("optim.weight_decay=.nan", "optim.weight_decay must be a finite number in [0, 1)"),
    ("train.clip_grad_norm=.inf", "train.clip_grad_norm must be a finite number"),
    ("data.augment.rotate=.nan", "data.augment.rotate must be a finite number in [0, 360]"),
    ("optim.momentum=1", "optim.momentum must be a finite number in [0, 1)"),
    ("optim.momentum=-0.1", "optim.momentum must be a finite number in [0, 1)"),
    ("model.num_classes=0", "model.num_classes must be a finite number in [1, 100,000]"),
    ("train.epochs=1e12", "train.epochs must be a finite number in [1, 100,000]"),
    ("schedule.ranges=['1-5: nan']", "schedule.ranges[0] learning rate must be a finite number"),
    ("data.augment.scale=[0.08, .inf]", "data.augment.scale must be [low, high]"),
]


@pytest.mark.parametrize(("override", "message"), CONFIG_CASES)
def test_absurd_or_non_finite_config_numbers_are_one_line_errors(override, message):
    from deepvision.config import build_config

    with pytest.raises(UserError) as exc:
        build_config({}, [override])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_models_show_refuses_absurd_inputs(run_cli):
    code, _, err = run_cli("models", "show", "vgg16_ref", "--input", "3x100000x100000")
    assert code == 2 and err.count("\n") == 1 and "sides in [1, 8192]" in err
    code, _, err = run_cli("models", "show", "lenet", "--classes", "1000000000")
    assert code == 2 and "--classes must be in [1, 100,000]" in err


def test_labels_beyond_the_labels_file_are_refused(tmp_path):
    from deepvision.config.schema import DataConfig
    from deepvision.data.sources import load_data

    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name)
    (tmp_path / "l.lst").write_text("0\t0\ta.png\n1\t2\tb.png\n")
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    body = png_bytes(noise_image(1, (4, 4)))
    write_records(tmp_path / "l.rec", [(0.0, body), (2.0, body)])
    for source in ("lst", "rec"):
        cfg = DataConfig(source=source, root=str(tmp_path), train=str(tmp_path / f"l.{source}"), test=None,
                         options={"labels": "labels.txt"})
        with pytest.raises(UserError, match=r"has label 2, beyond the class numbers 0..1 named by the labels file"):
            load_data(cfg)


def test_a_list_mixing_label_counts_is_refused(tmp_path, run_cli):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / name)
    (tmp_path / "m.lst").write_text("0\t0\ta.png\n1\t1\t2\tb.png\n")
    cfg = tmp_path / "m.yaml"
    cfg.write_text(json.dumps({"data": {"source": "lst", "root": str(tmp_path), "train": str(tmp_path / "m.lst"),
                                        "test": None}}))
    code, _, err = run_cli("data", "info", cfg)
    assert code == 2 and "mixes label counts: entry 0 has 1 label(s), entry 1 has 2" in err


def test_evaluation_labels_beyond_the_runs_classes_are_refused_before_predicting():
    from types import SimpleNamespace

    from deepvision.evaluation.evaluate import _check_labels_fit

    _check_labels_fit(SimpleNamespace(targets=np.array([0, 9, 3])), 10, "t.lst")
    _check_labels_fit(SimpleNamespace(), 10, "t.lst")
    with pytest.raises(UserError, match=r"the t\.lst data's sample 1 has label 12, but the run has 10 classes "
                                        r"\(labels 0\.\.9\)"):
        _check_labels_fit(SimpleNamespace(targets=np.array([0, 12, 3])), 10, "t.lst")


def test_data_info_reads_the_mean_file_like_training(tmp_path, run_cli):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / name)
    (tmp_path / "m.lst").write_text("0\t0\ta.png\n1\t1\tb.png\n")
    (tmp_path / "mean.json").write_text('{"R": 120.5, "G": 110, "B": 100.25}')
    os.symlink("/dev/zero", tmp_path / "zero.json")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "bad.json").write_text('{"R": 1, "G": 2, "B": 300}')
    cfg = tmp_path / "m.yaml"
    cfg.write_text(json.dumps({"data": {"source": "lst", "root": str(tmp_path), "train": str(tmp_path / "m.lst"),
                                        "test": None}}))
    code, out, err = run_cli("data", "info", cfg, "--set", "data.mean=mean.json")
    assert code == 0 and "  mean  R 120.50, G 110.00, B 100.25 (0..255, mean.json)" in out, err
    for name, reason in (("zero.json", "is a character device, not a regular file"),
                         ("fifo.json", "is a FIFO, not a regular file"), ("bad.json", "mean B is 300.0"),
                         ("none.json", "mean file not found")):
        code, out, err = run_cli("data", "info", cfg, "--set", f"data.mean={name}")
        assert code == 2 and out == "" and err.count("\n") == 1 and reason in err, err

def test_unchanged_decoding_reads_only_the_formats_with_a_pixel_check(tmp_path, run_cli):
    """--color -1 hands bytes to OpenCV, which also reads Radiance HDR and PGM with no pixel check (a
    17 MB RLE HDR asks for 3.2 GB): only the formats Pillow's header check covers reach it."""
    from deepvision.data.imageio import NotAnImageError

    hdr = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 16384 +X 16384\n" + bytes(64)
    pgm = b"P5\n200 200\n255\n" + bytes(40000)
    for data in (hdr, pgm):
        with pytest.raises(NotAnImageError, match="not a recognised image format"):
            decode_opencv(data, -1)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.pgm").write_bytes(pgm)
    (tmp_path / "p.lst").write_text("0\t0\ta.pgm\n")
    code, _, err = run_cli("im2rec", tmp_path / "p", tmp_path / "imgs", "--color", "-1", "--max-pixels", "10000")
    assert code == 2 and "not a recognised image format" in (tmp_path / "p.skipped.txt").read_text()


@pytest.mark.parametrize(("option", "message"), [
    ("classes=10000000000", "data.options.classes must be a whole number from 1 to 100,000, got 10000000000"),
    ("size=100000", "data.options.size must be a whole number from 1 to 2,048, got 100000"),
    ("seed=99999999999999999999", "data.options.seed must be a whole number from 0 to 4,294,967,295"),
    ("channels=2", "data.options.channels must be 1 or 3, got 2"),
    ("samples=1000000000", "data.options of the synthetic source (samples x channels x size x size per split) "
                           "declares 7.1 TB, above the"),
])
def test_synthetic_options_are_bounded_before_anything_is_allocated(tmp_path, run_cli, option, message):
    import yaml

    cfg = {"name": "syn", "model": {"name": "lenet", "num_classes": 10, "in_channels": 3},
           "data": {"source": "synthetic", "train": "train", "val": "val", "image_size": 28,
                    "options": {"samples": 16, "classes": 10, "size": 28, "channels": 3}}}
    (tmp_path / "syn.yaml").write_text(yaml.safe_dump(cfg))
    code, out, err = run_cli("data", "info", tmp_path / "syn.yaml", "--set", f"data.options.{option}")
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
