"""Property-based tests (Hypothesis) for the parsers of outside files: random and mutated inputs end in a
result or a UserError, never another exception. Example counts are bounded so the suite stays fast;
`HYPOTHESIS_PROFILE=long` runs many more."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from deepvision.errors import UserError  # noqa: E402
from deepvision.interop.mxnet_params import encode_params, read_params  # noqa: E402
from deepvision.safeload import MAX_DEPTH, json_depth, load_json, load_yaml  # noqa: E402

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30)
SEED_YAML = ("base: &b {lr: 0.1, wd: [1, 2]}\nx:\n  <<: *b\n  name: \"[{\"\nlist: [*b, *b, {a: 'q: [1'}]\n"
             "deep: [[[[1]]]]\n")


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: overwrite a byte, insert one, or delete one."""
    buf = bytearray(data)
    for kind, pos, value in edits:
        if not buf:
            buf.append(value)
            continue
        at = pos % len(buf)
        if kind == 0:
            buf[at] = value
        elif kind == 1:
            buf.insert(at, value)
        else:
            del buf[at]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255)), max_size=12)


def _result_or_user_error(fn, *args):
    try:
        return fn(*args)
    except UserError as exc:
        assert "\n" not in str(exc)
        return exc


@given(JSON_VALUES)
def test_json_round_trips(value):
    text = json.dumps(value)
    assert load_json(text) == value
    assert json_depth(text) <= 31


@given(st.text(max_size=200))
def test_random_text_is_json_or_user_error(text):
    _result_or_user_error(load_json, text)


@given(JSON_VALUES, EDITS)
def test_mutated_json_is_a_result_or_user_error(value, edits):
    _result_or_user_error(load_json, _mutate(json.dumps(value).encode(), edits))


@given(st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2000), st.sampled_from("[{"))
def test_depth_limit_is_exact(depth, opener):
    closer = {"[": "]", "{": "}"}[opener]
    inner = '{"k": ' if opener == "{" else "["
    text = (inner * depth) + "0" + ((closer) * depth)
    result = _result_or_user_error(load_json, text)
    assert isinstance(result, UserError) == (depth > MAX_DEPTH)


@given(st.text(max_size=200))
def test_random_text_is_yaml_or_user_error(text):
    _result_or_user_error(load_yaml, text)


@given(EDITS)
def test_mutated_yaml_with_anchors_is_a_result_or_user_error(edits):
    _result_or_user_error(load_yaml, _mutate(SEED_YAML.encode(), edits))


@given(st.integers(1, 9), st.integers(1, 12))
def test_alias_fan_out_is_bounded(width, levels):
    """Anchors that each reuse the previous one `width` times: accepted while the expansion stays within
    the budget, refused (not expanded) beyond it."""
    lines = ["l0: &l0 [x]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    result = _result_or_user_error(load_yaml, "\n".join(lines))
    expanded = sum(width ** i for i in range(levels))
    if isinstance(result, UserError):
        assert expanded > 100_000 and "aliases" in str(result)
    elif width > 1:
        assert len(json.dumps(result)) < 20_000_000


ARRAYS = st.lists(st.tuples(st.sampled_from(["<f4", "<f8", "<i4", "u1", "<f2"]),
                            st.lists(st.integers(0, 4), min_size=0, max_size=4)), min_size=1, max_size=4)


@given(ARRAYS, st.sampled_from([0, 1, 2, 3]), EDITS)
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_params_reader_on_mutated_files(tmp_path, arrays, version, edits):
    values = {f"arg:w{i}": np.zeros(shape, dtype) for i, (dtype, shape) in enumerate(arrays)}
    if version == 0:
        values = {k: v for k, v in values.items() if v.ndim > 0}
        if not values:
            return
    path = tmp_path / "x.params"
    data = encode_params(values, version)
    path.write_bytes(data)
    read = read_params(path)
    assert set(read) <= set(values)
    path.write_bytes(_mutate(data, edits))
    _result_or_user_error(read_params, path)


@given(st.binary(max_size=300))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_params_reader_on_random_bytes(tmp_path, data):
    path = tmp_path / "x.params"
    path.write_bytes(b"\x12\x01\x00\x00\x00\x00\x00\x00" + bytes(8) + data)
    _result_or_user_error(read_params, path)
