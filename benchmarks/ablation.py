"""Rerun the IDEC ablation (each of its four terms switched off) and write the table.

    python benchmarks/s2_osm.py split --out benchmarks/out/s2_osm_val   # train/val cut
    python benchmarks/ablation.py benchmarks/out/s2_osm_val/dataset.yaml --steps 4-3 \\
        --seeds 0 1 2 --jobs 2 --set eval.split=val
    python benchmarks/ablation.py isprs --root data/potsdam_sample --steps 4-1 --seeds 0 1 2

Runs full IDEC and IDEC without feature distillation, logit distillation, pseudo-labels and
ARCL on the same data, seed and schedule (step 0 trained once per seed by the full run and
shared), then `geoidec compare` writes OUT/ablation-TASK.md (mean ± std over seeds).
``--variant NAME=KEY=VALUE`` adds other settings to the table (e.g.
``--variant uncertain-as-background=method.uncertain=background``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_methods import Job, geoidec, run_jobs  # noqa: E402

TERMS = ("feature_kd", "logit_kd", "pseudo_labels", "arcl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="isprs, vaihingen, voc, ade or a dataset YAML")
    parser.add_argument("--root", default=None)
    parser.add_argument("--steps", default="4-1")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--preset", default=None, help="default: auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/ablation"))
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=section.key=value: one more row")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once")
    args = parser.parse_args()
    root = ["--root", args.root] if args.root else []
    extra = [x for s in args.sets for x in ("--set", s)]
    if args.preset:
        extra += ["--preset", args.preset]
    variants = [(f"no-{t}", f"method.{t}=false", f"idec without {t}") for t in TERMS]
    for item in args.variant:
        name, _, setting = item.partition("=")
        variants.append((name, setting, f"idec {name}"))
    jobs: list[Job] = []
    for seed in args.seeds:
        base = args.out / f"{args.steps}-seed{seed}"
        common = ["train", args.dataset, *root, "--steps", args.steps, "--seed", str(seed),
                  "--quiet", "--overwrite", "--method", "idec", *extra]
        full = Job(base / "idec", [*common, "--out", str(base / "idec")])
        jobs.append(full)
        for name, setting, label in variants:
            jobs.append(Job(base / name, [*common, "--out", str(base / name), "--step0-from",
                                          str(full.out), "--set", setting, "--label", label],
                            after=full))
    run_jobs(jobs, args.jobs)
    geoidec(["compare", *[str(j.out) for j in jobs], "--out",
             str(args.out / f"ablation-{args.steps}.md")])


if __name__ == "__main__":
    main()
