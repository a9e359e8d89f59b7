"""The 1,000 ImageNet (ILSVRC-2012) classes as the reference's `synset.txt`: line i is
`"<wnid> <comma-separated names>"` for output i (`n07920052 espresso`).

The file ships as package data. Its WordNet ids and lemma lists are those of the standard ILSVRC-2012
class list in the order every ImageNet classifier uses (sorted wnids), as timm ships them
(`timm/data/_info/imagenet_synsets.txt` and `imagenet_synset_to_lemma.txt`, Apache-2.0); the first name
of each line is torchvision's category name for that output except where torchvision disambiguates two
duplicates (134 "crane bird", 639 "maillot tank suit"), which the tests check.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Synset:
    wnid: str
    names: str  # comma-separated lemmas, most common first

    @property
    def name(self) -> str:
        """The first (most common) name."""
        return self.names.split(",")[0].strip()

    def __str__(self) -> str:
        return f"{self.wnid} {self.names}"


@functools.cache
def imagenet_synsets() -> tuple[Synset, ...]:
    """The 1,000 ImageNet classes in output order."""
    text = resources.files(__package__).joinpath("synset.txt").read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        wnid, _, names = line.partition(" ")
        out.append(Synset(wnid, names.strip()))
    return tuple(out)


def imagenet_class_names() -> list[str]:
    """Class labels in the reference format, `"<wnid> <names>"`, one per output."""
    return [str(s) for s in imagenet_synsets()]
