#!/usr/bin/env python3
"""A tiny fake Pascal VOC 2012 (+ SBD-augmented labels) in the real folder layout.

Tests build it on the fly in ``tmp_path`` (no binary data is committed)::

    root = make_fake_voc(tmp_path)    # tmp_path / "VOCdevkit"

Running ``python tests/data/voc/data.py [OUT]`` writes it next to this script (or under
``OUT``); do not commit the result.

Layout written (``size`` x ``size`` px JPEGs, PNG labels)::

    VOCdevkit/VOC2012/JPEGImages/{id}.jpg                   train and val images
    VOCdevkit/VOC2012/SegmentationClassAug/{id}.png         index PNGs (mode L), all images
    VOCdevkit/VOC2012/SegmentationClass/{id}.png            palette PNGs (mode P), val images
                                                            and the train.txt images
    VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt  every train id, in the MiB form
                                                            "/JPEGImages/x.jpg /Segm...Aug/x.png"
    VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt      the first half of the train ids
    VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt        every val id

Each image holds background (0) and a hand-picked set of classes (:func:`image_classes`):
one box per class side by side, each box outlined by a 1 px "void" line (255) like VOC's
object boundaries. Train image ``i`` (id ``2008_00000{i+1}``) holds
``TRAIN_PATTERN[i % 6]``:

====  ============  ===========================  ===========================
 i    ids           classes                       on "15-5" (step 0 = 1..15)
====  ============  ===========================  ===========================
 0    2008_000001   1 aeroplane, 2 bicycle        step 0 only
 1    2008_000002   3 bird, 16 pottedplant        both steps (future class for step 0)
 2    2008_000003   15 person                     step 0 only
 3    2008_000004   17 sheep                      step 1 only
 4    2008_000005   15 person, 20 tvmonitor       both steps (future class for step 0)
 5    2008_000006   5 bottle, 9 chair             step 0 only
====  ============  ===========================  ===========================

Val image ``j`` (id ``2007_00000{j+1}``, the ``test`` split) holds ``VAL_PATTERN[j % 3]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "TRAIN_PATTERN",
    "VAL_PATTERN",
    "expected_label",
    "image_classes",
    "make_fake_voc",
    "train_ids",
    "val_ids",
    "voc_palette",
]

IGNORE = 255
TRAIN_PATTERN: tuple[tuple[int, ...], ...] = ((1, 2), (3, 16), (15,), (17,), (15, 20), (5, 9))
VAL_PATTERN: tuple[tuple[int, ...], ...] = ((1, 16), (15, 18), (7,))


def train_ids(n_train: int = 6) -> list[str]:
    """Ids of the fake train images, sorted."""
    return [f"2008_{i + 1:06d}" for i in range(n_train)]


def val_ids(n_val: int = 3) -> list[str]:
    """Ids of the fake official-val images (the ``test`` split), sorted."""
    return [f"2007_{j + 1:06d}" for j in range(n_val)]


def image_classes(image_id: str) -> tuple[int, ...]:
    """The classes (label values 1..20) of a fake image, background and 255 excluded."""
    year, number = image_id.split("_")
    pattern = TRAIN_PATTERN if year == "2008" else VAL_PATTERN
    return pattern[(int(number) - 1) % len(pattern)]


def expected_label(image_id: str, size: int = 48) -> np.ndarray:
    """The label array (size, size) uint8 of a fake image: 0 background, one box per class
    (side by side), each outlined by 255."""
    classes = image_classes(image_id)
    label = np.zeros((size, size), dtype=np.uint8)
    margin = size // 8
    width = (size - 2 * margin) // len(classes)
    r0, r1 = margin, size - margin
    for j, value in enumerate(classes):
        c0 = margin + j * width
        c1 = c0 + width - 2
        label[r0 - 1:r1 + 1, c0 - 1:c1 + 1] = IGNORE
        label[r0:r1, c0:c1] = value
    return label


def voc_palette() -> list[int]:
    """The VOC development kit's 256-colour palette, flat ``[r0, g0, b0, r1, ...]``."""
    flat = []
    for index in range(256):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        flat += [r, g, b]
    return flat


def _image(label: np.ndarray, seed: int) -> np.ndarray:
    """RGB uint8 image: each class painted in its palette colour, plus noise."""
    palette = np.array(voc_palette(), dtype=np.int16).reshape(256, 3)
    base = palette[label].copy()
    base[label == 0] = (110, 120, 100)
    base[label == IGNORE] = (90, 90, 90)
    noise = np.random.default_rng(seed).integers(-12, 13, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_fake_voc(root: Path, n_train: int = 6, n_val: int = 3, size: int = 48) -> Path:
    """Write the fake VOCdevkit under ``root`` and return ``root / "VOCdevkit"``."""
    devkit = Path(root) / "VOCdevkit"
    voc = devkit / "VOC2012"
    folders = {name: voc / name for name in ("JPEGImages", "SegmentationClassAug",
                                             "SegmentationClass", "ImageSets/Segmentation")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    train, val = train_ids(n_train), val_ids(n_val)
    official = set(train[: max(1, n_train // 2)]) | set(val)
    for seed, image_id in enumerate(train + val):
        label = expected_label(image_id, size)
        Image.fromarray(_image(label, seed)).save(
            folders["JPEGImages"] / f"{image_id}.jpg", quality=95)
        Image.fromarray(label).save(folders["SegmentationClassAug"] / f"{image_id}.png")
        if image_id in official:
            paletted = Image.frombytes("P", (size, size), label.tobytes())
            paletted.putpalette(voc_palette())
            paletted.save(folders["SegmentationClass"] / f"{image_id}.png")
    lists = folders["ImageSets/Segmentation"]
    (lists / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in train))
    (lists / "train.txt").write_text("".join(f"{i}\n" for i in train if i in official))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val))
    return devkit


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    print(f"wrote {make_fake_voc(target)} (test data: do not commit)")
