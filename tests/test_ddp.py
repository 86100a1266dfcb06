"""Distributed training on CPU with two processes (gloo): forked by geoidec itself
(``--set train.devices=2``) and started by torchrun; both ranks end with the same weights, the
saved checkpoint is rank 0's, and the report is a single-process evaluation of it.

Tiny on purpose (3 iterations, 32 px chips): these tests check the bookkeeping, not accuracy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import free_port, report_without_timings, run_cli
from tiny_geotiffs import make_dataset

from geoidec.checkpoint import load_checkpoint
from geoidec.data.registry import load_dataset
from geoidec.evaluation.evaluate import evaluate_scenes
from geoidec.evaluation.summary import summarize
from geoidec.tasks import TaskSchedule
from geoidec.training.distributed import state_digest

TINY = ["--iterations", "3", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet",
        "--device", "cpu"]
DDP = ["--set", "train.devices=2", "--set", "train.strategy=ddp"]


@pytest.fixture(scope="module")
def dataset_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training and three test scenes: evaluation shards are uneven (2 + 1)."""
    return make_dataset(tmp_path_factory.mktemp("ddp_data"), train=2, test=3)


@pytest.fixture(scope="module")
def ddp_run(dataset_yaml: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    # One CPU thread per process, as the torchrun test sets: without OMP_NUM_THREADS,
    # Lightning gives forked workers cores // processes threads (8 on a 16-core machine),
    # which sums floats in another order than torchrun's one thread (seen on a 16-core host).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        result = run_cli(["train", dataset_yaml, "--steps", "2-1", "--out", out, *TINY, *DDP])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def test_both_ranks_hold_the_checkpointed_weights(ddp_run: Path) -> None:
    report = json.loads((ddp_run / "report.json").read_text())
    assert [e["train"]["processes"] for e in report["steps"]] == [2, 2]
    for step in (0, 1):
        ranks = json.loads((ddp_run / "logs" / f"step_{step}" / "ranks.json").read_text())
        assert len(ranks["digests"]) == 2
        assert len(set(ranks["digests"])) == 1, ranks
        saved = torch.load(ddp_run / "checkpoints" / f"step_{step}.pt", weights_only=True)
        assert state_digest(saved["state_dict"]) == ranks["digests"][0]
    assert not list((ddp_run / "checkpoints").glob("*.partial*"))


def test_report_is_a_single_process_evaluation_of_the_checkpoint(ddp_run: Path,
                                                                 dataset_yaml: Path) -> None:
    spec = load_dataset(str(dataset_yaml))
    task = json.loads((ddp_run / "task.json").read_text())
    schedule = TaskSchedule.from_dict(task["task"])
    report = json.loads((ddp_run / "report.json").read_text())
    for entry in report["steps"]:
        step = entry["step"]
        ckpt = load_checkpoint(ddp_run, step)
        cm = evaluate_scenes(ckpt.model, spec.scenes("test"), spec.decoder, ckpt.normalization,
                             schedule.eval_lut(step), tile=ckpt.tile_size, overlap=8,
                             batch_size=8, device=torch.device("cpu"))
        rows = (ddp_run / "metrics" / f"step_{step}_confusion.csv").read_text().splitlines()
        saved = np.array([[int(v) for v in r.split(",")[1:]] for r in rows[1:]])
        np.testing.assert_array_equal(cm.matrix, saved)
        names = [c.name for c in ckpt.classes]
        old = tuple(names.index(n) for n in entry["old_classes"])
        new = tuple(names.index(n) for n in entry["new_classes"])
        summary = summarize(cm.matrix, class_names=names, old=old, new=new,
                            include_background=spec.eval_background)
        assert summary["miou_all"] == pytest.approx(entry["miou_all"])
        assert summary["per_class_iou"] == pytest.approx(entry["per_class_iou"])


def test_torchrun_matches_the_forked_run(ddp_run: Path, dataset_yaml: Path,
                                         tmp_path: Path) -> None:
    """Every torchrun process runs the command; rank 0 alone writes and prints, evaluation
    is sharded over the ranks, and the result is the forked run's, bit for bit."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("GEOIDEC_DEBUG", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), "-m", "geoidec.cli.main", "train",
           str(dataset_yaml), "--steps", "2-1", "--out", str(out), *TINY,
           "--set", "train.devices=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1, proc.stdout
    assert report_without_timings(out) == report_without_timings(ddp_run)
    for step in (0, 1):
        ranks = json.loads((out / "logs" / f"step_{step}" / "ranks.json").read_text())
        assert len(set(ranks["digests"])) == 1
        theirs = json.loads((ddp_run / "logs" / f"step_{step}" / "ranks.json").read_text())
        assert ranks["digests"] == theirs["digests"]


def _histogram_rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from geoidec.losses import DynamicThresholds

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    try:
        gen = torch.Generator().manual_seed(rank)  # each process sees other pixels
        logits = torch.randn(2, 3, 8, 8, generator=gen) * 3
        hist = DynamicThresholds(3)
        hist.update(logits, mask=torch.ones(2, 8, 8, dtype=torch.bool))
        torch.save({"histogram": hist.histogram, "thresholds": hist.thresholds()},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_threshold_histograms_are_summed_over_processes(tmp_path: Path) -> None:
    from geoidec.losses import DynamicThresholds

    torch.multiprocessing.spawn(_histogram_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    expected = DynamicThresholds(3)
    for rank in (0, 1):  # the same batches in one process
        gen = torch.Generator().manual_seed(rank)
        expected.update(torch.randn(2, 3, 8, 8, generator=gen) * 3)
    for got in ranks:
        assert torch.equal(got["histogram"], expected.histogram)
        assert torch.equal(got["thresholds"], expected.thresholds())
    assert int(expected.histogram.sum()) == 2 * 2 * 8 * 8
