"""Training step and prediction forward of one model under each precision and memory layout.

    python benchmarks/precision_layout.py [--device cuda] [--backbone resnet101] \
        [--tile 512] [--batch-size 12] [--iterations 20] [--compile] [--json out.json]

For every combination of precision (fp32, fp16 autocast, bf16 autocast; CPU: fp32 and
bf16) and memory layout (contiguous, channels-last), in one process, on the same random
batch: a training step (forward, cross-entropy, backward, SGD; fp16 with a GradScaler, as
``train.precision=16-mixed`` does) in steps/s, and the prediction forward (eval mode,
inference mode, softmax) in windows/s. The median of ``--iterations`` timed repetitions
after 3 warm-ups, the device synchronised around each. ``--compile`` adds
``torch.compile`` of the fastest prediction combination (compile time reported apart).
These are the figures behind the defaults of ``train.precision``, ``train.channels_last``,
``train.compile`` and ``geoidec predict --compile`` (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from geoidec.models import build_model

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def timed(fn: Callable[[], object], device: torch.device, iterations: int) -> float:
    """Median seconds of ``fn`` over ``iterations`` runs after 3 warm-ups."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):
        fn()
    times = []
    for _ in range(iterations):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def autocast(device: torch.device, dtype: torch.dtype | None):  # noqa: ANN201
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def measure(args: argparse.Namespace, device: torch.device, precision: str,
            channels_last: bool) -> dict:
    """Training steps/s and prediction windows/s of one combination."""
    dtype = PRECISIONS[precision]
    torch.manual_seed(0)
    model = build_model(args.backbone, [args.classes], aspp_channels=args.aspp).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    x = torch.rand(args.batch_size, 3, args.tile, args.tile, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, args.classes, (args.batch_size, args.tile, args.tile), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None

    def train_step() -> None:
        with autocast(device, dtype):
            loss = torch.nn.functional.cross_entropy(model(x).logits.float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    model.train()
    train_s = timed(train_step, device, args.iterations)
    model.eval()

    def forward(net: Callable[..., Any] = model) -> None:
        with torch.inference_mode(), autocast(device, dtype):
            torch.softmax(net(x).logits.float(), dim=1)

    predict_s = timed(forward, device, args.iterations)
    result = {"precision": precision, "channels_last": channels_last,
              "train_steps_per_s": 1 / train_s,
              "predict_windows_per_s": args.batch_size / predict_s}
    if args.compile_this:
        start = time.perf_counter()
        compiled = torch.compile(model)
        forward(compiled)
        result["compile_s"] = time.perf_counter() - start
        result["compiled_windows_per_s"] = args.batch_size / timed(
            lambda: forward(compiled), device, args.iterations)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--aspp", type=int, default=256)
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--compile", action="store_true",
                        help="also torch.compile the fastest prediction combination")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precisions = list(PRECISIONS) if device.type == "cuda" else ["fp32", "bf16"]
    args.compile_this = False
    rows = [measure(args, device, p, cl) for p in precisions for cl in (False, True)]
    if args.compile:
        best = max(rows, key=lambda r: r["predict_windows_per_s"])
        args.compile_this = True
        rows.append({**measure(args, device, best["precision"], best["channels_last"]),
                     "compiled": True})
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# {args.backbone} (ASPP {args.aspp}), batch {args.batch_size} x {args.tile}^2, "
          f"{where}, torch {torch.__version__}")
    print("| precision | layout | train steps/s | predict windows/s | compiled windows/s |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        layout = "channels-last" if r["channels_last"] else "contiguous"
        comp = (f"{r['compiled_windows_per_s']:.1f} (compile {r['compile_s']:.0f} s)"
                if "compiled_windows_per_s" in r else "")
        print(f"| {r['precision']} | {layout} | {r['train_steps_per_s']:.2f} | "
              f"{r['predict_windows_per_s']:.1f} | {comp} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": where, "backbone": args.backbone,
                                         "batch": args.batch_size, "tile": args.tile,
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
