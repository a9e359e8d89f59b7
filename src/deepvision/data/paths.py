"""Where data files named in a config are looked up."""

from __future__ import annotations

from pathlib import Path


def resolve_path(root: str | Path | None, name: str | Path) -> Path:
    """A data file named in a config: absolute as given; relative ones under `data.root` first, then in
    the working directory (so a stray file in the working directory never shadows the data root's)."""
    p = Path(name)
    if p.is_absolute() or not root:
        return p
    under_root = Path(root) / p
    return under_root if under_root.exists() or not p.exists() else p
