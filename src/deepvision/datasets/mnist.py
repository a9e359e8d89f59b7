"""Fetching MNIST: the idx files from the official mirrors, checked by MD5 (`deepvision data download
mnist`); `deepvision.data.mnist` reads them."""

from __future__ import annotations

import os
from pathlib import Path

from deepvision.data.mnist import ALIASES, FILES
from deepvision.datasets.fetch import DownloadError, fetch_url, refuse_offline
from deepvision.errors import UserError
from deepvision.fileio import md5_of, not_a_folder

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
    if os.path.lexists(root) and not root.is_dir():  # a file or FIFO there: named, never "File exists"
        what = not_a_folder(root, "folder") if root.exists() else f"{root} is a link to nothing, not a folder"
        raise UserError(f"--root {what}; give a folder for the MNIST files")
    names = [stem + ".gz" for split in splits for stem in FILES[ALIASES.get(split, split)]]
    names = [n for n in names if not ((root / n).is_file() and md5_of(root / n) == MD5[n])]
    if names:  # refused before the folder is made: offline, nothing is written
        refuse_offline(f"MNIST's {', '.join(names)}", root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"could not create the folder {root}: {exc.strerror or exc}") from None
    for name in names:
        target = root / name
        reasons = []
        for mirror in MIRRORS:
            try:
                fetch_url(mirror + name, target, MD5[name])
                break
            except DownloadError as exc:  # the next mirror; a file that cannot be written is final
                reasons.append(exc.reason)
            except UserError as exc:
                if "MD5 mismatch" not in str(exc):
                    raise
                reasons.append(f"checksum mismatch from {mirror}")
        else:
            raise UserError(f"could not download {name}: {'; '.join(dict.fromkeys(reasons))}; tried "
                            f"{', '.join(MIRRORS)}")
    return root
