"""RunFolder: the one place that knows a run folder's paths and reads its files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geoidec.errors import DataError
from geoidec.run_folder import RunFolder


def test_paths_follow_the_documented_layout(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    assert run.checkpoint(2) == tmp_path / "checkpoints" / "step_2.pt"
    assert run.partial_checkpoint(1) == tmp_path / "checkpoints" / "step_1.partial.ckpt"
    assert run.step_metrics(0) == tmp_path / "metrics" / "step_0.csv"
    assert run.confusion_csv(3) == tmp_path / "metrics" / "step_3_confusion.csv"
    pseudo = run.step_metrics(1, "pseudo_labels")
    assert pseudo == tmp_path / "metrics" / "step_1_pseudo_labels.csv"
    assert run.scene_list(0) == tmp_path / "steps" / "step_0_scenes.txt"
    assert run.relative(run.figure("miou.png")) == "figures/miou.png"
    assert RunFolder.of_checkpoint(run.checkpoint(1)) == run
    loose = tmp_path / "elsewhere" / "step_1.pt"
    assert RunFolder.of_checkpoint(loose).path == tmp_path / "elsewhere"


def test_saved_steps_are_numeric_and_sorted(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.checkpoints.mkdir()
    for name in ("step_10.pt", "step_2.pt", "step_x.pt", "step_1.partial.ckpt", "notes.pt"):
        (run.checkpoints / name).write_bytes(b"")
    assert run.saved_steps() == [2, 10]
    assert run.has_checkpoints() and not run.is_finished_run()  # no report.json yet


def test_readers_give_one_line_errors(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    with pytest.raises(DataError, match=r"cannot resume .*: not a geoidec run folder \(no task"):
        run.read_task("cannot resume")
    with pytest.raises(DataError, match="no report.json in"):
        run.read_report()
    assert run.read_task_or_empty() == {} and run.read_config_or_empty() == {}
    assert run.read_report_if_any() is None
    run.report.write_text("{broken")
    with pytest.raises(DataError, match="the run folder is damaged"):
        run.read_report()
    run.report.write_text(json.dumps({"method": "idec"}))
    with pytest.raises(DataError, match="no 'steps' list"):
        run.read_report()


def test_confusion_and_scene_lists_read_back(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.metrics.mkdir()
    run.confusion_csv(1).write_text("truth\\pred,background,tree\nbackground,5,1\ntree,2,7\n")
    names, matrix = run.read_confusion(1)
    assert names == ["background", "tree"]
    np.testing.assert_array_equal(matrix, [[5, 1], [2, 7]])
    run.confusion_csv(2).write_text("truth\\pred,a,b\na,1,2\n")
    with pytest.raises(DataError, match="not a square confusion matrix"):
        run.read_confusion(2)
    run.steps_dir.mkdir()
    run.scene_list(1).write_text("b.tif\n\na.tif\n")
    run.scene_list(0).write_text("a.tif\n")
    assert run.read_scene_lists() == {0: ["a.tif"], 1: ["b.tif", "a.tif"]}
