"""Refusals that once printed more than their one line: a YAML tag PyYAML's own constructor cannot parse
(it raised AttributeError/TypeError/KeyError from inside PyYAML), and an MXNet kernel of (0, 0), refused
before any torch module exists (no torch warning ahead of the line)."""

from __future__ import annotations

import warnings

import pytest

from deepvision.errors import UserError
from deepvision.safeload import load_yaml


@pytest.mark.parametrize(("text", "message"), [
    ("a: !!timestamp xx\n", r"a tagged value could not be read \(AttributeError\)"),
    ("a: !!bool maybe\n", r"a tagged value could not be read \(KeyError\)"),
    ("a: !!timestamp 2024-13-99\n", r"month must be in 1\.\.12"),
    ("a: !!python/object/apply:os.system [ls]\n", r"\(line 1\): could not determine a constructor for the tag"),
    ("a: !!python/object:foo.Bar {b: 1}\n", r"\(line 1\): could not determine a constructor for the tag"),
    ("a: !custom x\n", r"\(line 1\): could not determine a constructor for the tag '!custom'"),
])
def test_a_yaml_tag_error_is_one_line(text, message):
    with pytest.raises(UserError, match=r"^x\.yaml is not valid YAML") as info:
        load_yaml(text, "x.yaml")
    assert "\n" not in str(info.value) and str(info.value).count("not valid YAML") == 1
    assert __import__("re").search(message, str(info.value))


def test_a_config_with_such_a_tag_is_one_line(tmp_path, run_cli):
    path = tmp_path / "c.yaml"
    path.write_text("name: !!timestamp xx\n")
    code, _, err = run_cli("train", path)
    assert code == 2 and err.count("\n") == 1 and "a tagged value could not be read" in err


@pytest.mark.parametrize(("where", "attrs", "message"), [
    ("conv", {"kernel": "(0, 0)"}, r"node 'c' \(Convolution\): kernel=\(0, 0\) must hold whole numbers from 1"),
    ("conv", {"kernel": "(3, 3)", "dilate": "(0, 0)"}, r"dilate=\(0, 0\) must hold whole numbers from 1"),
    ("pool", {"kernel": "(0, 0)", "pool_type": "max"}, r"node 'p' \(Pooling\): kernel=\(0, 0\) must hold"),
])
def test_an_mxnet_kernel_of_zero_is_one_line_without_warnings(tmp_path, run_cli, where, attrs, message):
    from tests.interop.test_mxnet_trust import _checkpoint, _node

    if where == "conv":
        prefix = _checkpoint(tmp_path, attrs)
    else:
        prefix = _checkpoint(tmp_path, extra=[_node("Pooling", "p", [], **attrs)])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, _, err = run_cli("import", "mxnet", prefix, "1", "--input-size", "1x8x8", "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and __import__("re").search(message, err), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
