"""`deepvision detection show`: the visual check of a built dataset (de-normalised boxes and labels drawn in
green, thickness 2, on sampled images of a built dataset). Difficult boxes are drawn in orange. The
drawings go into a folder of their own, with show.json naming them: new, empty or an earlier show's."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from deepvision.data.detection.index import IndexImage, load_index
from deepvision.data.preprocess import open_image
from deepvision.errors import UserError
from deepvision.fileio import atomic_path, atomic_write_text, written_whole
from deepvision.placement import enclosing, listed_in, replace_only_own

GREEN = (0, 255, 0)
ORANGE = (255, 165, 0)
MARKER = "show.json"  # written last: the drawings' folder is an earlier show's


def draw_boxes(image: IndexImage, classes: list[str]) -> Image.Image:
    img = open_image(image.file, 3)
    if img.size != (image.width, image.height):  # the index's size is the one the boxes were normalised by
        img = img.resize((image.width, image.height), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for (x1, y1, x2, y2), label, difficult in zip(image.pixel_boxes(), image.labels, image.difficult):
        colour = ORANGE if difficult else GREEN
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=colour, width=2)
        text = classes[int(label) - 1] + (" (difficult)" if difficult else "")
        ty = y1 - 12 if y1 >= 12 else y1 + 2
        draw.text((x1 + 2, ty), text, fill=colour)
    return img


def show_dataset(root: str | Path, out: str | Path | None = None, split: str | None = None, count: int = 8,
                 seed: int = 0) -> list[Path]:
    """Draw the boxes of `count` randomly sampled images of `split` (default: the first split) into PNGs."""
    if count < 1:
        raise UserError("--count must be at least 1")
    index = load_index(root, [split] if split else None)
    name = split or next(iter(index.splits), None)
    if name is None:
        raise UserError(f"{root} has no split")
    images = index.splits[name]
    if not images:
        raise UserError(f"split '{name}' of {root} has no image")
    chosen = sorted(random.Random(seed).sample(range(len(images)), min(count, len(images))))
    out = Path(out) if out else Path(root) / "show"
    source = enclosing(out, {image.file.parent for images in index.splits.values() for image in images})
    if source is not None:  # the drawings would mix with the photos (and be read as images next time)
        raise UserError(f"--out {out} is inside the image folder {source.resolve()} of the dataset; give a folder "
                        f"of its own, e.g. --out {Path(root) / 'show'}")
    # the drawings replace only an earlier show's, never a run's or a user's files of the same name
    paths = [out / f"{name}_{i:05d}_{images[i].file.stem}.png" for i in chosen]
    replace_only_own(out, paths, listed_in(out / MARKER, "images"), MARKER, '{"dataset":', "detection show")
    with written_whole(out, last=MARKER) as folder:  # all at the end: a stop leaves --out as it was
        for i, path in zip(chosen, paths):
            with atomic_path(folder / path.name, suffix=".tmp.png") as tmp:
                draw_boxes(images[i], index.classes).save(tmp, format="PNG")
        atomic_write_text(folder / MARKER, json.dumps({"dataset": str(root), "split": name,
                                                        "images": [p.name for p in paths]}, indent=1) + "\n")
    return paths
