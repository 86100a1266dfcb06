"""Finetune, joint, MiB, PLOP and IDEC side by side on the synthetic ISPRS sample (CPU).

    python benchmarks/compare_methods.py --tasks 4-1 2-2-1 --seeds 0 1 2 --out benchmarks/out

Every method of a (task, seed) shares the same data, seed, schedule and step-0 model (trained
once by finetune, reused with --step0-from), so they differ only in how they learn the new
classes. Prints one table per task (mean ± std over seeds) and writes it to OUT/TASK.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("finetune", "mib", "plop", "idec")


def geoidec(*args: str) -> None:
    print("$ geoidec " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "geoidec.cli.main", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["4-1", "2-2-1"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--sample", type=Path, default=None,
                        help="sample folder (default OUT/sample, generated if missing)")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="extra --set for every run")
    args = parser.parse_args()
    sample = args.sample or args.out / "sample"
    if not (sample / "5_Labels_all").is_dir():
        geoidec("samples", "isprs", "--out", str(sample), "--size", "384",
                "--resolution", "0.1", "--overwrite")
    extra = [x for s in args.sets for x in ("--set", s)]
    for task in args.tasks:
        runs: list[str] = []
        for seed in args.seeds:
            base = args.out / f"{task}-seed{seed}"
            common = ["train", "isprs", "--root", str(sample), "--steps", task, "--preset",
                      args.preset, "--seed", str(seed), "--quiet", "--overwrite", *extra]
            started = time.perf_counter()
            for method in METHODS:
                run = base / method
                reuse = [] if method == "finetune" else ["--step0-from",
                                                         str(base / "finetune")]
                geoidec(*common, "--method", method, "--out", str(run), *reuse)
                runs.append(str(run))
            geoidec(*common, "--method", "joint", "--out", str(base / "joint"))
            runs.append(str(base / "joint"))
            print(f"task {task} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
        geoidec("compare", *runs, "--out", str(args.out / f"{task}.md"))


if __name__ == "__main__":
    main()
