"""The real-imagery benchmark: Sentinel-2 + OpenStreetMap land use (``../shared/data/s2_osm``).

    python benchmarks/s2_osm.py split --out benchmarks/out/s2_osm_val
    python benchmarks/s2_osm.py split --fold 2 --out benchmarks/out/s2_osm_val2   # 2nd cut
    python benchmarks/s2_osm.py forest --dataset ../shared/data/s2_osm/dataset.yaml

``split`` writes the *validation* dataset used to choose settings: the west (training) half
cut into a training part (columns 0-575) and a validation part (the eastern 192 columns, which
hold every class), with a dataset YAML listing both as ``train`` and ``val``. The east half
(the test split) is not in it, so nothing tuned with it can see test data.

``forest`` is the classic GIS baseline: a per-pixel random forest on the six bands (200 trees,
``min_samples_leaf=2``, seed 0, 60,000 labelled training pixels drawn at random, all classes
at once), scored on the labelled pixels of the evaluation split like ``geoidec evaluate``.
Needs scikit-learn (``pip install -e '.[benchmark]'``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "s2_osm"
VAL_COLUMNS = 192  # the eastern 192 of 768 columns of the west half


def _crop(src_path: Path, dst_path: Path, window: Window) -> None:
    with rasterio.open(src_path) as src:
        profile = src.profile.copy()
        t = src.transform
        col, row = int(window.col_off), int(window.row_off)
        profile.update(width=int(window.width), height=int(window.height),
                       transform=Affine(t.a, t.b, t.c + col * t.a + row * t.b,
                                        t.d, t.e, t.f + col * t.d + row * t.e))
        data = src.read(window=window)
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data)


def split(source: Path, out: Path, fold: int = 3) -> Path:
    """Write the train/val cut of the west half and its dataset YAML; returns the YAML.

    ``fold`` K: the validation part is columns [192 K, 192 (K + 1)) of the west half and the
    training part the columns on either side (one or two scenes). The default, 3, is the
    eastern 192 columns, the cut every validation table uses unless it names a fold; fold 2
    (columns 384-575) also holds every class, folds 0 and 1 lack wetland (199 and 0 pixels).
    """
    import yaml

    doc = yaml.safe_load((source / "dataset.yaml").read_text())
    out.mkdir(parents=True, exist_ok=True)
    with rasterio.open(source / doc["images"]["train"][0]) as src:
        width, height = src.width, src.height
    start, stop = fold * VAL_COLUMNS, min((fold + 1) * VAL_COLUMNS, width)
    if not 0 <= start < width:
        raise SystemExit(f"--fold must be 0-{width // VAL_COLUMNS - 1}")
    train = [(a, b) for a, b in [(0, start), (stop, width)] if b > a]
    names = ["train"] if len(train) == 1 else ["train_left", "train_right"]
    parts = {"train": [(n, Window(a, 0, b - a, height))
                       for n, (a, b) in zip(names, train, strict=True)],
             "val": [("val", Window(start, 0, stop - start, height))]}
    for pieces in parts.values():
        for name, window in pieces:
            _crop(source / doc["images"]["train"][0], out / f"west_{name}_image.tif", window)
            _crop(source / doc["labels"]["train"][0], out / f"west_{name}_labels.tif", window)
    doc["name"] = f"{doc.get('name', 's2_osm')}-val" + ("" if fold == 3 else f"{fold}")
    doc["images"] = {p: [f"west_{n}_image.tif" for n, _ in pieces] for p, pieces in parts.items()}
    doc["labels"] = {p: [f"west_{n}_labels.tif" for n, _ in pieces] for p, pieces in parts.items()}
    path = out / "dataset.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _pixels(image: Path, label: Path, values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Bands (N, C) and class index (N,) of the labelled pixels (index 1..K in YAML order)."""
    with rasterio.open(image) as src:
        x = src.read().reshape(src.count, -1).T.astype(np.float32)
    with rasterio.open(label) as src:
        raw = src.read(1).ravel()
    y = np.zeros(raw.shape, dtype=np.int64)
    for index, value in enumerate(values, start=1):
        y[raw == value] = index
    keep = y > 0
    return x[keep], y[keep]


def forest(dataset: Path, split_name: str, seed: int, samples: int) -> dict:
    """Per-class IoU and mIoU of the random-forest baseline on ``split_name``."""
    import yaml
    from sklearn.ensemble import RandomForestClassifier

    doc = yaml.safe_load(dataset.read_text())
    root = dataset.parent
    names = [c["name"] for c in doc["classes"]]
    values = [float(c["value"]) for c in doc["classes"]]
    train = [_pixels(root / i, root / lab, values)
             for i, lab in zip(doc["images"]["train"], doc["labels"]["train"], strict=True)]
    x = np.concatenate([t[0] for t in train])
    y = np.concatenate([t[1] for t in train])
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(y), size=min(samples, len(y)), replace=False)
    model = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, random_state=seed,
                                   n_jobs=-1).fit(x[pick], y[pick])
    k = len(names)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    for i, lab in zip(doc["images"][split_name], doc["labels"][split_name], strict=True):
        xe, ye = _pixels(root / i, root / lab, values)
        pred = model.predict(xe)
        np.add.at(matrix, (ye, pred), 1)
    inter = np.diag(matrix)[1:]
    union = matrix[1:].sum(1) + matrix[:, 1:].sum(0) - inter
    iou = inter / np.maximum(union, 1)
    return {"miou": float(iou.mean()), "per_class_iou": dict(zip(names, iou.tolist(),
                                                                     strict=True))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_split = sub.add_parser("split", help="write the validation cut of the west half")
    p_split.add_argument("--source", type=Path, default=SHARED)
    p_split.add_argument("--out", type=Path, default=Path("benchmarks/out/s2_osm_val"))
    p_split.add_argument("--fold", type=int, default=3,
                         help="validation columns [192 K, 192 (K+1)) of the west half "
                         "(default 3: the eastern 192)")
    p_rf = sub.add_parser("forest", help="per-pixel random forest baseline")
    p_rf.add_argument("--dataset", type=Path, default=SHARED / "dataset.yaml")
    p_rf.add_argument("--split", default="test")
    p_rf.add_argument("--seed", type=int, default=0)
    p_rf.add_argument("--samples", type=int, default=60_000)
    p_rf.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "split":
        print(f"wrote {split(args.source, args.out, args.fold)}")
        return
    result = forest(args.dataset, args.split, args.seed, args.samples)
    line = ", ".join(f"{n} {100 * v:.1f}" for n, v in result["per_class_iou"].items())
    print(f"random forest on {args.split}: mIoU {100 * result['miou']:.1f} ({line})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
