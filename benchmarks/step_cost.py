"""Time per training iteration of an incremental step (t = 1): each method vs finetune.

    python benchmarks/step_cost.py [--iterations 30] [--backbone mobilenet_v3_small]

Runs the engine's own StepModule.training_step + backward + SGD step on the same batches for
every method, side by side in one process (goal for IDEC: <= 1.6 x finetune; the old model's
forward is the only inherent extra).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from geoidec.config import Config, MethodConfig
from geoidec.data.normalization import Normalization
from geoidec.data.transforms import TrainAugmentation
from geoidec.engine.module import StepModule
from geoidec.methods import build_method
from geoidec.models import build_model
from geoidec.tasks import TaskSchedule


def time_method(name: str, old, batches, schedule, iterations: int) -> float:
    method = build_method(MethodConfig(name=name))
    plan = method.plan(schedule)[1]
    model = copy.deepcopy(old)
    model.add_step(1)
    norm = Normalization((0.0,) * 3, (1.0,) * 3, (0.5,) * 3, (0.25,) * 3)
    module = StepModule(model, method, plan, norm, TrainAugmentation(), Config().train,
                        iterations, old_model=old)
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    module.train()
    method.start_step(plan, old.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    times = []
    for i, batch in enumerate(batches[:iterations]):
        start = time.perf_counter()
        loss = module.training_step(batch, i)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    warm = times[3:] or times
    return sum(warm) / len(warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--aspp", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    schedule = TaskSchedule.parse("4-1", ["a", "b", "c", "d", "e"])
    old = build_model(args.backbone, [5], aspp_channels=args.aspp).eval()
    batches = [
        (torch.rand(args.batch_size, 3, args.tile, args.tile),
         torch.randint(0, 6, (args.batch_size, args.tile, args.tile)) * (torch.rand(1) > 0.1))
        for _ in range(args.iterations)
    ]
    batches = [(x, torch.where(y == 5, y, torch.zeros_like(y))) for x, y in batches]
    results = {m: time_method(m, old, batches, schedule, args.iterations)
               for m in ("finetune", "mib", "plop", "idec")}
    base = results["finetune"]
    print(f"{args.backbone}, batch {args.batch_size} x {args.tile}^2, "
          f"{torch.get_num_threads()} threads, step t=1")
    print("| method | s / iteration | x finetune |")
    print("|---|---:|---:|")
    for name, sec in results.items():
        print(f"| {name} | {sec:.3f} | {sec / base:.2f} |")


if __name__ == "__main__":
    main()
