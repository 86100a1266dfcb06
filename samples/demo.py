"""`make demo`: synthetic ISPRS sample -> incremental 4-1 training on CPU -> whole-scene map.

Runs the real command line, step by step, and prints where every output is.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

SIZE, RESOLUTION = 384, 0.1


def geoidec(*args: str) -> None:
    cmd = [sys.executable, "-m", "geoidec.cli.main", *args]
    print("$ geoidec " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo"))
    args = parser.parse_args()
    out: Path = args.out
    sample, run, prediction = out / "potsdam_sample", out / "run-4-1", out / "prediction.tif"
    started = time.perf_counter()
    if not (sample / "5_Labels_all").is_dir():
        geoidec("samples", "isprs", "--out", str(sample), "--size", str(SIZE),
                "--resolution", str(RESOLUTION))
    geoidec("train", "isprs", "--root", str(sample), "--steps", "4-1", "--preset", "cpu",
            "--out", str(run), "--overwrite")
    scene = sample / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif"
    geoidec("predict", str(scene), "--model", str(run), "--out", str(prediction), "--overwrite")
    minutes = (time.perf_counter() - started) / 60
    print(f"\ndemo finished in {minutes:.1f} min. Outputs:")
    print(f"  sample data      {sample}/  (Potsdam layout: 2_Ortho_RGB, 5_Labels_all, ...)")
    print(f"  run folder       {run}/  (report.md, report.json, checkpoints/step_*.pt)")
    print(f"  class map        {prediction}  (+ {prediction.with_suffix('.qml').name}: "
          "drag both into QGIS)")


if __name__ == "__main__":
    main()
