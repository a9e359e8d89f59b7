"""Mean files: the unweighted mean of per-image channel means, from a list or a record file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deepvision.datasets.mean import compute_mean, read_mean_json, write_mean_json

COLOURS = [((10, 20, 30), (8, 6)), ((200, 100, 50), (3, 40)), ((0, 255, 128), (17, 17))]  # (RGB, (w, h))


@pytest.fixture
def solid_list(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    lines = []
    for i, (rgb, size) in enumerate(COLOURS):
        Image.new("RGB", size, rgb).save(root / f"{i}.png")
        lines.append(f"{i}\t{i}.000000\t{i}.png\n")
    (tmp_path / "s.lst").write_text("".join(lines))
    return tmp_path / "s.lst", root


def expected() -> dict[str, float]:
    arr = np.array([rgb for rgb, _ in COLOURS], dtype=np.float64)  # every image counts once, whatever its size
    return dict(zip("RGB", arr.mean(axis=0).tolist()))


def test_solid_colours_give_exact_means_from_list(solid_list):
    lst, root = solid_list
    for workers in (1, 2):
        result = compute_mean(lst, root=root, workers=workers)
        assert result.to_dict() == pytest.approx(expected(), abs=1e-9) and result.count == 3


def test_solid_colours_give_exact_means_from_record(solid_list, run_cli):
    lst, root = solid_list
    assert run_cli("im2rec", "--encoding", ".png", lst.with_suffix(""), root)[0] == 0
    result = compute_mean(lst.with_suffix(".rec"), workers=2)
    assert result.to_dict() == pytest.approx(expected(), abs=1e-9)


@pytest.mark.parametrize("named", [".rec", ".idx"])
def test_root_with_a_record_file_is_refused(solid_list, run_cli, tmp_path, named):
    """`mean d.rec --root /nonexistent` printed the record file's mean: --root was taken and never read."""
    lst, root = solid_list
    assert run_cli("im2rec", "--encoding", ".png", "--num-thread", "1", lst.with_suffix(""), root)[0] == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli("mean", lst.with_suffix(named), "--root", tmp_path / "nonexistent", "--out",
                             tmp_path / "m.json")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert "--root applies to a .lst (the folder its paths are relative to); s.rec holds its images: leave it " \
           "out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no mean file
    code, out, _ = run_cli("mean", lst.with_suffix(named), "--num-thread", "1")
    assert code == 0 and json.loads(out) == pytest.approx(expected())


def test_unreadable_images_are_skipped(solid_list):
    lst, root = solid_list
    (root / "bad.png").write_bytes(b"nope")
    lst.write_text(lst.read_text() + "3\t0.000000\tbad.png\n")
    result = compute_mean(lst, root=root, workers=1)
    assert result.count == 3 and result.skipped == [("bad.png", "not a recognised image format")]
    assert result.to_dict() == pytest.approx(expected(), abs=1e-9)


def test_cli_prints_or_writes_the_mean_file(solid_list, run_cli, tmp_path):
    lst, root = solid_list
    code, out, err = run_cli("mean", lst, "--root", root)
    assert code == 0 and json.loads(out) == pytest.approx(expected()) and "mean of 3 images" in err
    code, out, _ = run_cli("mean", lst, "--root", root, "--out", tmp_path / "mean.json", "--num-thread", "1")
    assert code == 0 and read_mean_json(tmp_path / "mean.json") == pytest.approx(expected())
    assert set(json.loads((tmp_path / "mean.json").read_text())) == {"R", "G", "B"}
    code, out, _ = run_cli("mean", lst, "--root", root, "--out", tmp_path / "mean.json", "--num-thread", "1")
    assert code == 0  # its own mean file: replaced
    (tmp_path / "instances.json").write_text('{"images": []}')  # an annotation file named by mistake
    code, _, err = run_cli("mean", lst, "--root", root, "--out", tmp_path / "instances.json")
    assert code == 2 and "instances.json exists and is not a mean file" in err
    assert (tmp_path / "instances.json").read_text() == '{"images": []}'
    write_mean_json(tmp_path / "m2.json", {"R": 1, "G": 2, "B": 3})
    assert read_mean_json(tmp_path / "m2.json") == {"R": 1.0, "G": 2.0, "B": 3.0}
    code, _, err = run_cli("mean", tmp_path / "missing.lst")
    assert code == 2 and "not found" in err


def test_binary_list_file_is_reported(tmp_path, run_cli):
    (tmp_path / "bin.lst").write_bytes(b"\x00\xff\xfe\x80")
    code, _, err = run_cli("mean", tmp_path / "bin.lst")
    assert code == 2 and "not a text list file" in err and err.count("\n") == 1


@pytest.mark.parametrize("target", ["list", "image", "image via ..", "record", "labels beside the list",
                                    "labels beside the record"])
def test_out_over_an_input_is_refused_and_the_input_kept(solid_list, run_cli, target):
    lst, root = solid_list
    source = lst
    labels = lst.with_name(f"{lst.stem}.labels.txt")  # the class names training from the list reads
    labels.write_text("a\nb\n")
    if target.endswith("record"):
        assert run_cli("im2rec", "--encoding", ".png", lst.with_suffix(""), root)[0] == 0
        source = lst.with_suffix(".rec")
    out = {"list": lst, "image": root / "1.png", "image via ..": root / ".." / "imgs" / "0.png",
           "record": lst.with_suffix(".idx")}.get(target, labels)
    before = out.read_bytes()
    given_root = [] if source.suffix == ".rec" else ["--root", root]  # a .rec holds its images
    code, _, err = run_cli("mean", source, *given_root, "--out", out, "--num-thread", "1")
    assert code == 2 and err.count("\n") == 1 and "is an input of this command" in err
    assert out.read_bytes() == before


def test_workers_never_outnumber_the_images_and_are_bounded(solid_list, monkeypatch):
    """--num-thread 48 for 3 images started 48 processes; 100,000 would have tried to."""
    from deepvision.datasets import mean as mean_module
    from deepvision.errors import UserError

    lst, root = solid_list
    sizes = []
    real_pool = mean_module._pool
    monkeypatch.setattr(mean_module, "_pool", lambda ctx, workers, rf: sizes.append(workers) or real_pool(ctx, 1, rf))
    result = compute_mean(lst, root=root, workers=48)
    assert sizes == [3] and result.count == 3
    with pytest.raises(UserError, match="--num-thread must be at most 1,024"):
        compute_mean(lst, root=root, workers=100_000)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_stop_sent_to_the_process_group_during_the_pool_ends_in_one_line(tmp_path, sig):
    """Ctrl+C signals the pool's workers too: they printed 'Process ForkPoolWorker-N:' and tracebacks."""
    import signal

    from tests.helpers import stop_group_when

    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "m.lst").write_text("".join(f"{i}\t0\ta.png\n" for i in range(60000)))
    code, err = stop_group_when(["mean", tmp_path / "m.lst", "--num-thread", "2", "--out", tmp_path / "m.json"],
                                "mean: 1000/", getattr(signal, sig))
    lines = [line for line in err.splitlines() if not line.startswith("mean: ")]  # progress lines in flight
    if sig == "SIGINT":
        assert (code, lines) == (130, ["interrupted"]), err
    else:
        assert (code, lines) == (143, ["deepvision mean: terminated (SIGTERM); unfinished files were removed"]), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "m.lst"]
