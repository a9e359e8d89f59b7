"""What a model answers, checked before anyone reads it as an answer: logits holding NaN or infinity
(weights that overflow float32 on this input, or a diverged model) are a one-line error, never "nan%"."""

from __future__ import annotations

import torch

from deepvision.errors import UserError

NON_FINITE = ("the model's output holds NaN or infinite values (its weights overflow float32 on this input, "
              "or its training diverged); check the weights or train the model again")


def check_finite_output(output: torch.Tensor, what: str = "output") -> torch.Tensor:
    """`output` if every value is finite; UserError otherwise (`what`: "output", "features")."""
    if not bool(torch.isfinite(output).all()):
        raise UserError(NON_FINITE if what == "output" else NON_FINITE.replace("output", what, 1))
    return output


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes (dim 1, as float32) of finite logits; UserError for NaN or infinity."""
    return torch.softmax(check_finite_output(logits).float(), dim=1)
