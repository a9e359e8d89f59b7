"""The model `deepvision logreg` saves: a fitted logistic regression as plain arrays in `model.npz`.

Coefficients, intercepts, classes, label names, optional standardisation and JSON metadata, loaded with
`allow_pickle=False` (so loading a model never runs code) and checked for shapes that fit together and
finite values; `LinearModel` predicts from them with numpy alone (docs/transfer.md).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepvision.errors import UserError
from deepvision.fileio import atomic_write_bytes
from deepvision.safeload import check_class_names, input_file, load_json, open_npz


@dataclass
class LinearModel:
    """A fitted (multinomial or one-vs-rest) logistic regression as plain arrays."""

    coef: np.ndarray  # (K, D), or (1, D) for two classes
    intercept: np.ndarray  # (K,) or (1,)
    classes: np.ndarray  # label values, (C,)
    label_names: list[str]
    kind: str = "multinomial"  # or "ovr"
    mean: np.ndarray | None = None  # standardisation applied before the linear map
    scale: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    def decision(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise UserError(f"the model takes {self.n_features} features per row, got an array of shape {x.shape}")
        if self.mean is not None and self.scale is not None:
            x = (x - self.mean) / self.scale
        return x @ self.coef.T + self.intercept

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = self.decision(x)
        if z.shape[1] == 1:  # two classes: one logit
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        if self.kind == "ovr":
            p = 1.0 / (1.0 + np.exp(-z))
            return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted label values (entries of `classes`)."""
        return self.classes[self.predict_proba(x).argmax(axis=1)]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays: dict[str, Any] = {"coef": self.coef, "intercept": self.intercept, "classes": self.classes,
                                  "label_names": np.array(self.label_names, dtype=str), "kind": np.array(self.kind),
                                  "info": np.array(json.dumps(self.info))}
        if self.mean is not None and self.scale is not None:
            arrays["mean"], arrays["scale"] = self.mean, self.scale
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"could not write {path}: {exc.strerror or exc}") from None
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> LinearModel:
        p = Path(path)
        if p.is_dir():
            p = p / "model.npz"
        input_file(p, "model file", " (fit one with `deepvision logreg FEATURES.h5`)")
        try:
            with open_npz(p, what="model file (model.npz)") as z:
                need = ("coef", "intercept", "classes", "label_names", "kind", "info")
                missing = [k for k in need if k not in z.files]
                if missing:
                    raise UserError(f"{p} is not a deepvision logistic-regression model (no {', '.join(missing)})")
                info = load_json(str(z["info"]), f"{p} info")
                model = cls(z["coef"], z["intercept"], z["classes"], [str(s) for s in z["label_names"]],
                            str(z["kind"]), z["mean"] if "mean" in z.files else None,
                            z["scale"] if "scale" in z.files else None, info if isinstance(info, dict) else {})
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a member damaged past its header
            raise UserError(f"cannot read {p} as a model file ({' '.join(str(exc).split())[:160]})") from None
        model.check(str(p))
        return model

    def check(self, source: str) -> None:
        """UserError naming `source` unless the arrays fit together and hold finite numbers."""
        arrays = {"coef": self.coef, "intercept": self.intercept, "mean": self.mean, "scale": self.scale}
        for name, a in arrays.items():
            if a is not None and (a.dtype.kind not in "iuf" or not np.isfinite(a).all()):
                raise UserError(f"{source}: {name} must hold finite numbers")
        if self.coef.ndim != 2 or self.intercept.shape != (self.coef.shape[0],):
            raise UserError(f"{source}: coef {self.coef.shape} and intercept {self.intercept.shape} do not fit "
                            f"together")
        if self.classes.ndim != 1 or self.classes.dtype.kind not in "iu" or len(self.classes) < 2 \
                or self.classes.min() < 0 or self.classes.max() >= len(self.label_names) \
                or len(np.unique(self.classes)) != len(self.classes):  # a repeated one leaves a label unreachable
            raise UserError(f"{source}: classes must be 2 or more distinct label indices below "
                            f"{len(self.label_names)}")
        if self.coef.shape[0] not in (1, len(self.classes)) or (self.coef.shape[0] == 1) != (len(self.classes) == 2):
            raise UserError(f"{source}: {self.coef.shape[0]} rows of coefficients for {len(self.classes)} classes")
        for name, a in (("mean", self.mean), ("scale", self.scale)):
            if a is not None and a.shape != (self.n_features,):
                raise UserError(f"{source}: {name} has shape {a.shape}, the model {self.n_features} features")
        if self.scale is not None and (self.scale == 0).any():
            raise UserError(f"{source}: scale holds 0")
        if self.kind not in ("multinomial", "ovr"):
            raise UserError(f"{source}: kind must be multinomial or ovr, got {self.kind!r}")
        bad = [n for n in self.label_names if not n.isprintable()]
        if bad:
            raise UserError(f"{source}: label name {bad[0]!r} holds control characters")
        check_class_names(self.label_names, f"{source} label_names")  # and each name given once
