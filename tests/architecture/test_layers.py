"""The import structure: the layer contract (import-linter) holds, no modules import each other in a cycle, and the
data layer keeps to its size."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _graph():
    grimp = pytest.importorskip("grimp")
    return grimp.build_graph("deepvision", cache_dir=None, exclude_type_checking_imports=True)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            for j in range(i, len(edges[node])):
                nxt = edges[node][j]
                if nxt not in index:
                    work.append((node, j + 1))
                    work.append((nxt, 0))
                    recurse = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if recurse:
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def test_no_import_cycles_between_modules():
    graph = _graph()
    # a package's __init__ re-exporting its own modules is not a cycle worth reporting
    cycles = [c for c in _cycles(graph) if not all(m.startswith(c[0].rsplit(".", 1)[0]) for m in c)
              or not any(m.count(".") < c[0].count(".") for m in c)]
    cycles = [c for c in cycles if not _only_package_reexports(graph, c)]
    assert cycles == []


def _only_package_reexports(graph, component: list[str]) -> bool:
    """True when every import inside the component that closes a loop goes to or from a package __init__."""
    packages = {m for m in component if graph.find_children(m)}
    return bool(packages) and all(
        (a in packages or b in packages)
        for a in component for b in graph.find_modules_directly_imported_by(a) if b in component
    ) and len(component) == len(packages) + 1


def test_layer_contract_is_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed")
    done = subprocess.run([exe, "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def test_the_data_layer_stays_within_its_line_budget():
    """One loader, one decoder, one reader per file kind: the data layer is held to 5,000 lines so parallel
    implementations do not grow back (docs/architecture.md)."""
    data = ROOT / "src" / "deepvision" / "data"
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in data.rglob("*.py"))
    assert lines <= 5000, f"src/deepvision/data is {lines} lines; the budget is 5,000"


def _calls(tree) -> list[tuple[int, str]]:
    """(line, what) of calls that rename a file, load a torch file or open an onnxruntime session."""
    import ast

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        if name == "rename" or (owner == "os" and name == "replace"):
            found.append((node.lineno, name))
        elif name == "replace" and len(node.args) == 1 and not node.keywords:  # Path.replace (str.replace takes 2)
            found.append((node.lineno, "Path.replace"))
        elif (owner, name) == ("torch", "load"):
            found.append((node.lineno, "torch.load"))
        elif name == "InferenceSession":
            found.append((node.lineno, name))
    return found


def test_files_are_replaced_loaded_and_run_through_one_module_each():
    """Renames (atomic writes, moves) live in deepvision.fileio, as does the one torch.load (weights only);
    onnxruntime sessions are built in deepvision.onnxrt alone."""
    import ast

    home = {"rename": "fileio.py", "replace": "fileio.py", "Path.replace": "fileio.py", "torch.load": "fileio.py",
            "InferenceSession": "onnxrt.py"}
    src = ROOT / "src" / "deepvision"
    stray = [f"{p.relative_to(src)}:{line} {what}" for p in sorted(src.rglob("*.py"))
             for line, what in _calls(ast.parse(p.read_text(encoding="utf-8")))
             if p.relative_to(src).as_posix() != home[what]]
    assert not stray, "outside their one module: " + ", ".join(stray)
