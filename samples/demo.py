"""`make demo`: what geoidec is for, on CPU in a few minutes.

1. A synthetic ISPRS-Potsdam-like sample, described as the user's own GeoTIFFs (label rasters
   holding the codes 1-5 and a dataset YAML), as a GIS team would describe its data.
2. Step 0 learns impervious surfaces, building and low vegetation; step 1 learns tree from
   labels of tree only, once with fine-tuning (the lower bound: it forgets) and once with
   IDEC from the same step 0; the side-by-side table.
3. Later, with the old training labels gone: `--from` teaches the IDEC model a new class,
   car, from a dataset YAML that labels cars only, and scores every class on the old test
   labels (`--eval-on`).
4. A test tile mapped by the final model (class map in the user's codes, QGIS style), with
   a change map and table against step 0.

Runs the real command line, step by step, and prints where every output is.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import yaml

SIZE, RESOLUTION = 384, 0.1
#: Output codes of the demo's classes (the label rasters' values).
CODES = {"impervious_surfaces": 1, "building": 2, "low_vegetation": 3, "tree": 4, "car": 5}


def geoidec(*args: str) -> None:
    cmd = [sys.executable, "-m", "geoidec.cli.main", *args]
    print("$ geoidec " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def coded_dataset(sample: Path, out: Path) -> dict[str, Path]:
    """The sample's labels as a GIS team keeps them, beside the sample's RGB images: the
    codes of :data:`CODES` (0 unlabelled clutter, 255 unlabelled), in three label sets with
    a dataset YAML each: last year's campaign (no cars mapped: car pixels are 0), this
    year's car campaign (cars only) and all classes (for scoring)."""
    from geoidec.data.isprs import DECODER, potsdam

    spec = potsdam(sample)
    names = [c.name for c in spec.classes]
    full = np.zeros(256, dtype=np.uint8)
    full[255] = 255
    for index, name in enumerate(names, start=1):
        full[index] = CODES[name]
    campaigns = {"landcover": np.where(full == CODES["car"], 0, full).astype(np.uint8),
                 "cars": np.where((full == CODES["car"]) | (full == 255), full, 0)
                 .astype(np.uint8),
                 "all-classes": full}
    files = {c: {"images": {}, "labels": {}} for c in campaigns}
    for split in ("train", "test"):
        for scene in spec.scenes(split):
            assert scene.label is not None
            with rasterio.open(scene.label) as src:
                profile = src.profile | {"count": 1, "dtype": "uint8", "nodata": 255}
                index = DECODER(src.read())
            for campaign, lut in campaigns.items():
                label = out / campaign / f"{scene.name}.tif"
                label.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(label, "w", **profile) as dst:
                    dst.write(lut[index][None])
                files[campaign]["images"].setdefault(split, []).append(
                    str(scene.image.resolve()))
                files[campaign]["labels"].setdefault(split, []).append(str(label.resolve()))
    colours = {c.name: "#{:02x}{:02x}{:02x}".format(*c.color) for c in spec.classes}

    def write(campaign: str, classes: list[str]) -> Path:
        doc = {"name": campaign, **files[campaign], "ignore_values": [255],
               "classes": [{"name": c, "value": CODES[c], "color": colours[c]}
                           for c in classes]}
        path = out / f"{campaign}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return {"landcover": write("landcover", names[:4]), "cars": write("cars", ["car"]),
            "all": write("all-classes", names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo"))
    args = parser.parse_args()
    out: Path = args.out
    sample = out / "potsdam_sample"
    runs = out / "runs"
    prediction = out / "prediction.tif"
    started = time.perf_counter()
    if not (sample / "5_Labels_all").is_dir():
        geoidec("samples", "isprs", "--out", str(sample), "--size", str(SIZE),
                "--resolution", str(RESOLUTION))
    data = coded_dataset(sample, out / "landcover")
    common = ["--preset", "cpu", "--overwrite", "--quiet"]
    finetune, idec, cars = runs / "finetune", runs / "idec", runs / "idec-cars"
    geoidec("train", str(data["landcover"]), "--steps", "3-1", "--method", "finetune",
            "--out", str(finetune), *common)
    geoidec("train", str(data["landcover"]), "--steps", "3-1", "--method", "idec",
            "--step0-from", str(finetune), "--out", str(idec), *common)
    geoidec("compare", str(finetune), str(idec))
    geoidec("train", str(data["cars"]), "--from", str(idec), "--eval-on", str(data["all"]),
            "--out", str(cars), *common)
    scene = sample / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif"
    geoidec("predict", str(scene), "--model", str(cars), "--change-from",
            str(finetune / "checkpoints" / "step_0.pt"), "--out", str(prediction),
            "--overwrite", "--quiet")
    minutes = (time.perf_counter() - started) / 60
    print(f"\ndemo finished in {minutes:.1f} min. Outputs:")
    print(f"  sample data      {sample}/  (Potsdam layout) and {out / 'landcover'}/ (the same "
          "images with coded labels and dataset YAMLs)")
    print(f"  runs             {finetune}/, {idec}/ (step 0 shared), {cars}/ (car added with "
          "--from): report.md, model_card.md, checkpoints/")
    print(f"  class map        {prediction}  (codes 1-5; + {prediction.with_suffix('.qml').name}"
          ": drag both into QGIS)")
    print(f"  change map       {prediction.with_name(prediction.stem + '_change.tif')}  "
          "(against step 0)")


if __name__ == "__main__":
    main()
