"""Pascal VOC 2012 (with the SBD-augmented labels), read through the same scene engine.

Layout (``root`` may be the ``VOCdevkit`` folder, the ``VOC2012`` folder, or a folder holding
``VOCdevkit``)::

    VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg
    VOCdevkit/VOC2012/SegmentationClassAug/2007_000032.png   (SBD-augmented, index PNGs)
    VOCdevkit/VOC2012/SegmentationClass/2007_000032.png      (official, palette PNGs)
    VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt   (10,582 ids; else train.txt)
    VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt         (1,449 ids)

Every image is a :class:`~geoidec.data.base.Scene` (a JPEG and its PNG label, no CRS: read in
pixel space). Label pixel values are the class indices: 0 background, 1..20 the classes in
the official order, 255 the "void" boundaries (ignored). The official ``SegmentationClass``
PNGs are palette images whose *values* are those indices (GDAL reads the raw palette index,
not the colour), so both label folders decode the same way.

Splits:

- ``train``: the train list (``train_aug.txt`` when the augmented labels are used, else
  ``train.txt``) minus the held-out ``val`` ids;
- ``val``: every 20th id of the sorted train list (5 %, deterministic, spread over the years
  of the collection), for tuning; empty when the list has fewer than 20 ids;
- ``test``: the official ``val.txt`` (1,449 images), on which the CISS literature reports.

Background is an evaluated class on VOC (``eval_background=True``), as in MiB, PLOP and IDEC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from geoidec.data.base import DatasetSpec, Scene, image_benchmark_presets
from geoidec.data.classes import ClassInfo
from geoidec.data.decoders import ValueDecoder
from geoidec.errors import DataError

#: The 20 Pascal VOC classes in the official order (label values 1..20).
CLASS_NAMES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"
SBD_URL = "http://home.bharathh.info/pubs/codes/SBD/download.html"
LAYOUT = "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass[Aug],ImageSets/Segmentation}"

#: One image in this many (sorted train ids) is held out as the ``val`` split.
HOLDOUT_EVERY = 20


def voc_color(index: int) -> tuple[int, int, int]:
    """The standard VOC palette colour of a label value (the bit-interleaved colormap of the
    VOC development kit): 0 -> (0, 0, 0), 1 -> (128, 0, 0), 15 -> (192, 128, 128), ..."""
    r = g = b = 0
    value = index
    for shift in range(7, -1, -1):
        r |= (value & 1) << shift
        g |= ((value >> 1) & 1) << shift
        b |= ((value >> 2) & 1) << shift
        value >>= 3
    return (r, g, b)


CLASSES: tuple[ClassInfo, ...] = tuple(
    ClassInfo(name, voc_color(i)) for i, name in enumerate(CLASS_NAMES, start=1)
)
BACKGROUND = ClassInfo("background", (0, 0, 0))
#: Values 1..20 are the classes, 255 is ignore, anything else (and 0) is background.
DECODER = ValueDecoder(values=tuple(float(v) for v in range(1, len(CLASS_NAMES) + 1)),
                       ignore_values=(255.0,))

#: VOC: 30 epochs per step (MiB, PLOP, IDEC).
PRESET_OVERRIDES = image_benchmark_presets(30)


def _missing(root: Path, what: str) -> DataError:
    return DataError(
        f"Pascal VOC 2012 not found under {root}: {what}; expected {LAYOUT}. Get it from "
        f"{VOC_URL} and the SBD augmented labels (SegmentationClassAug, train_aug.txt) from "
        f"{SBD_URL}"
    )


def find_voc_dir(root: Path) -> Path:
    """The ``VOC2012`` folder under ``root`` (VOCdevkit, VOC2012 or their parent)."""
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise _missing(root, "no JPEGImages/ folder")


def read_id_list(path: Path) -> list[str]:
    """Image ids of a split list: one per line, either ``2007_000032`` or the DeepLab/MiB
    form ``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``."""
    ids = []
    for line in path.read_text().splitlines():
        tokens = line.split()
        if tokens:
            ids.append(Path(tokens[0]).stem)
    return ids


def holdout(ids: Sequence[str], every: int = HOLDOUT_EVERY) -> tuple[list[str], list[str]]:
    """Split sorted ``ids`` into (train, val): every ``every``-th id (the 20th, 40th, ...) is
    held out; lists shorter than ``every`` keep every id for training."""
    ordered = sorted(set(ids))
    val = set(ordered[every - 1::every])
    return [i for i in ordered if i not in val], [i for i in ordered if i in val]


def _scenes(voc_dir: Path, ids: Sequence[str], label_dirs: Sequence[Path],
            listing: str) -> tuple[Scene, ...]:
    scenes = []
    for image_id in ids:
        image = voc_dir / "JPEGImages" / f"{image_id}.jpg"
        label = next((d / f"{image_id}.png" for d in label_dirs
                      if (d / f"{image_id}.png").is_file()), None)
        if not image.is_file() or label is None:
            missing = image if not image.is_file() else label_dirs[0] / f"{image_id}.png"
            raise _missing(voc_dir, f"{listing} lists '{image_id}' but {missing} is missing")
        scenes.append(Scene(name=image_id, image=image, label=label))
    return tuple(scenes)


def voc(root: Path, split_aug: bool = True) -> DatasetSpec:
    """Pascal VOC 2012 segmentation, with the SBD-augmented train set when present.

    Args:
        root: the ``VOCdevkit`` folder, the ``VOC2012`` folder or a folder holding
            ``VOCdevkit``.
        split_aug: use ``SegmentationClassAug`` and ``train_aug.txt`` (10,582 training
            images) when they exist; ``False`` always uses the official ``SegmentationClass``
            and ``train.txt`` (1,464 images).

    Raises:
        DataError: one line naming the expected layout and where to download it.
    """
    root = Path(root).resolve()
    voc_dir = find_voc_dir(root)
    lists = voc_dir / "ImageSets" / "Segmentation"
    aug_dir, official_dir = voc_dir / "SegmentationClassAug", voc_dir / "SegmentationClass"
    use_aug = split_aug and aug_dir.is_dir()
    label_dirs = [d for d in ((aug_dir, official_dir) if use_aug else (official_dir,))
                  if d.is_dir()]
    if not label_dirs:
        raise _missing(root, "no SegmentationClassAug/ or SegmentationClass/ folder")
    train_list = lists / ("train_aug.txt" if use_aug else "train.txt")
    if use_aug and not train_list.is_file():
        train_list = lists / "train.txt"
    test_list = lists / "val.txt"
    if not train_list.is_file() and not test_list.is_file():
        raise _missing(root, f"no train_aug.txt, train.txt or val.txt in {lists}")
    train_ids = read_id_list(train_list) if train_list.is_file() else []
    test_ids = read_id_list(test_list) if test_list.is_file() else []
    overlap = set(train_ids) & set(test_ids)
    if overlap:
        raise DataError(f"{train_list} and {test_list} share {len(overlap)} image(s) (e.g. "
                        f"'{sorted(overlap)[0]}'); the test images must not be trained on")
    train, val = holdout(train_ids)
    return DatasetSpec(
        name="voc",
        classes=CLASSES,
        background=BACKGROUND,
        decoder=DECODER,
        splits={
            "train": _scenes(voc_dir, train, label_dirs, train_list.name),
            "val": _scenes(voc_dir, val, label_dirs, train_list.name),
            "test": _scenes(voc_dir, test_ids, label_dirs, test_list.name),
        },
        eval_background=True,
        band_names=("red", "green", "blue"),
        rgb_bands=(0, 1, 2),
        meta={"root": str(root), "labels": label_dirs[0].name,
              "train_list": train_list.name if train_list.is_file() else None,
              "crs": None},
        preset_overrides=PRESET_OVERRIDES,
    )


__all__ = ["CLASSES", "CLASS_NAMES", "DECODER", "holdout", "read_id_list", "voc", "voc_color"]
