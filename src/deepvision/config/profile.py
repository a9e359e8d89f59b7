"""Every decision the `profile` key makes, in one place: one switch, and explicit keys win.

`modern` (default) and `reference` (the reference system's behaviour, its mistakes included where they
shape results) differ in:

- data order: modern reshuffles every epoch; reference reads one fixed order (`data.shuffle`);
- rotation: modern draws an angle in [-a, a]; reference always rotates by +a
  (`data.augment.rotation_mode`);
- model builders that take `reference=`: the reference layer details (e.g. ELU alpha, bias terms);
- resume: reference resets the optimizer state, as the reference did
  (`train.reset_optimizer_on_resume`);
- checkpoints kept: modern keeps the newest 2 epochs (plus last, best and those before learning-rate
  steps); reference keeps 5, because its workflow stops a run and resumes it from an epoch chosen on
  the curves (`checkpoint.keep`).

An explicitly set key always wins over the profile.
"""

from __future__ import annotations

from typing import Any


def is_reference(cfg: Any) -> bool:
    return getattr(cfg, "profile", "modern") == "reference"


def apply_profile(cfg: Any) -> None:
    """Fill the data and checkpoint keys the profile decides, unless set (called when a config is validated, so
    `config.yaml` shows the resolved values)."""
    reference = is_reference(cfg)
    if cfg.data.augment.rotation_mode is None:
        cfg.data.augment.rotation_mode = "fixed" if reference else "uniform"
    if cfg.data.shuffle is None:
        cfg.data.shuffle = not reference
    if cfg.checkpoint.keep == "auto":
        cfg.checkpoint.keep = 5 if reference else 2


def model_reference(cfg: Any) -> bool:
    """The `reference=` flag for model builders that accept one."""
    return is_reference(cfg)


def reset_optimizer_on_resume(cfg: Any) -> bool:
    """Whether a resume starts with a fresh optimizer state."""
    explicit = cfg.train.reset_optimizer_on_resume
    return bool(explicit) if explicit is not None else is_reference(cfg)
