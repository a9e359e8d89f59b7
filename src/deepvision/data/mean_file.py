"""The reference's mean file: JSON {"R": .., "G": .., "B": ..} in 0..255 units."""

from __future__ import annotations

import math
from pathlib import Path

from deepvision.errors import UserError
from deepvision.safeload import LimitError, check_numbers, input_file, read_json


def read_mean_rgb(path: str | Path) -> list[float]:
    """[R, G, B] of a mean file, read by the bounded JSON loader; a missing file, a FIFO, bad JSON or a value
    outside 0..255 is one line."""
    p = input_file(path, "mean file", "; give the JSON file `deepvision mean` writes")
    try:
        d = read_json(p, "mean file")
        raw = [d["R"], d["G"], d["B"]]
    except LimitError:
        raise
    except (OSError, UserError, KeyError, TypeError, ValueError, UnicodeDecodeError, OverflowError):
        raise UserError(f"{p} is not a mean file; expected JSON with keys R, G, B") from None
    check_numbers(f"{p}: R, G and B", raw)  # "123" or true is no mean value
    for key, v in zip("RGB", map(float, raw)):
        if not (math.isfinite(v) and 0.0 <= v <= 255.0):
            raise UserError(f"{p}: mean {key} is {v}; mean values must be finite numbers in [0, 255]")
    return [float(v) for v in raw]
