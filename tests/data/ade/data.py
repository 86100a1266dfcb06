#!/usr/bin/env python3
"""A tiny fake ADE20K SceneParsing release (ADEChallengeData2016) in the real folder layout.

Tests build it on the fly in ``tmp_path`` (no binary data is committed)::

    root = make_fake_ade(tmp_path)    # tmp_path / "ADEChallengeData2016"

Running ``python tests/data/ade/data.py [OUT]`` writes it next to this script (or under
``OUT``); do not commit the result.

Layout written (``size`` x ``size`` px JPEGs, single-band PNG annotations, values 0..150)::

    ADEChallengeData2016/images/training/ADE_train_0000000{i+1}.jpg
    ADEChallengeData2016/annotations/training/ADE_train_0000000{i+1}.png
    ADEChallengeData2016/images/validation/ADE_val_0000000{j+1}.jpg
    ADEChallengeData2016/annotations/validation/ADE_val_0000000{j+1}.png

Each annotation holds 0 ("unlabelled") around one box per class of a hand-picked set
(:func:`image_classes`), boxes side by side and separated by unlabelled gaps. Training image
``i`` holds ``TRAIN_PATTERN[i % 6]``; on "100-50" (step 0 = classes 1..100):

==  ====================  ==========================================
 i  classes               step
==  ====================  ==========================================
 0  1 wall, 2 building    step 0 only
 1  50 fireplace, 101     both steps (101 poster is future for step 0)
 2  100 buffet            step 0 only
 3  120 ball, 150 flag    step 1 only
 4  3 sky, 7 road, 13     step 0 only (13 person)
 5  149 clock             step 1 only
==  ====================  ==========================================

Validation image ``j`` (the ``test`` split) holds ``VAL_PATTERN[j % 3]``.
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
    "make_fake_ade",
    "train_ids",
    "val_ids",
]

TRAIN_PATTERN: tuple[tuple[int, ...], ...] = (
    (1, 2), (50, 101), (100,), (120, 150), (3, 7, 13), (149,),
)
VAL_PATTERN: tuple[tuple[int, ...], ...] = ((1, 150), (13, 101), (3,))


def train_ids(n_train: int = 6) -> list[str]:
    """Ids of the fake training images, sorted."""
    return [f"ADE_train_{i + 1:08d}" for i in range(n_train)]


def val_ids(n_val: int = 3) -> list[str]:
    """Ids of the fake validation images (the ``test`` split), sorted."""
    return [f"ADE_val_{j + 1:08d}" for j in range(n_val)]


def image_classes(image_id: str) -> tuple[int, ...]:
    """The classes (label values 1..150) of a fake image, unlabelled (0) excluded."""
    kind, number = image_id.split("_")[1:]
    pattern = TRAIN_PATTERN if kind == "train" else VAL_PATTERN
    return pattern[(int(number) - 1) % len(pattern)]


def expected_label(image_id: str, size: int = 48) -> np.ndarray:
    """The annotation (size, size) uint8 of a fake image: 0 unlabelled, one box per class."""
    classes = image_classes(image_id)
    label = np.zeros((size, size), dtype=np.uint8)
    margin = size // 8
    width = (size - 2 * margin) // len(classes)
    for j, value in enumerate(classes):
        c0 = margin + j * width
        label[margin:size - margin, c0:c0 + width - 2] = value
    return label


def _image(label: np.ndarray, seed: int) -> np.ndarray:
    """RGB uint8 image: a class-dependent colour per box, plus noise."""
    values = label.astype(np.int16)
    base = np.stack([(values * 37) % 256, (values * 91) % 256, (values * 53 + 40) % 256], -1)
    base[label == 0] = (100, 100, 100)
    noise = np.random.default_rng(seed).integers(-12, 13, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_fake_ade(root: Path, n_train: int = 6, n_val: int = 3, size: int = 48) -> Path:
    """Write the fake release under ``root`` and return ``root / "ADEChallengeData2016"``."""
    ade = Path(root) / "ADEChallengeData2016"
    seed = 0
    for folder, ids in (("training", train_ids(n_train)), ("validation", val_ids(n_val))):
        images, annotations = ade / "images" / folder, ade / "annotations" / folder
        images.mkdir(parents=True, exist_ok=True)
        annotations.mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            label = expected_label(image_id, size)
            Image.fromarray(_image(label, seed)).save(images / f"{image_id}.jpg", quality=95)
            Image.fromarray(label).save(annotations / f"{image_id}.png")
            seed += 1
    return ade


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    print(f"wrote {make_fake_ade(target)} (test data: do not commit)")
