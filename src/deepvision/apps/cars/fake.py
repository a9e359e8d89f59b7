"""A miniature Stanford-Cars-shaped tree for tests: `cars_annos.mat` with the real file's layout
(`annotations` 1 x N struct: relative_im_path, bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, test;
`class_names` 1 x K cell) and `car_ims/000001.jpg ...` JPEGs of varied sizes. The class names are real
Stanford Cars names, chosen so that dropping years and body types merges some of them (9 names, 7
make:model labels). Each class draws a car-like shape in its own colour, so small networks can learn it."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from deepvision.errors import UserError
from deepvision.placement import new_output_folder
from deepvision.safeload import MAX_FAKE_IMAGES, MAX_FAKE_SIDE, check_range

FAKE_CLASS_NAMES = (
    "AM General Hummer SUV 2000",
    "Aston Martin Virage Coupe 2012",
    "Audi S4 Sedan 2007",
    "Audi S4 Sedan 2012",
    "Chevrolet Silverado 1500 Extended Cab 2012",
    "Chevrolet Silverado 1500 Regular Cab 2012",
    "Land Rover Range Rover SUV 2012",
    "Tesla Model S Sedan 2012",
    "Dodge Durango SUV 2007",
)


def _car_image(rng: np.random.Generator, k: int, classes: int, width: int, height: int) -> Image.Image:
    sky = tuple(int(v) for v in rng.integers(150, 230, 3))
    img = Image.new("RGB", (width, height), sky)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, int(height * 0.7), width, height), fill=(90, 90, 90))  # road
    r, g, b = colorsys.hsv_to_rgb(k / classes, 0.9, 0.9)
    body = (int(r * 255), int(g * 255), int(b * 255))
    x0, x1 = int(width * rng.uniform(0.08, 0.2)), int(width * rng.uniform(0.8, 0.92))
    y1 = int(height * 0.72)
    tall = 0.25 + 0.05 * (k % 4)  # body height differs by class
    y0 = int(y1 - height * tall)
    draw.rectangle((x0, y0, x1, y1), fill=body)
    cab = (x0 + (x1 - x0) * (0.2 + 0.1 * (k % 3)), y0 - height * 0.12, x1 - (x1 - x0) * 0.25, y0)
    draw.rectangle(cab, fill=tuple(max(0, c - 60) for c in body))
    wheel = max(3, int(height * 0.08))
    for cx in (x0 + (x1 - x0) * 0.2, x1 - (x1 - x0) * 0.2):
        draw.ellipse((cx - wheel, y1 - wheel, cx + wheel, y1 + wheel), fill=(20, 20, 20))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


# MAX_FAKE_SIDE (2,048): the bounding boxes are stored as uint16; each side costs memory squared


def make_fake_cars(out: str | Path, per_class: int = 12, seed: int = 0, min_side: int = 80,
                   max_side: int = 200) -> Path:
    """Write the fake tree at `out` (cars_annos.mat + car_ims/); returns the root."""
    import scipy.io

    check_range("--per-class", per_class, 1, MAX_FAKE_IMAGES // len(FAKE_CLASS_NAMES))
    if not 32 <= min_side <= max_side <= MAX_FAKE_SIDE:
        raise UserError(f"min_side must be at least 32 and at most max_side, and max_side at most "
                        f"{MAX_FAKE_SIDE}; got {min_side} and {max_side}")
    root = Path(out)
    with new_output_folder(root):  # a stopped run leaves nothing its next run would refuse
        images = root / "car_ims"
        images.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        classes = len(FAKE_CLASS_NAMES)
        labels = rng.permutation(np.repeat(np.arange(classes), per_class))
        fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
        ann = np.zeros((1, len(labels)), dtype=[(f, "O") for f in fields])
        for i, k in enumerate(labels.tolist()):
            w, h = (int(v) for v in rng.integers(min_side, max_side + 1, 2))
            h = max(32, int(h * 0.75))
            name = f"car_ims/{i + 1:06d}.jpg"
            _car_image(rng, k, classes, w, h).save(root / name, "JPEG", quality=90)
            ann[0, i] = (name, np.uint16(1), np.uint16(1), np.uint16(w), np.uint16(h), np.uint8(k + 1),
                         np.uint8(int(rng.random() < 0.5)))
        names = np.empty((1, classes), dtype=object)
        names[0, :] = list(FAKE_CLASS_NAMES)
        scipy.io.savemat(root / "cars_annos.mat", {"annotations": ann, "class_names": names})
        return root
