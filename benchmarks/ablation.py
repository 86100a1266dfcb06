"""Rerun the IDEC ablation (each of its four terms switched off) and write the table.

    python benchmarks/ablation.py isprs --root data/potsdam_sample --steps 4-1 --seeds 0 1 2

Runs full IDEC and IDEC without feature distillation, logit distillation, pseudo-labels and
ARCL on the same data, seed and schedule (step 0 shared), then `geoidec compare` writes
OUT/ablation-TASK.md (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

TERMS = ("feature_kd", "logit_kd", "pseudo_labels", "arcl")


def geoidec(*args: str) -> None:
    print("$ geoidec " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "geoidec.cli.main", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="isprs, vaihingen, voc, ade or a dataset YAML")
    parser.add_argument("--root", default=None)
    parser.add_argument("--steps", default="4-1")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/ablation"))
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    root = ["--root", args.root] if args.root else []
    extra = [x for s in args.sets for x in ("--set", s)]
    runs: list[str] = []
    for seed in args.seeds:
        base = args.out / f"{args.steps}-seed{seed}"
        common = ["train", args.dataset, *root, "--steps", args.steps, "--preset", args.preset,
                  "--seed", str(seed), "--quiet", "--overwrite", "--method", "idec", *extra]
        full = base / "idec"
        geoidec(*common, "--out", str(full))
        runs.append(str(full))
        for term in TERMS:
            run = base / f"no-{term}"
            geoidec(*common, "--out", str(run), "--step0-from", str(full),
                    "--set", f"method.{term}=false", "--label", f"idec without {term}")
            runs.append(str(run))
    geoidec("compare", *runs, "--out", str(args.out / f"ablation-{args.steps}.md"))


if __name__ == "__main__":
    main()
