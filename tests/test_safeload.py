"""Bounded JSON/YAML reading: depth limit, alias-expansion budget, one-line errors at every reader."""

from __future__ import annotations

import io
import json
import os
import re
import warnings
import zipfile

import numpy as np
import pytest
import yaml

from deepvision.errors import UserError
from deepvision.safeload import (
    LimitError,
    ParseError,
    check_image_side,
    env_flag,
    json_depth,
    load_json,
    load_yaml,
    read_json,
    regular_file,
)

# A 9-level "billion laughs": 9**9 (387 million) strings once expanded, from 400 bytes of text.
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))


def test_json_depth_ignores_brackets_inside_strings():
    assert json_depth('{"a": "[[[[{{{{", "b": [1, [2, {"c": "\\"[["}]]}') == 4
    assert json_depth("42") == 0


@pytest.mark.parametrize("depth", [101, 5_000, 200_000])
def test_deep_json_is_a_limit_error_not_recursion(depth):
    with pytest.raises(LimitError, match=rf"^x.json: JSON nested deeper than 100 levels \({depth}\)"):
        load_json("[" * depth + "]" * depth, "x.json")


def test_json_at_the_limit_parses():
    value = load_json("[" * 100 + "]" * 100)
    for _ in range(99):
        (value,) = value
    assert value == []


def test_invalid_json_is_a_parse_error_with_line():
    with pytest.raises(ParseError, match=r"^f.json is not valid JSON \(line 2\): Expecting value$"):
        load_json('{"a":\n}', "f.json")
    with pytest.raises(ParseError) as info:
        load_json('{"bbox": [' + "9" * 5000 + "]}", "train.json")  # more digits than Python converts
    assert str(info.value) == ("train.json is not valid JSON: an integer of 5,000 digits, more than the 4,300 a "
                               "number may have; no count, size or coordinate needs that many")
    assert isinstance(ParseError("x"), ValueError) and not isinstance(LimitError("x"), ValueError)


def test_a_json_object_naming_a_key_twice_is_refused(tmp_path):
    with pytest.raises(ParseError) as info:
        load_json('{"images": [{"id": 1, "category_id": 1, "category_id": 7}]}', "ann.json")
    assert str(info.value) == "ann.json: a JSON object names 'category_id' twice; keep one of them"
    (tmp_path / "preprocess.json").write_text('{"channels": 1, "scale": 0.5, "scale": 1.0}')
    with pytest.raises(ParseError, match=r"preprocess.json: a JSON object names 'scale' twice"):
        read_json(tmp_path / "preprocess.json")
    assert load_json('{"a": {"k": 1}, "b": {"k": 2}}') == {"a": {"k": 1}, "b": {"k": 2}}  # one key per object


def test_yaml_alias_bomb_is_refused_before_construction():
    assert len(ALIAS_BOMB) < 500
    with pytest.raises(LimitError, match=r"^data.yaml: YAML aliases expand the node on line \d+ beyond"):
        load_yaml(ALIAS_BOMB, "data.yaml")


def test_yaml_anchors_and_merges_within_budget_still_work():
    text = "base: &b {lr: 0.1, wd: 0.0005}\nx:\n  <<: *b\n  lr: 0.2\ny: [*b, *b]\n"
    data = load_yaml(text)
    assert data["x"] == {"lr": 0.2, "wd": 0.0005}
    assert data["y"] == [{"lr": 0.1, "wd": 0.0005}] * 2


def test_recursive_and_deep_yaml_are_refused():
    with pytest.raises(LimitError, match="contains an alias to itself"):
        load_yaml("a: &a [1, *a]\n")
    with pytest.raises(LimitError, match=r"nested deeper than 100 levels \(line 1\)"):
        load_yaml("[" * 3000 + "]" * 3000)
    # aliases stacking depth: each level nests the previous anchor 60 deep
    text = "a: &a " + "[" * 60 + "]" * 60 + "\nb: " + "[" * 60 + "*a" + "]" * 60 + "\n"
    with pytest.raises(LimitError, match="deeper than 100 levels"):
        load_yaml(text)


def test_yaml_tags_and_syntax_errors_are_one_line():
    for text in ("!!python/object/apply:os.system [ls]", "a: [1,\n", "a: 1\na: 2\n\tb"):
        with pytest.raises(ParseError) as info:
            load_yaml(text, "c.yaml")
        assert "\n" not in str(info.value) and str(info.value).startswith("c.yaml is not valid YAML")


def test_read_json_refuses_fifo_before_opening(tmp_path):
    fifo = tmp_path / "run.json"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match=r"cannot be read: not a regular file \(a FIFO\)"):
        read_json(fifo)
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "absent.json")
    with pytest.raises(UserError, match="is a directory, not a regular file"):
        regular_file(tmp_path)


@pytest.mark.parametrize("name", ["DEEPVISION_MAX_IMAGE_SIDE", "DEEPVISION_MAX_IMAGE_PIXELS", "DEEPVISION_MAX_READ_GB"])
@pytest.mark.parametrize("value", ["\u0661\u0660", "1_0", "nan", "-3", "0", "1e300", "1e-300"])
def test_ceilings_in_the_environment_are_plain_numbers(run_cli, monkeypatch, name, value):
    """Arabic-Indic digits and `1_0` were read as 10 (int() reads them); a bad value was reported, deep in a
    reader, as an error of the file being read ("RUN/preprocess.json: DEEPVISION_MAX_IMAGE_SIDE ...")."""
    monkeypatch.setenv(name, value)
    code, out, err = run_cli("recipes")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert err.startswith(f"deepvision recipes: error: the environment variable {name} must be a "), err


@pytest.mark.parametrize(("value", "on"), [("1", True), ("TRUE", True), ("yes", True), (" On ", True),
                                           ("0", False), ("false", False), ("No", False), ("OFF", False), ("", False)])
def test_yes_no_words_in_the_environment(monkeypatch, value, on):
    """DEEPVISION_OFFLINE=false/no/off turned offline mode on: only "" and "0" were read as off."""
    monkeypatch.setenv("DEEPVISION_OFFLINE", value)
    assert env_flag("DEEPVISION_OFFLINE") is on
    monkeypatch.delenv("DEEPVISION_OFFLINE")
    assert env_flag("DEEPVISION_OFFLINE") is False


@pytest.mark.parametrize("value", ["2", "y", "offline", "enable", "-1"])
def test_other_words_for_a_switch_are_refused_when_the_command_starts(run_cli, monkeypatch, value):
    monkeypatch.setenv("DEEPVISION_OFFLINE", value)
    code, out, err = run_cli("recipes")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert err.startswith("deepvision recipes: error: the environment variable DEEPVISION_OFFLINE must be one of "
                          "1/true/yes/on (on) or 0/false/no/off or empty (off), in any case, got "), err
    assert err.rstrip().endswith(repr(value)), err


def test_whole_ceilings_refuse_a_fraction(monkeypatch):
    from deepvision.safeload.files import max_read_bytes
    from deepvision.safeload.images import max_image_pixels

    monkeypatch.setenv("DEEPVISION_MAX_IMAGE_PIXELS", "99.9")
    with pytest.raises(UserError, match="pixels from 1 to 4,611,686,018,427,387,904, got '99.9'"):
        max_image_pixels()
    monkeypatch.setenv("DEEPVISION_MAX_IMAGE_PIXELS", "1e8")  # an exponent is a plain number
    assert max_image_pixels() == 10**8
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.5")
    assert max_read_bytes() == 5 * 10**8


def test_image_side_ceiling_is_configurable(monkeypatch):
    check_image_side("size", 224, 224)
    with pytest.raises(UserError, match=r"^meta size 45000x45000 exceeds the ceiling of 16384 pixels"):
        check_image_side("meta size", 45000, 45000)
    with pytest.raises(UserError, match="must be positive"):
        check_image_side("size", 0, -5)
    monkeypatch.setenv("DEEPVISION_MAX_IMAGE_SIDE", "50000")
    check_image_side("size", 45000, 45000)
    monkeypatch.setenv("DEEPVISION_MAX_IMAGE_SIDE", "nan")
    with pytest.raises(UserError, match="MAX_IMAGE_SIDE must be a whole number of pixels from 1 to 2,147,483,647"):
        check_image_side("size", 1)


def test_config_file_and_set_use_the_bounds(tmp_path):
    from deepvision.config.io import parse_override, read_yaml

    path = tmp_path / "c.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(LimitError, match=r"c.yaml: YAML aliases expand"):
        read_yaml(path)
    with pytest.raises(LimitError, match=r"^--set data.options: YAML aliases expand"):
        parse_override("data.options=" + ALIAS_BOMB.replace("\n", ", ").join("{}"))
    assert parse_override("optim.lr=[1,") == (["optim", "lr"], "[1,")  # not YAML: kept as text
    with pytest.raises(LimitError, match="--set a: YAML nested deeper"):
        parse_override("a=" + "[" * 500)


def test_model_options_set_uses_the_bounds():
    from deepvision.cli.commands.models import parse_options

    assert parse_options(["stages=[2,2]", "name=x"]) == {"stages": [2, 2], "name": "x"}
    with pytest.raises(LimitError):
        parse_options(["o=" + ALIAS_BOMB.replace("\n", ", ").join("{}")])


def _fake_run(root, name, state_text):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"name": name, "model": {"name": "lenet"},
                                                     "data": {"source": "digits"}}))
    (run / "run.json").write_text(state_text)
    return run


def test_runs_lists_the_others_when_one_run_json_is_hostile(tmp_path):
    from deepvision.runs.journal import journal
    from deepvision.runs.rundir import RunDir

    _fake_run(tmp_path, "good", json.dumps({"status": "finished"}))
    bad = _fake_run(tmp_path, "bad", "[" * 100_000 + "]" * 100_000)
    rows = {r["name"]: r for r in journal(tmp_path)}
    assert rows["good"]["status"] == "finished"
    assert rows["bad"]["status"].startswith("damaged: ") and "nested deeper than 100" in rows["bad"]["status"]
    with pytest.raises(LimitError, match="run.json: JSON nested deeper"):
        RunDir(bad).read_state()


def test_preprocess_json_is_bounded_and_validated(tmp_path):
    from deepvision.runs.rundir import RunDir

    run = RunDir(tmp_path)
    cases = {
        "[" * 2000 + "]" * 2000: "nested deeper than 100",
        json.dumps({"channels": 3, "size": [45000, 45000]}): "preprocess size 45000x45000 exceeds the ceiling",
        json.dumps({"channels": 7, "size": [32, 32]}): "preprocess channels must be 1 or 3, got 7",
        json.dumps({"channels": 3, "size": [0, -5]}): "preprocess size 0x-5 must be positive",
        json.dumps({"channels": 3, "size": [32, 32], "std": [0, 1, 1]}): "must be finite",
        json.dumps({"channels": 3, "size": [32, 32], "resize": 10**9}): "preprocess resize 1000000000 exceeds",
    }
    for text, message in cases.items():
        run.preprocess_path.write_text(text)
        with pytest.raises(UserError, match=message):
            run.read_preprocess()
    run.preprocess_path.write_text(json.dumps({"channels": 3, "size": [32, 40], "resize": 36}))
    assert run.read_preprocess().size == (32, 40)


@pytest.mark.parametrize("value", ["0x" + "f" * 4000, "1" * 5000, "-0b" + "1" * 200, "9" * 200])
def test_an_integer_beyond_the_range_is_one_line(value):
    from deepvision.safeload import LimitError, load_yaml

    with pytest.raises(LimitError, match=r"^c\.yaml: the integer on line 2 \([\d,]+ characters\) is out of "
                                         r"range \(beyond \+-2\*\*128\)$"):
        load_yaml(f"a: 1\nb: {value}\n", "c.yaml")


def test_ordinary_integers_still_load():
    from deepvision.safeload import load_yaml

    assert load_yaml("a: 0x1f\nb: 1000\nc: -7\nd: 18446744073709551616\n") == \
        {"a": 31, "b": 1000, "c": -7, "d": 2**64}


@pytest.mark.parametrize("text", ["epochs: 1_1\n", "lr: 0.0_5\n", "mean: [1_0]\n", "seed: 0x_1f\n"])
def test_a_yaml_number_with_a_digit_separator_is_refused(text):
    """YAML 1.1 reads 1_1 as 11; numbers are read as written everywhere else, so it is refused in one line."""
    with pytest.raises(UserError, match=r"^c\.yaml: the value \S+ on line 1 is a number with a digit separator "):
        load_yaml(text, "c.yaml")
    assert load_yaml("name: run_1\nt: '1_1'\n", "c.yaml") == {"name": "run_1", "t": "1_1"}


@pytest.mark.parametrize("text", ["batch_size: 1:30\n", "lr: 1:30.5\n"])
def test_a_yaml_base_60_number_is_refused(text):
    with pytest.raises(UserError, match=r"on line 1 is a YAML base-60 number; quote it"):
        load_yaml(text, "c.yaml")
    assert load_yaml("t: '1:30'\nlr: 1.5e-3\nn: 0x10\n", "c.yaml") == {"t": "1:30", "lr": 0.0015, "n": 16}


@pytest.mark.parametrize("text", ["epochs: 010\n", "seed: -07\n", "size: [00, 1]\n"])
def test_a_yaml_octal_number_is_refused(text):
    """YAML 1.1 reads a zero-padded 010 as 8; hexadecimal and binary say their base and are read."""
    with pytest.raises(UserError, match=r"on line 1 is a YAML octal number \(a leading 0\); quote it"):
        load_yaml(text, "c.yaml")
    assert load_yaml("a: 0\nb: 0x10\nc: 0b10\nd: 010.5\ne: '010'\n") == {"a": 0, "b": 16, "c": 2, "d": 10.5, "e": "010"}


def test_mat_compressed_variables_are_checked_before_loadmat(tmp_path, monkeypatch):
    """A compressed MAT v5 variable that declares far more than 100x its stored bytes (or more than
    the read ceiling) is refused from its tag; an honest compressed file loads unchanged."""
    import numpy as np
    import scipy.io

    from deepvision.safeload import check_mat_file

    scipy.io.savemat(tmp_path / "bomb.mat", {"a": np.zeros((3, 4_000_000), np.uint8)}, do_compression=True)
    assert (tmp_path / "bomb.mat").stat().st_size < 100_000
    with pytest.raises(UserError, match=r"bomb.mat variable at offset 128 declares 12.0 MB but the file stores "
                                        r".* \(compressed more than 100:1\)"):
        check_mat_file(tmp_path / "bomb.mat")
    rng = np.random.default_rng(0)
    honest = {"a": rng.integers(0, 255, (30, 400), dtype=np.uint8), "names": np.array(["x", "y"], object)}
    scipy.io.savemat(tmp_path / "ok.mat", honest, do_compression=True)
    scipy.io.savemat(tmp_path / "plain.mat", honest)
    for name in ("ok.mat", "plain.mat"):
        assert check_mat_file(tmp_path / name) == tmp_path / name
        assert np.array_equal(scipy.io.loadmat(tmp_path / name)["a"], honest["a"])
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "0.00001")  # 10 kB
    with pytest.raises(UserError, match="above the 10.0 kB one read may take"):
        check_mat_file(tmp_path / "ok.mat")


def test_mat_stream_that_inflates_past_its_declared_size_is_refused(tmp_path):
    import struct
    import zlib

    from deepvision.safeload import check_mat_file

    header = b"MATLAB 5.0 MAT-file".ljust(124, b" ") + b"\x00\x01IM"
    inner = struct.pack("<II", 14, 16) + bytes(5000)  # declares 16 bytes, inflates to 5,008
    stream = zlib.compress(inner)
    (tmp_path / "lie.mat").write_bytes(header + struct.pack("<II", 15, len(stream)) + stream)
    with pytest.raises(UserError, match="inflates to more than the 24 B it declares"):
        check_mat_file(tmp_path / "lie.mat")
    (tmp_path / "cut.mat").write_bytes(header + struct.pack("<II", 15, 10**6) + stream)
    with pytest.raises(UserError, match="claims 1.0 MB but the file holds"):
        check_mat_file(tmp_path / "cut.mat")


def test_csv_errors_are_one_line_naming_the_file_and_line(tmp_path):
    import csv

    from deepvision.safeload import csv_rows

    text = "emotion,pixels,Usage\n0,1 2,Training\n0," + "7" * 200_000 + ",Training\n"
    (tmp_path / "fer.csv").write_text(text)
    with open(tmp_path / "fer.csv", newline="") as f:
        rows = csv_rows(csv.DictReader(f), tmp_path / "fer.csv")
        assert next(rows)["pixels"] == "1 2"
        with pytest.raises(UserError, match=r"fer.csv: the CSV row near line 2 is not readable \(field larger than"):
            next(rows)


def test_text_files_are_bounded_and_utf8(tmp_path):
    from deepvision.safeload import read_text_file

    (tmp_path / "ok.txt").write_text("cat\ndög\n", encoding="utf-8")
    assert read_text_file(tmp_path / "ok.txt") == "cat\ndög\n"
    (tmp_path / "bad.txt").write_bytes(b"cat\n\xffdog\n")
    with pytest.raises(UserError, match=r"labels file .*bad.txt is not UTF-8 text \(byte 4\)"):
        read_text_file(tmp_path / "bad.txt", "labels file")
    with open(tmp_path / "sparse.txt", "wb") as f:
        f.truncate(8 * 2**30)  # 8 GB, never read
    with pytest.raises(UserError, match="holds 8.6 GB, more than the 67.1 MB"):
        read_text_file(tmp_path / "sparse.txt", "labels file")
    os.mkfifo(tmp_path / "fifo.txt")
    with pytest.raises(UserError, match="is a FIFO, not a regular file"):
        read_text_file(tmp_path / "fifo.txt", "labels file")
    with pytest.raises(UserError, match="labels file not found"):
        read_text_file(tmp_path / "none.txt", "labels file")


def test_a_leading_byte_order_mark_is_dropped_by_the_text_readers(tmp_path):
    """Excel's 'CSV UTF-8' and older Notepad start a file with U+FEFF: read as the text it is."""
    from deepvision.data.lst import read_lst
    from deepvision.fileio import open_regular_text
    from deepvision.interop.mxnet_import import read_labels
    from deepvision.safeload import read_text_file

    bom = b"\xef\xbb\xbf"
    (tmp_path / "labels.txt").write_bytes(bom + b"cat\ndog\n")
    assert read_text_file(tmp_path / "labels.txt") == "cat\ndog\n"
    assert read_labels(tmp_path / "labels.txt", 2) == ["cat", "dog"]
    (tmp_path / "p.lst").write_bytes(bom + b"0\t1\ta.png\n1\t0\tb.png\n")
    assert [(e.index, e.label, e.path) for e in read_lst(tmp_path / "p.lst")] == [(0, 1.0, "a.png"), (1, 0.0, "b.png")]
    (tmp_path / "f.csv").write_bytes(bom + b"emotion,pixels\n")
    with open_regular_text(tmp_path / "f.csv") as f:
        assert f.readline() == "emotion,pixels\n"
    (tmp_path / "mid.txt").write_bytes(b"cat\n" + bom + b"dog\n")  # only a leading mark is dropped
    assert read_text_file(tmp_path / "mid.txt") == "cat\n\ufeffdog\n"


def test_json_and_yaml_files_are_bounded_by_their_size_before_reading(tmp_path):
    from deepvision.safeload import read_json, read_yaml

    for name in ("a.json", "c.yaml"):
        with open(tmp_path / name, "wb") as f:
            f.truncate(8 * 2**30)  # sparse: 8 GB that are never read
    with pytest.raises(UserError, match=r"a.json holds 8.6 GB, more than the 2.0 GB such a file may hold"):
        read_json(tmp_path / "a.json")
    with pytest.raises(UserError, match=r"c.yaml holds 8.6 GB, more than the 67.1 MB such a file may hold"):
        read_yaml(tmp_path / "c.yaml")
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "ok.json") == {"a": 1}
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "none.json")


def test_name_lines_split_only_at_line_breaks_a_file_has():
    """NEL (U+0085) and U+2028 stay inside the name (check_class_names then names them), so a 2-line
    file is 2 classes, never 3 shifted ones; \\r\\n and \\r end lines as \\n does."""
    from deepvision.safeload import check_class_names, name_lines

    assert name_lines("cat\r\ndog\rbird\n\n  fish  \n") == ["cat", "dog", "bird", "fish"]
    names = name_lines("a\u0085b\nc\u2028d\n")
    assert names == ["a\u0085b", "c\u2028d"]
    with pytest.raises(UserError, match=r"class name 'a\\x85b' is empty or holds a control character"):
        check_class_names(names, "labels.txt")


@pytest.mark.parametrize("value, shown", [
    ("10", r"'10' \(a str\)"), (10.0, r"10.0 \(a float\)"), (True, r"True \(a bool\)"), (None, r"None \(a NoneType\)"),
    (3, "3"), (2**700, "a 701-bit number"),
])
def test_whole_number_checks_show_the_wrong_value_and_its_type(value, shown):
    """A string that looks like a valid number is shown as a string, so the message never reads
    'must be 1, 2 or 10, got 10'."""
    from deepvision.safeload import check_choice, check_range

    with pytest.raises(UserError, match=rf"^--crops must be 1, 2 or 10, got {shown}$"):
        check_choice("--crops", value, (1, 2, 10))
    with pytest.raises(UserError, match=rf"^--top must be a whole number from 4 to 9, got {shown}$"):
        check_range("--top", value, 4, 9)
    assert check_choice("--crops", 10, (1, 2, 10)) == 10 and check_range("--top", 5, 4, 9) == 5


def test_image_files_lists_regular_images_and_names_what_is_not_one(tmp_path):
    from deepvision.safeload import image_files

    (tmp_path / "sub" / "folder.jpg").mkdir(parents=True)  # a folder named like an image is a folder
    (tmp_path / ".hidden").mkdir()
    for name in ("b.JPG", "a.png", "notes.txt", ".c.jpg", ".hidden/d.jpg", "sub/e.webp"):
        (tmp_path / name).write_bytes(b"x")
    assert image_files(tmp_path, (".jpg", ".png", ".webp")) == [tmp_path / n for n in ("a.png", "b.JPG", "sub/e.webp")]
    assert image_files(tmp_path, (".jpg", ".png"), recursive=False) == [tmp_path / "a.png", tmp_path / "b.JPG"]
    os.symlink(tmp_path / "gone.jpg", tmp_path / "sub" / "link.jpg")
    with pytest.raises(UserError, match=r"link.jpg is a broken link, not an image file; remove it from "):
        image_files(tmp_path, (".jpg",))



@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_is_image_file_is_the_one_rule_for_an_entry_named_like_an_image(tmp_path):
    """The rule `image_files` applies to each entry, for walkers of their own (im2rec --list): a regular file
    (or a link to one) is an image, a folder is a folder, anything else is refused naming it, never opened."""
    from deepvision.safeload import is_image_file

    (tmp_path / "a.png").write_bytes(b"x")
    os.symlink(tmp_path / "a.png", tmp_path / "l.png")
    (tmp_path / "d.png").mkdir()
    os.mkfifo(tmp_path / "f.png")
    assert [is_image_file(tmp_path / n, tmp_path) for n in ("a.png", "l.png", "d.png")] == [True, True, False]
    with pytest.raises(UserError, match=rf"^{tmp_path / 'f.png'} is a FIFO, not an image file; remove it from "
                                        rf"{tmp_path} \(only regular files are read as images\)$"):
        is_image_file(tmp_path / "f.png", tmp_path)

def test_image_files_follows_linked_folders_and_refuses_a_loop_or_a_folder_read_twice(tmp_path):
    """A linked sub-folder is read like any folder (never left out without a word); a link back to a folder
    holding the walk, or a second way to a folder read already, is refused naming the link; with a root,
    a link leading outside it is refused."""
    from deepvision.safeload import image_files, tree_entries

    top, ext = tmp_path / "top", tmp_path / "ext"
    (top / "real").mkdir(parents=True)
    ext.mkdir()
    for path in (top / "a.jpg", top / "real" / "b.jpg", ext / "c.jpg"):
        path.write_bytes(b"x")
    os.symlink(ext, top / "linked")
    assert image_files(top, (".jpg",)) == [top / "a.jpg", top / "linked" / "c.jpg", top / "real" / "b.jpg"]
    with pytest.raises(UserError, match=rf"^{top / 'linked'} is a link to {ext}, outside the dataset folder {top}; "):
        tree_entries(top, root=top)
    assert tree_entries(top, root=tmp_path)[1] == top / "linked" / "c.jpg"
    for name, target, why in (("up", tmp_path, f"which holds {top}: following it would never end"),
                              ("loop", top / "real", "are one folder")):
        os.symlink(target, top / "real" / name)
        with pytest.raises(UserError, match="remove the link$") as err:
            image_files(top, (".jpg",))
        assert str(top / "real" / name) in str(err.value) and why in str(err.value) and "\n" not in str(err.value)
        (top / "real" / name).unlink()
    os.symlink(tmp_path, top / ".hidden")  # hidden folders are not read as images, so not entered either
    assert len(image_files(top, (".jpg",))) == 3


def test_a_class_name_in_two_unicode_spellings_is_one_name_given_twice():
    from deepvision.safeload import check_class_names

    with pytest.raises(UserError, match=r"is given twice \(two Unicode spellings of one name\)"):
        check_class_names(["caf\u00e9", "cafe\u0301", "dog"], "labels.txt")  # precomposed, then as macOS writes it
    with pytest.raises(UserError, match=r"class name 'a' is given twice; class names must be unique"):
        check_class_names(["a", "b", "a"], "labels.txt")
    check_class_names(["caf\u00e9", "cat", "\u0441at"], "labels.txt")  # another script's letters: another name


def test_a_class_name_with_surrounding_spaces_is_refused(tmp_path, run_cli):
    """'a' and 'a ' print alike; a class folder named 'a ' gets the same one line."""
    from PIL import Image

    from deepvision.safeload import check_class_names

    for name in ("a ", " a", "a\u00a0", "   "):
        with pytest.raises(UserError) as info:
            check_class_names(["a", name, "b"] if name.strip() else [name], "h.h5 'label_names'")
        assert str(info.value).startswith(f"h.h5 'label_names': class name {name!r} ")
    with pytest.raises(UserError) as info:
        check_class_names(["b", "a "], "h.h5 'label_names'")
    assert str(info.value) == "h.h5 'label_names': class name 'a ' has surrounding spaces (it prints as 'a'); rename it"
    check_class_names(["a b", "n01440764 tench"], "labels.txt")  # spaces inside a name are part of it
    for split in ("train", "test"):
        for cls in ("a ", "b"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / split / cls / "0.png")
    (tmp_path / "cfg.yaml").write_text(f"data: {{source: folder, root: {tmp_path / 'imgs'}}}\nmodel: {{name: lenet}}\n"
                                       f"train: {{epochs: 1}}\n")
    code, _, err = run_cli("train", tmp_path / "cfg.yaml", "--out", tmp_path / "runs")
    assert code == 2 and err.strip() == (f"deepvision train: error: {tmp_path / 'imgs' / 'train'}: class name 'a ' "
                                         f"has surrounding spaces (it prints as 'a'); rename it"), err


def test_the_read_ceiling_is_the_memory_this_process_may_use(monkeypatch):
    """Under an 8 GB address-space limit the ceiling stayed at the machine's 25 GB: a small Keras config
    whose layers need 13 GB passed the plan and failed inside torch's allocator, in its words."""
    import resource

    from deepvision.safeload.files import max_read_bytes

    monkeypatch.delenv("DEEPVISION_MAX_READ_GB", raising=False)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert max_read_bytes() <= physical
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (8 * 10**9, resource.RLIM_INFINITY))
    assert max_read_bytes() == min(8 * 10**9, max_read_bytes())
    assert max_read_bytes() <= 8 * 10**9
    monkeypatch.setenv("DEEPVISION_MAX_READ_GB", "30")  # the user's word wins
    assert max_read_bytes() == 30 * 10**9


def test_read_declared_takes_exactly_the_declared_bytes_and_nothing_after(tmp_path):
    import gzip
    import io

    from deepvision.safeload import read_declared

    assert read_declared(io.BytesIO(b"abcd"), 4, "f") == b"abcd"
    with pytest.raises(UserError, match="^f is truncated: header promises 5 bytes of data, file holds 4$"):
        read_declared(io.BytesIO(b"abcd"), 5, "f")
    with gzip.open(tmp_path / "z.gz", "wb") as f:  # 64 MiB of zeros after the 4 declared bytes
        f.write(b"abcd")
        for _ in range(64):
            f.write(bytes(2**20))
    with gzip.open(tmp_path / "z.gz", "rb") as f:
        with pytest.raises(UserError, match=r"^z.gz holds more data than its header declares \(4 bytes\)"):
            read_declared(f, 4, "z.gz")
        assert f.tell() == 5  # inflated one byte past, not the rest


def test_text_file_lines_are_read_bounded_and_name_the_file(tmp_path):
    from deepvision.safeload import text_file_lines

    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\n\xff\n")
    lines = text_file_lines(path, "text file", 100)
    assert [next(lines), next(lines)] == [(1, "one\r\n"), (2, "two\n")]
    with pytest.raises(UserError, match=rf"^text file {path} is not UTF-8 text \(line 3\)$"):
        next(lines)
    with pytest.raises(UserError, match=r"holds 14 B, more than the 10 B such a file may hold$"):
        list(text_file_lines(path, "text file", 10))
    path.write_text("x" * 50 + "\n")
    with pytest.raises(UserError, match="line 1 is longer than 20 bytes"):
        list(text_file_lines(path, "text file", 100, 20))
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UserError, match="^text file .*fifo is a FIFO, not a regular file$"):
        list(text_file_lines(tmp_path / "fifo", "text file", 100))


def test_refuse_linked_files_compares_file_identity_across_calls(tmp_path):
    from deepvision.safeload import refuse_linked_files

    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
    os.link(tmp_path / "a", tmp_path / "hard")
    os.symlink(tmp_path / "b", tmp_path / "soft")
    seen: dict = {}
    refuse_linked_files([tmp_path / "a", tmp_path / "b"], seen, "the data")
    refuse_linked_files([tmp_path / "a"], seen, "the data")  # one path met again is itself, not a link
    for link, first in (("hard", "a"), ("soft", "b")):
        with pytest.raises(UserError, match=f"^{tmp_path / link} and {tmp_path / first} are one file \\(a link\\): "
                                            f"the data would hold one image twice"):
            refuse_linked_files([tmp_path / link], seen, "the data")


def test_a_path_in_a_printed_command_is_one_shell_word():
    """`deepvision runs prune tr2 x/a b` was printed for a run folder with spaces: pasted, three targets."""
    import shlex

    from deepvision.safeload import shell_word

    for path in ("runs/a", "tr2 x/a b", "it's", "$HOME/x", "a;rm -rf b"):
        assert shlex.split(f"deepvision runs prune {shell_word(path)}") == ["deepvision", "runs", "prune", path]
    assert shell_word("runs/a") == "runs/a" and shell_word("a\nb") == "'a\\nb'"


def test_a_name_that_is_not_utf8_is_refused_and_printed_escaped():
    """A class folder named with a byte that is not UTF-8 (read as a lone surrogate) ended `train`,
    `features` and `im2rec --list` in a UnicodeEncodeError traceback when labels.txt was written."""
    from deepvision.safeload import check_class_names, printable

    name = b"cls\xff".decode("utf-8", "surrogateescape")
    with pytest.raises(UserError, match=r"^d: class name 'cls\\udcff' is not UTF-8 text"):
        check_class_names(["ok", name], "d")
    assert printable(name) == "cls\\udcff"


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


def _zip_with(path, members: list[tuple[str, bytes]]):
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile's "Duplicate name" warning: writing one twice is the point
        for name, data in members:
            zf.writestr(name, data)
    return path


def test_a_zip_member_given_twice_is_refused_by_every_zip_reader(tmp_path):
    """zipfile and np.load return the last member of a name, torch's reader the first: an .npz, a .keras
    zip or a torch checkpoint listing one name twice is refused in one line, naming the member."""
    from deepvision.fileio import zip_damage
    from deepvision.safeload import check_zip_directory, open_npz

    path = _zip_with(tmp_path / "model.npz", [("coef.npy", _npy([1.0])), ("intercept.npy", _npy([0.0])),
                                              ("intercept.npy", _npy([1000.0]))])
    message = f"{path} holds the member intercept.npy twice; the file is damaged or crafted"
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        open_npz(path)
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"), zipfile.ZipFile(path) as zf:
        check_zip_directory(path, zf)
    assert zip_damage(path) == "it holds the member 'intercept.npy' twice"
    once = _zip_with(tmp_path / "once.npz", [("coef.npy", _npy([1.0])), ("intercept.npy", _npy([0.0]))])
    with open_npz(once) as z:
        assert z.files == ["coef", "intercept"] and zip_damage(once) is None


def test_an_npz_array_named_twice_or_hidden_without_its_suffix_is_refused(tmp_path):
    """numpy reads `intercept` and `intercept.npy` both as array 'intercept' (the later wins), and reads a
    member without the .npy suffix as an array when it starts like one: its header is checked too."""
    from deepvision.safeload import open_npz

    path = _zip_with(tmp_path / "a.npz", [("intercept.npy", _npy([0.0])), ("intercept", _npy([9.0]))])
    with pytest.raises(UserError, match=r"^\S+a.npz holds the array intercept twice \(members intercept.npy and "
                                        r"intercept\); the file is damaged or crafted$"):
        open_npz(path)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (99999, 99999)})
    path = _zip_with(tmp_path / "b.npz", [("coef", buf.getvalue() + bytes(64))])  # 80 GB declared in 200 bytes
    with pytest.raises(UserError, match=r"b.npz member coef shape \(99999, 99999\) declares 80.0 GB"):
        open_npz(path)
    with open_npz(_zip_with(tmp_path / "c.npz", [("notes", b"plain bytes"), ("coef.npy", _npy([1.0]))])) as z:
        assert z["notes"] == b"plain bytes" and z["coef"].tolist() == [1.0]


def test_an_encrypted_zip_member_is_refused_from_the_directory(tmp_path):
    """zipfile asks for a password when an encrypted member is read: a RuntimeError traceback from an npz."""
    from deepvision.fileio import zip_damage
    from deepvision.safeload import open_npz
    from tests.helpers import encrypted_flag

    path = encrypted_flag(_zip_with(tmp_path / "a.npz", [("coef.npy", _npy([1.0]))]))
    with pytest.raises(UserError, match=r"^\S+a.npz member coef.npy is encrypted; deepvision reads no "
                                        r"password-protected archive$"):
        open_npz(path)
    assert "encrypted" in zip_damage(path)


def test_refuse_listed_twice_compares_files_by_identity(tmp_path):
    """One image under two spellings or through a link is one image; a name with a NUL (no file has it) is compared
    by name, never a ValueError; lists naming distinct files pass."""
    from deepvision.safeload import refuse_listed_twice

    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    (tmp_path / "l.jpg").symlink_to(tmp_path / "a.jpg")
    refuse_listed_twice([("one", [tmp_path / "a.jpg", None]), ("two", [tmp_path / "b.jpg", tmp_path / "n\x00.jpg"])],
                        tmp_path, "fix it")
    for other, shown in ((tmp_path / "." / "a.jpg", "a.jpg"),
                         (tmp_path / "l.jpg", "l.jpg (one file with a.jpg: a link)")):
        with pytest.raises(UserError) as err:
            refuse_listed_twice([("one", [tmp_path / "b.jpg", tmp_path / "a.jpg"]), ("two", [other])], tmp_path, "fix")
        assert str(err.value) == f"{shown} is listed twice, as image 2 of one and image 1 of two; fix"
