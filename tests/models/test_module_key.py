"""Keys of imported graph layers: valid, unique, and never a ModuleDict attribute."""

from __future__ import annotations

from torch import nn

from deepvision.models.layers import module_key


def test_keys_are_valid_unique_and_never_shadow_moduledict_attributes():
    taken: set[str] = set()
    keys = [module_key(n, taken, "layer", "k_") for n in ("conv/1", "conv_1", "items", "3x3", "", "update")]
    assert keys == ["conv_1", "conv_1_2", "k_items", "k_3x3", "layer", "k_update"]
    layers = nn.ModuleDict({k: nn.Identity() for k in keys})  # every key is accepted as a module name
    assert list(layers) == keys
