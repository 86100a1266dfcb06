#!/usr/bin/env bash
# CUDA and AMP checks of geoidec on a machine with one GPU (not part of CI; needs the
# package importable: pip install -e . or PYTHONPATH).
#
#     bash benchmarks/gpu_check.sh OUTDIR [tests|train|bench|shared|all]
#
# tests: the suite with a GPU visible (code that picks CUDA automatically runs on it)
# train: sample -> 4-1 finetune + idec on CUDA (AMP), a one-process torchrun launch,
#        evaluate, predict on CUDA vs CPU (agreement of the two class maps)
# bench: benchmarks/step_cost.py, benchmarks/predict.py (MobileNet and ResNet-101, with
#        the null-model ceiling, JSON in OUTDIR), a main-thread profile of one prediction,
#        benchmarks/precision_layout.py and benchmarks/train_throughput.py (paper preset)
#        on CUDA: the figures issue 15 asks for (docs/performance.md)
# shared: one scene predicted by 2 torchrun processes on the GPU vs one process
#
# On a bare CUDA image (torch, torchvision, lightning, timm, typer present; no GDAL stack),
# from the repository root: download the missing wheels for its Python where pip works
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     torchgeo==0.8.1 rasterio==1.4.4 affine cligj click-plugins kornia==0.9.0 kornia-rs \
#     shapely==2.2.0 pyproj geopandas==1.2.0
# then there: pip install --no-deps --no-index --target /tmp/site .whl/*.whl;
# ln -s ../cli geoidec/cli; ln -s ../configs geoidec/configs (the installed package layout);
# export PYTHONPATH=$PWD:/tmp/site. Keep the image's typer (ours needs pydantic).
set -uo pipefail
OUT=${1:?usage: gpu_check.sh OUTDIR [tests|train|bench|all]}
WHAT=${2:-all}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
W=$(mktemp -d)
stamp() { echo "== $(date +%T) $*"; }
# wall seconds of a command (no /usr/bin/time on bare GPU images)
wall() { local label=$1 t0=$EPOCHREALTIME; shift; "$@"; echo "$label: $(python3 -c "print(f'{$EPOCHREALTIME - $t0:.1f}')") s wall"; }

stamp environment
nvidia-smi -L
$PY -c "import torch, torchgeo, rasterio, kornia, lightning; print('torch', torch.__version__, \
'cuda', torch.version.cuda, torch.cuda.get_device_name(0), '| torchgeo', torchgeo.__version__, \
'| rasterio', rasterio.__version__, '| kornia', kornia.__version__, '| lightning', \
lightning.__version__)"

if [[ $WHAT == tests || $WHAT == all ]]; then
    stamp "test suite with CUDA visible"
    $PY -m pytest -q -p no:cacheprovider -n 8 tests 2>&1 | tail -40
fi

if [[ $WHAT == train || $WHAT == all ]]; then
    G="$PY -m geoidec.cli.main"
    stamp sample
    $G samples isprs --out "$W/sample" --size 384 --resolution 0.1
    stamp "finetune 4-1 on cuda (precision auto = 16-mixed)"
    wall train $G train isprs --root "$W/sample" --steps 4-1 --preset cpu \
        --device cuda --out "$W/ft" --quiet
    stamp "idec 4-1 on cuda, sharing step 0"
    wall train $G train isprs --root "$W/sample" --steps 4-1 --preset cpu \
        --device cuda --method idec --step0-from "$W/ft" --out "$W/idec" --quiet
    stamp "idec 4-1 on cuda through torchrun (one process: the launcher path, no DDP)"
    $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m geoidec.cli.main train \
        isprs --root "$W/sample" --steps 4-1 --preset cpu --device cuda --method idec \
        --step0-from "$W/ft" --out "$W/idec-ddp" --quiet --iterations 100
    stamp compare
    $G compare "$W/ft" "$W/idec" "$W/idec-ddp"
    stamp "evaluate step 1 on cuda"
    $G evaluate "$W/idec" --step 1 --device cuda
    stamp "predict on cuda and on cpu"
    scene=$(ls "$W"/sample/2_Ortho_RGB/*.tif | head -1)
    $G predict "$scene" --model "$W/idec" --out "$W/cuda.tif" \
        --device cuda --confidence --preview
    $G predict "$scene" --model "$W/idec" --out "$W/cpu.tif" \
        --device cpu
    $PY - "$W/cuda.tif" "$W/cpu.tif" <<'EOF'
import sys

import numpy as np
import rasterio

with rasterio.open(sys.argv[1]) as a, rasterio.open(sys.argv[2]) as b:
    x, y = a.read(1), b.read(1)
    same = a.crs == b.crs and a.transform == b.transform and a.shape == b.shape
    print(f"cuda vs cpu class maps: same grid {same}, pixels agreeing "
          f"{100 * (x == y).mean():.3f}%, colormap {bool(a.colormap(1))}")
EOF
    cp "$W/idec/report.md" "$OUT/idec_report.md" 2>/dev/null
fi

if [[ $WHAT == bench || $WHAT == all ]]; then
    stamp "step cost on cuda"
    $PY benchmarks/step_cost.py --device cuda --iterations 40
    $PY benchmarks/step_cost.py --device cuda --iterations 40 --backbone resnet101 --aspp 256 \
        --tile 512 --batch-size 12
    stamp "predict benchmark on cuda"
    $PY benchmarks/predict.py --device cuda --sizes 2000 8000 --workdir "$W/bench" \
        --batch-size 32 --json "$OUT/predict_mobilenet.json"
    $PY benchmarks/predict.py --device cuda --sizes 8000 --workdir "$W/bench" \
        --batch-size 16 --backbone resnet101 --aspp 256 --json "$OUT/predict_resnet101.json"
    stamp "main-thread profile of one resnet101 prediction, 8,000^2 (top 30 by own time)"
    $PY -m cProfile -o "$OUT/predict_resnet101.prof" -m geoidec.cli.main predict \
        "$W/bench/scene_8000.tif" --model "$W/bench/bench_resnet101_256.pt" --device cuda \
        --batch-size 16 --confidence --out "$W/prof.tif" --quiet
    $PY -c "import pstats, sys; pstats.Stats(sys.argv[1]).sort_stats('tottime').print_stats(30)" \
        "$OUT/predict_resnet101.prof" | tail -45
    stamp "training throughput on cuda (paper preset)"
    $PY benchmarks/train_throughput.py --device cuda --batch-size 12 --iterations 40 \
        --workdir "$W/train" --json "$OUT/train_throughput.json"
    stamp "precision and memory layout: resnet101, 512 px, batch 12 (add --compile: minutes)"
    $PY benchmarks/precision_layout.py --device cuda --iterations 10 \
        --json "$OUT/precision_layout.json"
fi
if [[ $WHAT == shared || $WHAT == all ]]; then
    G="$PY -m geoidec.cli.main"
    stamp "one scene shared by 2 torchrun processes (cuda) vs one process"
    $PY benchmarks/predict.py --device cuda --sizes 3000 --workdir "$W/shared" >/dev/null
    scene="$W/shared/scene_3000.tif"
    ckpt="$W/shared/bench_mobilenet_v3_small_64.pt"
    wall "one process" $G predict "$scene" --model "$ckpt" --device cuda \
        --out "$W/one.tif" --quiet --confidence
    wall "two processes" $PY -m torch.distributed.run --standalone \
        --nproc_per_node 2 -m geoidec.cli.main predict "$scene" --model "$ckpt" \
        --device cuda --out "$W/two.tif" --quiet --confidence
    $PY - "$W/one.tif" "$W/two.tif" <<'EOF'
import sys

import numpy as np
import rasterio

for suffix in ("", "_confidence"):
    a_path, b_path = (p.replace(".tif", f"{suffix}.tif") for p in sys.argv[1:3])
    with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
        x, y = a.read(1), b.read(1)
        print(f"{suffix or 'classes'}: same grid {a.transform == b.transform}, identical "
              f"{np.array_equal(x, y)}, agreeing {100 * (x == y).mean():.4f}%")
EOF
    echo "part files left: $(ls -a "$W" | grep -c part)"
fi
stamp done
