"""Training throughput: does the data pipeline keep the model busy?

    python benchmarks/train_throughput.py [--preset paper] [--batch-size 2] [--iterations 6]
    python benchmarks/train_throughput.py --device cuda --batch-size 12 --iterations 40

On the synthetic ISPRS sample (written to ``--workdir`` on the first run), with the preset's
chips (the paper preset: 512 px, DeepLabV3-ResNet-101; ``--set model.weights=none`` is
implied: no download), the engine's own pieces of step 0 are timed side by side:

1. ``chips/s per loader worker``: the step's :class:`~geoidec.data.chips.ChipDataset` read
   in this process (windowed reads from the tiled GeoTIFFs, scaling, label remapping): what
   one DataLoader worker delivers;
2. ``augmentation chips/s``: :class:`~geoidec.data.transforms.TrainAugmentation` (kornia,
   on the device) on batches of those chips;
3. ``forward+backward steps/s``: the :class:`~geoidec.training.module.StepModule`'s training
   step, backward and SGD step on one batch held on the device (the model's own limit;
   mixed precision on CUDA as training uses it);
4. ``geoidec train`` end to end: Lightning's ``fit`` of the same module over the step's
   DataLoader (``data.num_workers`` workers), timed from the end of its first iteration to
   the end of its last (start-up excluded), as a fraction of 3.

The figures go to stdout and, with ``--json PATH``, to a file. Goal (issue 15): the end to
end rate at least 0.9 x the forward+backward rate on a GPU; the loader workers needed to
feed it follow from 1 (``forward+backward chips/s / chips/s per worker``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from geoidec.config import load_config
from geoidec.data.registry import load_dataset
from geoidec.data.transforms import TrainAugmentation
from geoidec.synthetic import generate_isprs_sample
from geoidec.tasks import TaskSchedule
from geoidec.training.module import StepModule
from geoidec.training.run import IncrementalRun
from geoidec.training.step_setup import step_iterations
from geoidec.training.trainer import build_trainer, fit_step, quiet_lightning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_cost import one_step  # noqa: E402 - the same timed training step as step_cost.py


def sample(workdir: Path, size: int) -> Path:
    root = workdir / f"isprs_{size}"
    if not (root / "README.txt").exists():
        generate_isprs_sample(root, size=size)
    return root


def timed(fn, repeats: int, sync: bool) -> float:  # noqa: ANN001
    """Seconds per call of ``fn`` (one warm-up call first)."""
    fn()
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if sync:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


class IterationClock:
    """Lightning callback: wall time from the end of the first batch to the end of the last."""

    def __init__(self) -> None:
        import lightning.pytorch as pl

        class _Clock(pl.Callback):
            def __init__(self) -> None:
                self.stamps: list[float] = []

            def on_train_batch_end(self, trainer, *args) -> None:  # noqa: ANN001, ANN002
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.stamps.append(time.perf_counter())

        self.callback = _Clock()

    def rate(self) -> float:
        stamps = self.callback.stamps
        return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=6,
                        help="iterations of the end-to-end fit (and forward+backward repeats)")
    parser.add_argument("--chips", type=int, default=24, help="chips read for measure 1")
    parser.add_argument("--workers", type=int, help="data.num_workers (default: the preset's,"
                        " at most the CPU count)")
    parser.add_argument("--tile-px", type=int, default=1024, help="sample tile size (px)")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geoidec-train-bench"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    root = sample(args.workdir, args.tile_px)
    dataset = load_dataset("isprs", root)
    base = load_config(args.preset)
    workers = args.workers if args.workers is not None else min(base.data.num_workers,
                                                                os.cpu_count() or 1)
    cfg = load_config(args.preset, sets=["model.weights=none", f"train.device={args.device}",
                                         f"train.batch_size={args.batch_size}",
                                         f"data.num_workers={workers}", "train.progress=false",
                                         *args.sets])
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    schedule = TaskSchedule.parse("4-1", dataset.class_names)
    with tempfile.TemporaryDirectory() as tmp:
        run = IncrementalRun(dataset, schedule, cfg, Path(tmp), echo=lambda m: None)
        run.prepare()
        plan = run.plans()[0]
        keep = run._step_scenes(plan, run.grids)
        iterations = args.iterations
        loader = run._loader(plan, run.grids, run.normalization, iterations, keep)
        chips = loader.dataset

        # 1. chips/s per loader worker (this process reads, as one worker does)
        n = min(args.chips, len(chips))
        start = time.perf_counter()
        items = [chips[i] for i in range(n)]
        per_worker = n / (time.perf_counter() - start)

        # 2. augmentation on the device
        batch = (torch.stack([x for x, _ in items[: args.batch_size]]).to(device),
                 torch.stack([y for _, y in items[: args.batch_size]]).to(device))
        augment = TrainAugmentation(cfg.augment, rgb_bands=dataset.rgb_bands)
        aug_s = timed(lambda: augment(*batch), 3, cuda)

        # 3. forward + backward + SGD step of the engine's module on a batch on the device
        model = run._build_model(plan, None, run.normalization.bands).to(device)
        module = StepModule(model, run.method, plan, run.normalization, augment, cfg.train,
                            iterations)
        module.log = lambda *a, **k: None  # type: ignore[method-assign]
        module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
        module.to(device).train()
        run.method.start_step(plan, 0)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        scaler = torch.amp.GradScaler("cuda") if cuda else None
        one_step(module, optimizer, batch, 0, scaler)  # warm-up
        fb_s = statistics.median(one_step(module, optimizer, batch, i, scaler)
                                 for i in range(max(2, iterations // 2)))

        # 4. end to end: Lightning's fit over the step's DataLoader
        model = run._build_model(plan, None, run.normalization.bands)
        module = StepModule(model, run.method, plan, run.normalization, augment, cfg.train,
                            iterations)
        clock = IterationClock()
        quiet_lightning()
        trainer = build_trainer(cfg, run.launch, device, Path(tmp), 0, iterations,
                                [clock.callback])
        fit_step(trainer, module, loader, 0, iterations)
        e2e = clock.rate()

    fb_rate = 1.0 / fb_s
    result = {
        "preset": args.preset, "device": str(device), "batch_size": args.batch_size,
        "tile_size": cfg.data.tile_size, "backbone": cfg.model.backbone,
        "loader_workers": workers, "cpus": os.cpu_count(),
        "chips_per_s_per_worker": per_worker,
        "augmentation_chips_per_s": args.batch_size / aug_s,
        "forward_backward_steps_per_s": fb_rate,
        "forward_backward_chips_per_s": fb_rate * args.batch_size,
        "end_to_end_steps_per_s": e2e,
        "end_to_end_fraction": e2e / fb_rate,
        "workers_needed": fb_rate * args.batch_size / per_worker,
        "planned_iterations_at_preset": step_iterations(base, plan, len(keep),
                                                        base.train.batch_size),
    }
    print(f"# train throughput: {args.preset} preset ({cfg.model.backbone}, "
          f"{cfg.data.tile_size} px chips), batch {args.batch_size}, {device}, "
          f"{workers} loader worker(s), {os.cpu_count()} CPUs")
    print("| measure | value |\n|---|---|")
    print(f"| chips/s per loader worker | {per_worker:.1f} |")
    print(f"| augmentation chips/s ({device}) | {result['augmentation_chips_per_s']:.1f} |")
    print(f"| forward+backward steps/s | {fb_rate:.3f} ({fb_rate * args.batch_size:.2f} "
          "chips/s) |")
    print(f"| geoidec train steps/s (end to end) | {e2e:.3f} |")
    print(f"| end to end / forward+backward | **{e2e / fb_rate:.2f}** (goal >= 0.9) |")
    print(f"| loader workers the model needs | {result['workers_needed']:.2g} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
