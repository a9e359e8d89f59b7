"""Initial weights for a model (`model.pretrained`): a file, or torchvision's published weights.

`pretrained: PATH` loads a torchvision-format state dict or a deepvision checkpoint (always with
`weights_only=True`). Differences are allowed only where fine-tuning expects them:

- the classifier head (the last Linear/Conv layer, plus auxiliary Linear heads of the same width)
  may be missing or have another shape: it keeps its fresh initialisation;
- a first convolution trained on RGB is adapted to the model's channel count (summed for grayscale,
  else repeated and scaled by 3/C);
- whole extra top-level modules in the file (e.g. inception's `AuxLogits`) are ignored.

Anything else (missing layers, other shapes, extra units inside the network) means the weights come
from another architecture and raises a UserError that says what differs.

`pretrained: torchvision` (or `torchvision:TAG`, or the bare `TAG` as `--weights` takes it) on a `tv:` model
loads torchvision's weights from torch's hub cache, downloading them when missing and online (see
`torchvision_models.fetch_weights_model`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deepvision.errors import UserError
from deepvision.models.weights import check_tensor_kinds, load_state_dict_file
from deepvision.safeload import refuse_name_and_file


def head_modules(model: nn.Module) -> list[str]:
    """Names of the classifier head: the last Linear/Conv2d, and Linear layers with the same output width."""
    weighted = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not weighted:
        return []
    last_name, last = weighted[-1]
    width = last.out_features if isinstance(last, nn.Linear) else last.out_channels
    return [n for n, m in weighted if n == last_name or (isinstance(m, nn.Linear) and m.out_features == width)]


def torchvision_tag(model_name: str, pretrained: str | None) -> str | None:
    """The torchvision weights tag requested by `pretrained: torchvision[:TAG]` (or, on a tv: model, a bare
    tag such as `IMAGENET1K_V1`, as `--weights` takes it), else None (a weights file). A bare keyword or tag
    that is also a file here is refused (`./TAG` names the file); a folder of that name is no weights file."""
    if not pretrained:
        return None
    source = str(pretrained)
    keyword = source == "torchvision" or source.startswith("torchvision:")
    tag = model_name.startswith("tv:") and not keyword and is_torchvision_tag(model_name, source)
    if not keyword and not tag:
        return None
    if not source.startswith("torchvision:"):  # the prefixed spelling names the weights alone
        refuse_name_and_file(source, "a torchvision weights tag" if tag else "the keyword for torchvision's weights",
                             f"or torchvision:{'DEFAULT' if keyword else source} for the weights", folders=False)
    if tag:
        return source
    if not model_name.startswith("tv:"):
        raise UserError(f"pretrained: {source} needs a torchvision model (tv:NAME), not '{model_name}'; "
                        f"give a weights file instead")
    return source.partition(":")[2] or "DEFAULT"


def is_torchvision_tag(model_name: str, weights: str) -> bool:
    """Whether `weights` names published weights of the tv: model `model_name` (DEFAULT, a tag, Enum.TAG,
    `torchvision[:TAG]`)."""
    from deepvision.models.torchvision_models import is_weights_tag

    return model_name.startswith("tv:") and is_weights_tag(model_name.removeprefix("tv:"), weights)


def _first_conv_key(model: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"{name}.weight"
    return None


def _clip(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def load_pretrained(model: nn.Module, source: str | Path | dict[str, torch.Tensor], model_name: str = "model"
                    ) -> dict[str, list[str]]:
    """Load initial weights into `model` (see the module docstring for what may differ).

    Returns {"missing", "unexpected", "mismatched", "adapted"}: head tensors left at their
    initialisation (absent or of another shape), ignored extra tensors, head tensors of another shape,
    and tensors adapted to the channel count.
    """
    if isinstance(source, dict):
        state, label = source, "the weights"
    else:
        state, label = load_state_dict_file(source), str(source)
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    own = model.state_dict()
    check_tensor_kinds(own, state, label)
    adapted: list[str] = []
    first = _first_conv_key(model)
    if first and first in state and first in own:
        src, dst = state[first], own[first]
        if src.dim() == 4 and src.shape[1] == 3 and dst.shape[1] != 3 and src.shape[0] == dst.shape[0] \
                and src.shape[2:] == dst.shape[2:]:
            from deepvision.models.torchvision_models import adapt_conv_weight

            state[first] = adapt_conv_weight(src.float(), dst.shape[1]).to(src.dtype)
            adapted.append(first)

    heads = head_modules(model)

    def in_head(key: str) -> bool:
        return any(key.startswith(f"{h}.") for h in heads)

    top_level = {n.split(".")[0] for n in own}
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k in loadable for k, v in own.items() if v.is_floating_point()):
        raise UserError(f"{label} share no tensor with model '{model_name}' (names or shapes all differ); "
                        f"they come from another architecture")
    bad_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched if not in_head(k)]
    bad_missing = [k for k in missing if not in_head(k)]
    bad_extra = [k for k in unexpected if k.split(".")[0] in top_level]
    if bad_shape or bad_missing or bad_extra:
        parts = []
        if bad_missing:
            parts.append(f"{len(bad_missing)} tensors of the model are missing ({_clip(bad_missing)})")
        if bad_shape:
            parts.append(f"{len(bad_shape)} differ in shape ({_clip(bad_shape, 2)})")
        if bad_extra:
            parts.append(f"{len(bad_extra)} extra tensors ({_clip(bad_extra)})")
        raise UserError(f"{label} do not fit model '{model_name}': {'; '.join(parts)}; they come from another "
                        f"architecture or configuration (only the classifier head may differ)")
    model.load_state_dict(loadable, strict=False)
    return {"missing": missing + mismatched, "unexpected": unexpected, "mismatched": mismatched, "adapted": adapted}
