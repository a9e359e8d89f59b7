"""Every hostile input of the corpus ends in one UserError line, with every input file byte-identical."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from deepvision.errors import UserError
from tests.fuzz.corpus import CASES

ROOT = Path(__file__).resolve().parents[2]


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = f"-> {os.readlink(path)}"
        elif path.is_file():
            out[rel] = path.read_bytes()
        elif not path.is_dir():
            out[rel] = "special"
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_case_is_one_line_and_inputs_stay(name, tmp_path):
    call, message = CASES[name](tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(UserError) as info:
        call()
    text = str(info.value)
    assert message in text and "\n" not in text
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before


def test_memory_cases_under_an_8_gb_address_space_limit():
    """The cases that would allocate gigabytes without their check, in a child limited to 8 GB of address space."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    child = subprocess.run([sys.executable, "-m", "tests.fuzz.corpus"], cwd=ROOT, env=env, preexec_fn=limit,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0 and child.stdout.strip() == "ok", child.stdout + child.stderr[-2000:]
