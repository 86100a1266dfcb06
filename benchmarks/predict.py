"""Whole-scene prediction: throughput vs the bare model forward, and peak memory vs scene size.

    python benchmarks/predict.py [--sizes 2000 8000 20000] [--workdir /tmp/geoidec-bench]

Builds a tiny untrained model (DeepLabV3-MobileNetV3-small, ASPP 64, 6 classes, tile 512,
overlap 128) saved with :func:`geoidec.engine.checkpoint.save_checkpoint`, so the real
``predict_scene`` path runs (load, checks, windowed reads in a prefetch thread, blending,
COG writing and conversion). Synthetic 3-band uint8 tiled GeoTIFFs of ``size x size`` px are
generated on disk in row bands (never in memory) and kept in ``--workdir`` for reruns.

For each size, in a fresh subprocess:

- ``pipeline``: ``predict_scene`` of the whole scene (after one warm-up forward); windows/s
  and the process's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``, read at the end).
- ``forward``: the bare ``model(x)`` + softmax on up to ``--forward-windows`` windows of
  the same scene and the same grid, read and normalised beforehand (batch ``--batch-size``);
  windows/s.

Goals: pipeline >= 0.85 x bare forward; peak RSS flat within 10% across sizes and under
2 GiB at 20,000^2. A 20,000^2 run takes minutes on a CPU (about 2,700 windows of 512 px).
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


def make_checkpoint(path: Path) -> Path:
    """An untrained tiny checkpoint with the metadata prediction needs."""
    from geoidec.data.normalization import Normalization
    from geoidec.engine.checkpoint import save_checkpoint
    from geoidec.models import build_model

    if path.exists():
        return path
    torch_seed()
    model = build_model("mobilenet_v3_small", [CLASSES], in_channels=3, aspp_channels=ASPP)
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


def child_pipeline(scene: Path, ckpt_path: Path, out: Path, batch_size: int) -> dict:
    import torch

    from geoidec.engine.checkpoint import load_checkpoint
    from geoidec.inference.predict import predict_scene

    ckpt = load_checkpoint(ckpt_path)
    with torch.inference_mode():  # warm-up: first-call allocations are not the pipeline's
        ckpt.model(torch.zeros(batch_size, 3, TILE, TILE))
    windows = {"n": 0}

    def progress(done: int, total: int) -> None:
        windows["n"] = total

    start = time.perf_counter()
    predict_scene(ckpt, scene, out, batch_size=batch_size, overwrite=True, progress=progress)
    seconds = time.perf_counter() - start
    return {"windows": windows["n"], "seconds": seconds,
            "win_per_s": windows["n"] / seconds, "peak_rss_mb": peak_rss_mb()}


def child_forward(scene: Path, ckpt_path: Path, batch_size: int, max_windows: int) -> dict:
    import torch

    from geoidec.data.base import Scene, SceneReader
    from geoidec.data.tiling import grid_windows
    from geoidec.engine.checkpoint import load_checkpoint
    from geoidec.engine.evaluate import model_reader, probability_fn

    ckpt = load_checkpoint(ckpt_path)
    model = ckpt.model.eval()
    predict = probability_fn(model, torch.device("cpu"))
    with SceneReader(Scene(name=scene.stem, image=scene)) as reader:
        windows = grid_windows(reader.height, reader.width, TILE, TILE - OVERLAP)
        step = max(1, len(windows) // max_windows)
        chosen = windows[::step][:max_windows]
        read = model_reader(reader, ckpt.normalization)
        x = torch.from_numpy(np.stack([read(w)[0] for w in chosen]))
    predict(x[:batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        predict(x[i : i + batch_size])
    seconds = time.perf_counter() - start
    return {"windows": len(x), "seconds": seconds, "win_per_s": len(x) / seconds}


def run_child(args: list[str]) -> dict:
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 20000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geoidec-bench"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--forward-windows", type=int, default=48)
    parser.add_argument("--child", choices=["pipeline", "forward"], help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "pipeline":
        print(json.dumps(child_pipeline(args.scene, args.ckpt, args.out, args.batch_size)))
        return
    if args.child == "forward":
        print(json.dumps(child_forward(args.scene, args.ckpt, args.batch_size,
                                       args.forward_windows)))
        return

    import torch

    args.workdir.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(args.workdir / "bench_step_0.pt")
    print(f"# predict benchmark: tile {TILE}, overlap {OVERLAP}, batch {args.batch_size}, "
          f"mobilenet_v3_small/ASPP {ASPP}, {CLASSES} classes, CPU, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs")
    print("| scene (px) | windows | pipeline s | pipeline win/s | forward win/s | ratio "
          "| peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    rss = []
    for size in args.sizes:
        start = time.perf_counter()
        scene = make_scene(args.workdir / f"scene_{size}.tif", size)
        made = time.perf_counter() - start
        common = ["--scene", str(scene), "--ckpt", str(ckpt),
                  "--batch-size", str(args.batch_size)]
        pipe = run_child(["--child", "pipeline", *common,
                          "--out", str(args.workdir / f"classes_{size}.tif")])
        fwd = run_child(["--child", "forward", *common,
                         "--forward-windows", str(args.forward_windows)])
        rss.append(pipe["peak_rss_mb"])
        print(f"| {size:,}^2 | {pipe['windows']} | {pipe['seconds']:.1f} | "
              f"{pipe['win_per_s']:.2f} | {fwd['win_per_s']:.2f} | "
              f"{pipe['win_per_s'] / fwd['win_per_s']:.2f} | {pipe['peak_rss_mb']:.0f} |",
              flush=True)
        if made > 1:
            print(f"#   (scene generated in {made:.0f} s, not timed above)", flush=True)
    if len(rss) > 1:
        spread = (max(rss) - min(rss)) / min(rss)
        print(f"# peak RSS spread across sizes: {100 * spread:.1f}% "
              f"(goal <= 10%); largest {max(rss):.0f} MiB (goal < 2048)")
    print("# ratio = pipeline windows/s / bare forward windows/s (goal >= 0.85)")


if __name__ == "__main__":
    main()
