"""What the engine does to the networks during an incremental step, checked from inside
``training_step``: the new model trains (BatchNorm included unless ``train.freeze_bn``), the
old model is in eval mode and leaves the step bit for bit as it came in, and the step-1
checkpoint's BatchNorm statistics move exactly when BatchNorm trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from conftest import run_cli
from torch import nn

from geoidec import methods as methods_pkg
from geoidec.methods import Batch
from geoidec.methods.idec import IDEC

TINY = ["--iterations", "3", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]


def _bn(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1)


def _layout(t: torch.Tensor) -> str:
    return "nhwc" if t.is_contiguous(memory_format=torch.channels_last) else "nchw"


class Spy(IDEC):
    """IDEC that records the modes it sees and keeps the old model it was given."""

    seen: ClassVar[list[dict[str, Any]]] = []
    old_models: ClassVar[list[nn.Module]] = []

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        if batch.old_model is not None:
            assert batch.model is not None
            Spy.seen.append({
                "new_training": batch.model.training,
                "new_bn_training": {m.training for m in _bn(batch.model)},
                "old_training": {m.training for m in batch.old_model.modules()},
                "layouts": {_layout(t) for t in (batch.image, _conv(batch.model).weight,
                                                 _conv(batch.old_model).weight)},
            })
            if not Spy.old_models:
                Spy.old_models.append(batch.old_model)
        return super().losses(batch)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[Spy]:
    monkeypatch.setitem(methods_pkg.METHODS, "idec", Spy)  # `--method idec` runs the spy
    Spy.seen.clear()
    Spy.old_models.clear()
    return Spy


def _train(root: Path, out: Path, *extra: str) -> None:
    result = run_cli(["train", "isprs", "--root", str(root), "--steps", "4-1", "--out",
                      str(out), "--method", "idec", *TINY, *extra])
    assert result.exit_code == 0, (result.output, result.exception)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _bn_stats(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_incremental_step_modes_and_frozen_old_model(
    fake_potsdam: Path, tmp_path: Path, spy: type[Spy], freeze_bn: bool
) -> None:
    out = tmp_path / "run"
    _train(fake_potsdam, out, "--set", f"train.freeze_bn={str(freeze_bn).lower()}")
    assert len(spy.seen) == 3  # three iterations of step 1, batch size 2
    for seen in spy.seen:
        assert seen["new_training"] is True
        assert seen["new_bn_training"] == {not freeze_bn}
        assert seen["old_training"] == {False}

    step0, step1 = (_state(out / "checkpoints" / f"step_{t}.pt") for t in (0, 1))
    # the old model the method saw is step 0's checkpoint, bit for bit, after the step
    old_state = spy.old_models[0].state_dict()
    assert set(old_state) == set(step0)
    for key, value in step0.items():
        assert torch.equal(old_state[key].cpu(), value), key

    # BatchNorm statistics of step 1 moved from step 0's exactly when BatchNorm trained
    before, after = _bn_stats(step0), _bn_stats(step1)
    assert before and set(before) == set(after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if freeze_bn:
        assert changed == []
    else:
        assert len(changed) == len(before)


def test_step0_trains_batchnorm_even_under_freeze_bn(
    fake_potsdam: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoidec.training import module as module_mod

    modes: list[set[bool]] = []
    original = module_mod.StepModule.training_step

    def recording(self: module_mod.StepModule, batch: Any, index: int) -> torch.Tensor:
        modes.append({m.training for m in _bn(self.model)})
        return original(self, batch, index)

    monkeypatch.setattr(module_mod.StepModule, "training_step", recording)
    result = run_cli(["train", "isprs", "--root", str(fake_potsdam), "--steps", "4-1", "--out",
                      str(tmp_path / "run"), "--method", "finetune", *TINY,
                      "--set", "train.freeze_bn=true"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert modes[:3] == [{True}] * 3  # step 0
    assert modes[3:] == [{False}] * 3  # step 1


@pytest.mark.parametrize("channels_last", [True, False])
def test_training_layout_follows_the_setting(
    fake_potsdam: Path, tmp_path: Path, spy: type[Spy], channels_last: bool
) -> None:
    """``train.channels_last`` (default false): the batch, the new and the old model are in
    the channels-last layout inside ``training_step``; false keeps the standard layout.
    Checkpoints are saved in the standard layout either way."""
    out = tmp_path / "run"
    _train(fake_potsdam, out, "--set", f"train.channels_last={str(channels_last).lower()}")
    assert spy.seen and {s2 for s in spy.seen for s2 in s["layouts"]} == {
        "nhwc" if channels_last else "nchw"}
    state = torch.load(out / "checkpoints" / "step_1.pt", weights_only=False)["state_dict"]
    assert all(t.is_contiguous() for t in state.values())
