"""Fetching MNIST: the idx files from the official mirrors, checked by MD5 (`deepvision data download
mnist`); `deepvision.data.mnist` reads them."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

from deepvision.data.mnist import ALIASES, FILES
from deepvision.errors import UserError
from deepvision.fileio import atomic_path, md5_of

MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def download(root: str | Path, splits: tuple[str, ...] = ("train", "test")) -> Path:
    """Fetch the MNIST idx files from the official mirrors into `root` (checked by MD5)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split in splits:
        for stem in FILES[ALIASES.get(split, split)]:
            name = stem + ".gz"
            target = root / name
            if target.is_file() and md5_of(target) == MD5[name]:
                continue
            last_error: Exception | None = None
            for mirror in MIRRORS:
                try:
                    with atomic_path(target, ".partial") as tmp:
                        with urllib.request.urlopen(mirror + name, timeout=60) as response, open(tmp, "wb") as f:
                            shutil.copyfileobj(response, f)
                        if md5_of(tmp) != MD5[name]:
                            raise UserError(f"checksum mismatch for {name} from {mirror}")
                    break
                except (OSError, UserError) as exc:  # the next mirror
                    last_error = exc
            else:
                raise UserError(f"could not download {name}: {last_error}")
    return root
