"""Whole-scene prediction: throughput vs the bare model forward; peak memory vs scene size;
the pipeline's own ceiling with a null model.

    python benchmarks/predict.py [--sizes 2000 8000 20000] [--workdir /tmp/geoidec-bench] \
        [--json out.json]

Builds a tiny untrained model (DeepLabV3-MobileNetV3-small, ASPP 64, 6 classes, tile 512,
overlap 128) saved with :func:`geoidec.checkpoint.save_checkpoint`, so the real
``predict_scene`` path runs (load, checks, windowed reads in a prefetch thread, blending,
COG writing and conversion). Synthetic 3-band uint8 tiled GeoTIFFs of ``size x size`` px are
generated on disk in row bands (never in memory) and kept in ``--workdir`` for reruns.

For each size, in a fresh subprocess: the bare forward (``model(x)`` + softmax, the
prediction's own ``probability_fn``) on one batch of the scene's first grid windows, read
and normalised beforehand, repeated ``--forward-batches`` times; then ``predict_scene`` of
the whole scene; then the bare forward again (before/after, averaged: the machine is shared,
so both measures run under the same load). The ratio is pipeline windows/s over bare
forward windows/s; the CPU ratio compares CPU seconds per window (process time of all
threads), which other processes on a shared machine disturb much less than wall time.
Peak memory is the child's ``getrusage(RUSAGE_SELF).ru_maxrss``, read right after the
pipeline (it includes Python, torch, the model and the warm-up batch).

Every run writes the class map and the confidence layer (``--confidence``).

The null model: the same ``predict_scene`` with the forward (model + softmax) replaced by a
constant probability tensor on the device (smooth class fields, so the outputs compress
like a real class map), run once with one thread everywhere (torch, readers, writer, GDAL)
and once with every core: its windows per second are the pipeline's ceiling, what it could
feed a model of infinite speed, and its CPU time per window with one thread is
``cpu_ms_per_window_outside_forward`` (everything but the forward: reading, normalising,
blending, output layers, encoding, overviews, COG conversion). ``--json PATH`` writes these
per scene size with the table's figures.

Goals: pipeline >= 0.85 x bare forward; peak RSS flat within 10% across sizes and under
2 GiB at 20,000^2; null-model ceiling with all cores >= 1.7 x one thread; at most 5 ms of CPU
per window outside the forward. A 20,000^2 run takes minutes on a CPU (about 2,700 windows
of 512 px).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TILE, OVERLAP, CLASSES, ASPP = 512, 128, 6, 64
WARM_BATCHES = 3
"""Forwards run before the bare forward is timed. With one, the "before" figure was 20-30 %
below the "after" one in every run of 2026-12-01, which flattered the ratio; with three it
is still 10-20 % below at 2,000^2 and 8,000^2 (the forward keeps getting faster over the
first hundreds of windows), so the before/after average stays generous to the pipeline."""


def make_checkpoint(path: Path, backbone: str = "mobilenet_v3_small", aspp: int = ASPP) -> Path:
    """An untrained tiny checkpoint with the metadata prediction needs."""
    from geoidec.checkpoint import save_checkpoint
    from geoidec.data.normalization import Normalization
    from geoidec.models import build_model

    if path.exists():
        return path
    torch_seed()
    model = build_model(backbone, [CLASSES], in_channels=3, aspp_channels=aspp)
    norm = Normalization(low=(0.0,) * 3, high=(255.0,) * 3, mean=(0.45,) * 3,
                         std=(0.25,) * 3)
    names = ["background", "a", "b", "c", "d", "e"]
    meta = {
        "step": 0, "step_classes": names[1:], "bands": 3, "band_names": ["r", "g", "b"],
        "rgb_bands": [0, 1, 2], "normalization": norm.to_dict(), "tile_size": TILE,
        "overlap": OVERLAP, "resolution": [0.5, 0.5], "crs": "EPSG:32633",
        "classes": [{"index": i, "name": n, "color": [40 * i, 255 - 40 * i, 90]}
                    for i, n in enumerate(names)],
    }
    return save_checkpoint(path, model, meta)


def torch_seed() -> None:
    import torch

    torch.manual_seed(0)


def make_scene(path: Path, size: int, band_rows: int = 512) -> Path:
    """A ``size`` x ``size`` 3-band uint8 tiled (256 px, DEFLATE) GeoTIFF, written in bands."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.partial")
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": Affine(0.5, 0, 500000, 0, -0.5, 5800000),
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
               "photometric": "RGB"}
    cols = np.arange(size, dtype=np.float32)
    rng = np.random.default_rng(0)
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, size, band_rows):
            n = min(band_rows, size - row)
            r = np.arange(row, row + n, dtype=np.float32)[:, None]
            base = 0.5 + 0.25 * np.sin(r / 97.0) * np.cos(cols / 131.0)
            fields = [base, 0.5 + 0.3 * np.sin((r + cols) / 53.0) * 0.8,
                      0.4 + 0.3 * np.cos(r / 41.0 - cols / 77.0)]
            data = np.stack([np.broadcast_to(f, (n, size)) for f in fields]) * 255.0
            data += rng.normal(0, 8, data.shape).astype(np.float32)
            dst.write(np.clip(data, 0, 255).astype(np.uint8), window=Window(0, row, size, n))
    os.replace(tmp, path)
    return path


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def null_probabilities(batch: int, classes: int, tile: int, device: object) -> object:
    """A constant (batch, classes, tile, tile) probability tensor with smooth class fields."""
    import torch

    yy, xx = torch.meshgrid(torch.arange(tile, dtype=torch.float32),
                            torch.arange(tile, dtype=torch.float32), indexing="ij")
    logits = torch.stack([4 * torch.sin(xx / (40 + 9 * c) + c) * torch.cos(yy / (55 + 7 * c) - c)
                          for c in range(classes)])
    probs = torch.softmax(logits, dim=0).expand(batch, -1, -1, -1).contiguous()
    return probs.to(device)


def null_child(scene: Path, ckpt_path: Path, out: Path, batch_size: int, threads: int,
               device_name: str = "cpu") -> dict:
    """The pipeline with the forward replaced by a constant tensor, ``threads`` threads."""
    import torch

    import geoidec.inference.predict as predict_module
    import geoidec.inference.predictor_setup as setup_module
    from geoidec.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    ckpt = load_checkpoint(ckpt_path)
    const = null_probabilities(batch_size, CLASSES, TILE, device)

    def constant_fn(model: object, device: object, **options: object) -> object:
        # every option of probability_fn (amp, tta, ...): the null model ignores them
        return lambda x: const[: len(x)]

    setup_module.probability_fn = constant_fn  # the null model: no forward at all
    total = {"n": 0}

    def progress(done: int, n: int) -> None:
        total["n"] = n

    # warm: first-call imports and allocations are not the pipeline's steady cost
    predict_module.predict_scene(ckpt, scene, out, batch_size=batch_size, overwrite=True,
                                 device=device, threads=threads, confidence=True)
    start, cpu = time.perf_counter(), time.process_time()
    predict_module.predict_scene(ckpt, scene, out, batch_size=batch_size, overwrite=True,
                                 progress=progress, device=device, threads=threads,
                                 confidence=True)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {"windows": total["n"], "seconds": seconds, "win_per_s": total["n"] / seconds,
            "cpu_ms_per_window": 1000 * cpu_seconds / total["n"], "threads": threads}


def child(scene: Path, ckpt_path: Path, out: Path, batch_size: int, repeats: int,
          device_name: str = "cpu") -> dict:
    """In one fresh process: bare forward, the whole pipeline, bare forward again."""
    import torch

    from geoidec.checkpoint import load_checkpoint
    from geoidec.data.base import Scene
    from geoidec.data.scene_reader import SceneReader
    from geoidec.data.tiling import grid_windows
    from geoidec.inference.forward import probability_fn
    from geoidec.inference.predict import predict_scene
    from geoidec.inference.reading import SingleReader, WindowReader

    device = torch.device(device_name)
    ckpt = load_checkpoint(ckpt_path)
    cuda = device.type == "cuda"
    # the bare forward copies the batch from host memory each time, as the pipeline must
    model_fn = probability_fn(ckpt.model.to(device).eval(), device, amp=cuda)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        probs = model_fn(batch.to(device, non_blocking=cuda))
        if cuda:
            torch.cuda.synchronize()
        return probs

    with SceneReader(Scene(name=scene.stem, image=scene)) as reader:
        windows = grid_windows(reader.height, reader.width, TILE, TILE - OVERLAP)[:batch_size]
        read = WindowReader(SingleReader(reader), [ckpt.normalization])
        x = torch.from_numpy(np.stack([read(w)[0] for w in windows]))
    for _ in range(WARM_BATCHES):  # warm-up: first-call allocations, kernel choices
        predict(x)

    def forward() -> tuple[float, float]:
        """(windows per wall second, CPU seconds per window)."""
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            predict(x)
        n = repeats * len(x)
        return n / (time.perf_counter() - start), (time.process_time() - cpu) / n

    before, cpu_before = forward()
    total = {"n": 0}

    def progress(done: int, n: int) -> None:
        total["n"] = n

    if cuda:  # CUDA loads kernels lazily for each new batch shape: time a warm pipeline
        predict_scene(ckpt, scene, out, batch_size=batch_size, overwrite=True, device=device,
                      confidence=True)
    start, cpu = time.perf_counter(), time.process_time()
    predict_scene(ckpt, scene, out, batch_size=batch_size, overwrite=True, progress=progress,
                  device=device, confidence=True)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    rss = peak_rss_mb()
    after, cpu_after = forward()
    return {"windows": total["n"], "seconds": seconds, "win_per_s": total["n"] / seconds,
            "cpu_per_window": cpu_seconds / total["n"], "peak_rss_mb": rss,
            "forward_win_per_s": (before + after) / 2, "forward_before": before,
            "forward_after": after, "forward_cpu_per_window": (cpu_before + cpu_after) / 2,
            "load_avg": os.getloadavg()[0]}


def run_child(args: list[str]) -> dict:
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def null_runs(args: argparse.Namespace, scene: Path, ckpt: Path, size: int) -> dict:
    """The null-model pipeline with one thread and with every core (fresh processes)."""
    runs = {}
    for threads in (1, os.cpu_count() or 1):
        runs[threads] = run_child(["--child", "--null-threads", str(threads), "--scene",
                                   str(scene), "--ckpt", str(ckpt), "--batch-size",
                                   str(args.batch_size), "--device", args.device,
                                   "--out", str(args.workdir / f"null_{size}.tif")])
    one, every = runs[1], runs[os.cpu_count() or 1]
    print(f"#   null model {size:,}^2: {one['cpu_ms_per_window']:.1f} ms CPU per window outside "
          f"the forward (goal <= 5); {one['win_per_s']:.1f} windows/s with 1 thread, "
          f"{every['win_per_s']:.1f} with {every['threads']} "
          f"({every['win_per_s'] / one['win_per_s']:.2f}x, goal >= 1.7)", flush=True)
    return {"cpu_ms_per_window_outside_forward": one["cpu_ms_per_window"],
            "null_model_windows_per_s_1_thread": one["win_per_s"],
            "null_model_windows_per_s_all_threads": every["win_per_s"],
            "null_model_threads": every["threads"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 20000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geoidec-bench"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--forward-batches", type=int, default=6,
                        help="bare-forward batches timed before and after the pipeline")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (AMP on CUDA)")
    parser.add_argument("--backbone", default="mobilenet_v3_small")
    parser.add_argument("--aspp", type=int, default=ASPP)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--no-null", action="store_true",
                        help="skip the null-model ceiling runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--null-threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child and args.null_threads:
        print(json.dumps(null_child(args.scene, args.ckpt, args.out, args.batch_size,
                                    args.null_threads, args.device)))
        return
    if args.child:
        print(json.dumps(child(args.scene, args.ckpt, args.out, args.batch_size,
                               args.forward_batches, args.device)))
        return

    import torch

    args.workdir.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(args.workdir / f"bench_{args.backbone}_{args.aspp}.pt",
                           args.backbone, args.aspp)
    print(f"# predict benchmark: tile {TILE}, overlap {OVERLAP}, batch {args.batch_size}, "
          f"{args.backbone}/ASPP {args.aspp}, {CLASSES} classes, {args.device}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs")
    print("| scene (px) | windows | pipeline s | pipeline win/s | forward win/s (before/after) "
          "| ratio | pipeline CPU s/win | forward CPU s/win | CPU ratio | peak RSS (MiB) "
          "| load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rss = []
    results = []
    for size in args.sizes:
        start = time.perf_counter()
        scene = make_scene(args.workdir / f"scene_{size}.tif", size)
        made = time.perf_counter() - start
        res = run_child(["--child", "--scene", str(scene), "--ckpt", str(ckpt),
                         "--batch-size", str(args.batch_size),
                         "--forward-batches", str(args.forward_batches),
                         "--device", args.device,
                         "--out", str(args.workdir / f"classes_{size}.tif")])
        rss.append(res["peak_rss_mb"])
        record = {"size": size, **res}
        fwd = res["forward_win_per_s"]
        cpu_ratio = res["forward_cpu_per_window"] / res["cpu_per_window"]
        print(f"| {size:,}^2 | {res['windows']} | {res['seconds']:.1f} | "
              f"{res['win_per_s']:.2f} | {fwd:.2f} ({res['forward_before']:.2f}/"
              f"{res['forward_after']:.2f}) | {res['win_per_s'] / fwd:.2f} | "
              f"{res['cpu_per_window']:.3f} | {res['forward_cpu_per_window']:.3f} | "
              f"{cpu_ratio:.2f} | {res['peak_rss_mb']:.0f} | {res['load_avg']:.1f} |",
              flush=True)
        if made > 1:
            print(f"#   (scene generated in {made:.0f} s, not timed above)", flush=True)
        if not args.no_null:
            record.update(null_runs(args, scene, ckpt, size))
        results.append(record)
    if len(rss) > 1:
        spread = (max(rss) - min(rss)) / min(rss)
        print(f"# peak RSS spread across sizes: {100 * spread:.1f}% "
              f"(goal <= 10%); largest {max(rss):.0f} MiB (goal < 2048)")
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "backbone": args.backbone,
                                         "cpus": os.cpu_count(), "sizes": results}, indent=2))
        print(f"# wrote {args.json}")
    print("# ratio = pipeline windows/s / bare forward windows/s (goal >= 0.85); CPU ratio = "
          "forward CPU s per window / pipeline CPU s per window (all threads of the process; "
          "less sensitive to other load on a shared machine)")


if __name__ == "__main__":
    main()
