"""The CPU trainer keeps freed memory in the process: a step's activations cost no page faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import json, resource
import torch
from deepvision.engine.allocator import keep_freed_memory

def faults(rounds=20):
    # a training step's pattern: several blocks of a few MB live together, then all are freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        blocks = [torch.empty(4 * 2**20, dtype=torch.uint8) for _ in range(3)]
        for b in blocks:
            b.fill_(1)  # touch every page
        del blocks, b
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

set_ = keep_freed_memory()
faults(2), faults()  # the heap grows to its working size
print(json.dumps({"set": set_, "again": keep_freed_memory(), "faults": faults()}))
"""

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_blocks_are_reused_without_page_faults():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = json.loads(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                                    env=env).stdout)
    assert out["set"] and out["again"]
    # 20 rounds of three 4 MB blocks: about 61,000 page faults when glibc trims the heap after each round
    assert out["faults"] < 1000


def test_the_users_own_malloc_options_are_left_alone():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "1000000"}
    code = "from deepvision.engine.allocator import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "False"
