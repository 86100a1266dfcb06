"""Finetune, joint, MiB, PLOP and IDEC side by side, several seeds (CPU).

    # the real benchmark: Sentinel-2 + OpenStreetMap, with the random-forest baseline
    python benchmarks/compare_methods.py --dataset ../shared/data/s2_osm/dataset.yaml \\
        --tasks 4-3 4-1-1-1 --seeds 0 1 2 --forest --jobs 2 --out benchmarks/out/s2_osm
    # the synthetic ISPRS sample (plumbing, not quality)
    python benchmarks/compare_methods.py --tasks 4-1 2-2-1 --seeds 0 1 2 --out benchmarks/out

Every method of a seed shares the same data, settings and step-0 model: step 0 is trained
once per seed (by the finetune run of the first task) and reused with ``--step0-from`` by
every other method and by every task whose step 0 learns the same classes, so methods differ
only in how they learn the new classes. Joint trains all classes at once for the incremental
run's total iteration budget. Prints one table per task (``geoidec compare``: mean ± std over
seeds) and writes it to OUT/TASK.md; ``--forest`` adds the per-pixel random forest of
benchmarks/s2_osm.py on the same split (needs scikit-learn: ``pip install -e '.[benchmark]'``).

``--jobs N`` runs N trainings at once, each with ``OMP_NUM_THREADS`` = cores / N (on a small
CPU two single-threaded runs finish sooner than two runs one after the other).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

METHODS = ("finetune", "mib", "plop", "idec")


@dataclass
class Job:
    """One ``geoidec train`` run, started once the run it reuses step 0 from has finished."""

    out: Path
    args: list[str]
    after: Job | None = None
    done: Future | None = field(default=None, repr=False)


def geoidec(args: list[str], threads: int | None = None, log: Path | None = None) -> None:
    """``python -m geoidec.cli.main ARGS`` (output to ``log`` when given)."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "geoidec.cli.main", *args]
    print("$ geoidec " + " ".join(args), flush=True)
    if log is None:
        subprocess.run(command, check=True, env=env)
        return
    with open(log, "w") as sink:
        subprocess.run(command, check=True, env=env, stdout=sink, stderr=subprocess.STDOUT)


def first_step(task: str) -> str:
    """What a task learns at step 0: ``4`` for ``4-3`` and ``4-1-1-1`` (which share it),
    ``2`` for ``2-2-1``, the class names before the first ``|`` of a named task."""
    return task.split("|")[0] if "|" in task else task.split("-")[0]


def plan_jobs(args: argparse.Namespace, sample: str | None) -> dict[str, list[Job]]:
    """The runs of every task, step-0 trainers first."""
    data = ["isprs", "--root", sample] if sample else [str(args.dataset)]
    extra = ["--preset", args.preset] if args.preset else []
    extra += [x for s in args.sets for x in ("--set", s)]
    if args.eval_split:
        extra += ["--set", f"eval.split={args.eval_split}"]
    runs: dict[str, list[Job]] = {task: [] for task in args.tasks}
    for seed in args.seeds:
        step0: dict[str, Job] = {}  # per step-0 class set: tasks sharing it share the model
        for task in args.tasks:
            base = args.out / f"{task}-seed{seed}"
            common = ["train", *data, "--steps", task, "--seed", str(seed), "--quiet",
                      "--overwrite", *extra]
            first = first_step(task)
            for method in args.methods:
                trainer = step0.get(first)
                reuse = [] if trainer is None else ["--step0-from", str(trainer.out)]
                job = Job(base / method, [*common, "--method", method, "--out",
                                          str(base / method), *reuse], after=trainer)
                step0.setdefault(first, job)
                runs[task].append(job)
            if args.joint:
                runs[task].append(Job(base / "joint", [*common, "--method", "joint", "--out",
                                                       str(base / "joint")]))
    return runs


def run_jobs(jobs: list[Job], parallel: int, keep: bool = False) -> None:
    """Run ``jobs`` ``parallel`` at a time; a job waits for the run it reuses step 0 from
    (submitted first, so it is running or done: no deadlock). With ``keep``, a run whose
    ``report.json`` exists (it finished) is not trained again."""
    threads = max(1, (os.cpu_count() or 2) // parallel) if parallel > 1 else None
    order = sorted(jobs, key=lambda j: j.after is not None)

    def go(job: Job) -> None:
        if job.after is not None:
            assert job.after.done is not None
            job.after.done.result()
        if keep and (job.out / "report.json").is_file():
            print(f"kept {job.out} (finished before)", flush=True)
            return
        job.out.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        geoidec(job.args, threads, log=job.out.parent / f"{job.out.name}.log")
        print(f"done {job.out} in {time.perf_counter() - started:.0f} s", flush=True)

    with ThreadPoolExecutor(parallel) as pool:
        for job in order:
            job.done = pool.submit(go, job)
        for job in order:
            assert job.done is not None
            job.done.result()


def forest_line(args: argparse.Namespace) -> str:
    """Mean ± std over the seeds of the random-forest baseline, per class and overall."""
    import statistics

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from s2_osm import forest

    split = args.eval_split or "test"
    results = [forest(Path(args.dataset), split, seed, 60_000) for seed in args.seeds]
    (args.out / "forest.json").write_text(json.dumps(results, indent=2))

    def fmt(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"

    names = list(results[0]["per_class_iou"])
    per_class = ", ".join(f"{n} {fmt([r['per_class_iou'][n] for r in results])}"
                          for n in names)
    return (f"\nPer-pixel random forest (200 trees, 60,000 labelled pixels, seeds "
            f"{' '.join(map(str, args.seeds))}), {split} split: mIoU all "
            f"{fmt([r['miou'] for r in results])} ({per_class})\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="isprs",
                        help="isprs (the synthetic sample, generated if missing) or a "
                        "dataset YAML")
    parser.add_argument("--tasks", nargs="+", default=["4-1", "2-2-1"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        help="incremental methods (finetune first: it trains step 0)")
    parser.add_argument("--no-joint", dest="joint", action="store_false")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--sample", type=Path, default=None,
                        help="synthetic sample folder (default OUT/sample)")
    parser.add_argument("--preset", default=None,
                        help="default: cpu for the sample, auto for a dataset YAML")
    parser.add_argument("--eval-split", default=None, help="test (default) or val")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="extra --set for every run")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once")
    parser.add_argument("--keep", action="store_true",
                        help="do not train again the runs that finished before (resume)")
    parser.add_argument("--forest", action="store_true",
                        help="add the per-pixel random forest (dataset YAML only)")
    args = parser.parse_args()
    sample = None
    if args.dataset == "isprs":
        sample = args.sample or args.out / "sample"
        args.preset = args.preset or "cpu"
        if not (Path(sample) / "5_Labels_all").is_dir():
            geoidec(["samples", "isprs", "--out", str(sample), "--size", "384",
                     "--resolution", "0.1", "--overwrite"])
    runs = plan_jobs(args, str(sample) if sample else None)
    started = time.perf_counter()
    run_jobs([job for jobs in runs.values() for job in jobs], args.jobs, args.keep)
    print(f"all runs: {time.perf_counter() - started:.0f} s", flush=True)
    extra = forest_line(args) if args.forest and sample is None else ""
    for task, jobs in runs.items():
        table = args.out / f"{task}.md"
        geoidec(["compare", *[str(j.out) for j in jobs], "--out", str(table)])
        if extra:
            table.write_text(table.read_text() + extra)
        print(table.read_text())


if __name__ == "__main__":
    main()
