"""Time per training iteration of an incremental step (t = 1): each method vs finetune.

    python benchmarks/step_cost.py [--iterations 30] [--backbone mobilenet_v3_small]
    python benchmarks/step_cost.py --satellite   # the satellite preset's model and chips

Runs the engine's own StepModule.training_step + backward + SGD step on the same batches for
every method, interleaved iteration by iteration in one process (goal for IDEC: <= 1.6 x
finetune; the old model's forward is the only inherent extra). Run it on a quiet machine:
other processes on the same cores make single timings meaningless.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from geoidec.config import Config, MethodConfig
from geoidec.data.normalization import Normalization
from geoidec.data.transforms import TrainAugmentation
from geoidec.methods import build_method
from geoidec.models import build_model
from geoidec.tasks import TaskSchedule
from geoidec.training.module import StepModule


def build_step(name: str, old, schedule, iterations: int, bands: int = 3):  # noqa: ANN001, ANN201
    """The engine's StepModule for step t = 1 of ``name`` and its optimiser."""
    method = build_method(MethodConfig(name=name))
    plan = method.plan(schedule)[1]
    model = copy.deepcopy(old)
    model.requires_grad_(True)  # StepModule froze ``old`` for the methods built before
    model.add_step(1)
    norm = Normalization((0.0,) * bands, (1.0,) * bands, (0.5,) * bands, (0.25,) * bands)
    module = StepModule(model, method, plan, norm, TrainAugmentation(), Config().train,
                        iterations, old_model=old)
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    module.to(next(old.parameters()).device).train()
    method.start_step(plan, old.num_classes)
    return module, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)


def one_step(module, optimizer, batch, i: int, scaler=None) -> float:  # noqa: ANN001
    cuda = batch[0].is_cuda
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
        loss = module.training_step(batch, i)
    optimizer.zero_grad()
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--aspp", type=int, default=64)
    parser.add_argument("--head", default="aspp", help="aspp or lraspp")
    parser.add_argument("--first-stride", type=int, default=2)
    parser.add_argument("--bands", type=int, default=3)
    parser.add_argument("--satellite", action="store_true",
                        help="the satellite preset: mobilenet_v3_large, lraspp 128, first "
                        "stride 1, 6 bands, batch 16 x 64 px")
    parser.add_argument("--device", default="cpu",
                        help="cpu, or cuda (native AMP, fp16 autocast + GradScaler, as training)")
    args = parser.parse_args()
    if args.satellite:
        args.backbone, args.head, args.aspp, args.first_stride = (
            "mobilenet_v3_large", "lraspp", 128, 1)
        args.bands, args.batch_size, args.tile = 6, 16, 64
    device = torch.device(args.device)
    torch.manual_seed(0)
    schedule = TaskSchedule.parse("4-1", ["a", "b", "c", "d", "e"])
    old = build_model(args.backbone, [5], aspp_channels=args.aspp, in_channels=args.bands,
                      head=args.head, first_stride=args.first_stride).to(device).eval()
    batches = [
        (torch.rand(args.batch_size, args.bands, args.tile, args.tile),
         torch.randint(0, 6, (args.batch_size, args.tile, args.tile)) * (torch.rand(1) > 0.1))
        for _ in range(args.iterations)
    ]
    batches = [(x.to(device), torch.where(y == 5, y, torch.zeros_like(y)).to(device))
               for x, y in batches]
    names = ("finetune", "mib", "plop", "idec")
    steps = {m: build_step(m, old, schedule, args.iterations, args.bands) for m in names}
    scalers = {m: torch.amp.GradScaler("cuda") if device.type == "cuda" else None
               for m in names}
    times: dict[str, list[float]] = {m: [] for m in names}
    # interleaved, rotating order: a busy machine slows every method alike
    for i, batch in enumerate(batches):
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            times[name].append(one_step(*steps[name], batch, i, scalers[name]))
    results = {m: statistics.median(t[2:] or t) for m, t in times.items()}
    base = results["finetune"]
    where = (torch.cuda.get_device_name(device) + ", AMP fp16" if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"{args.backbone} ({args.head}, first stride {args.first_stride}), {args.bands} "
          f"bands, batch {args.batch_size} x {args.tile}^2, {where}, step t=1")
    print("median over interleaved iterations (methods take turns on the same batches)")
    print("| method | s / iteration | x finetune |")
    print("|---|---:|---:|")
    for name, sec in results.items():
        print(f"| {name} | {sec:.3f} | {sec / base:.2f} |")


if __name__ == "__main__":
    main()
