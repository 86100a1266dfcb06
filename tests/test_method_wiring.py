"""How each method wires its loss terms: which pixels the feature distillation keeps, the
division of the logit distillation by the old classes, the classes ARCL anchors on the old
model, when IDEC's thresholds are refreshed, and what uncertain pixels become. The loss
functions themselves are checked against hand values in test_losses.py; here they are
replaced by recorders so that only the wiring is under test."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from geoidec.config import MethodConfig
from geoidec.constants import IGNORE_INDEX
from geoidec.losses import unbiased as unbiased_mod
from geoidec.methods import Batch, StepPlan, build_method
from geoidec.methods import idec as idec_mod
from geoidec.models import SegOutput, build_model
from geoidec.tasks import TaskSchedule

NAMES = ("a", "b", "c", "d")  # 2-2: old = background, a, b; new = c, d
NUM_OLD = 3


def _plan() -> StepPlan:
    schedule = TaskSchedule.parse("2-2", NAMES)
    return build_method(MethodConfig(name="idec")).plan(schedule)[1]


def _models() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    old = build_model("mobilenet_v3_small", [NUM_OLD], aspp_channels=16).eval()
    new = build_model("mobilenet_v3_small", [NUM_OLD], aspp_channels=16)
    new.load_state_dict(old.state_dict())
    new.add_step(2)
    return new, old


def _target() -> torch.Tensor:
    """(2, 32, 32): background left half, new class 3 top right, 4 bottom right, a few
    ignored pixels."""
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, :16, 16:] = 3
    target[:, 16:, 16:] = 4
    target[:, 0, 0] = IGNORE_INDEX
    return target


def _old_logits(confident: float, uncertain: float) -> torch.Tensor:
    """Old logits (2, 3, 32, 32): rows 0-7 confidently class 1, rows 8-15 class 2 with low
    confidence, rows 16-31 background."""
    logits = torch.zeros(2, NUM_OLD, 32, 32)
    logits[:, 1, :8] = confident
    logits[:, 2, 8:16] = uncertain
    logits[:, 0, 16:] = confident
    return logits


def _batch(method: Any, global_step: int = 0, old_logits: torch.Tensor | None = None) -> Batch:
    new, old = _models()
    x = torch.randn(2, 3, 32, 32)
    out, old_out = new(x), old(x)
    if old_logits is not None:
        old_out = SegOutput(old_logits, old_out.features)
    return Batch(x, _target(), out, old_out, _plan(), new, old, global_step=global_step)


def _idec(**settings: Any) -> Any:
    method = build_method(MethodConfig(name="idec", **settings))
    method.start_step(_plan(), NUM_OLD)
    return method


def test_feature_kd_mask_drops_only_new_class_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def record(new: Any, old: Any, weights: Any, distance: str, mask: torch.Tensor,
               alpha: float) -> torch.Tensor:
        seen["mask"], seen["weights"], seen["distance"] = mask, weights, distance
        return torch.tensor(1.0)

    monkeypatch.setattr(idec_mod, "feature_distillation", record)
    method = _idec(pseudo_labels=False, arcl=False, logit_kd=False, lambda_feat_kd=0.25)
    terms = method.losses(_batch(method))
    assert terms["loss_feat_kd"].item() == pytest.approx(0.25)
    expected = torch.ones(2, 32, 32)
    expected[:, :, 16:] = 0.0  # the new classes 3 and 4 may drift
    assert torch.equal(seen["mask"], expected)  # ignored pixel (0, 0) keeps the old features
    assert seen["weights"] == {"layer1": 0.5, "layer2": 1.0, "layer3": 2.0, "aspp": 1.0}
    assert seen["distance"] == "pod"


@pytest.mark.parametrize("name", ["idec", "mib"])
def test_logit_kd_is_divided_by_the_old_classes(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    def one(new: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
        assert old.shape[1] == NUM_OLD and new.shape[1] == NUM_OLD + 2
        return torch.tensor(1.0)

    # both methods take MiB's scaled term from the losses (losses.mib_logit_distillation)
    monkeypatch.setattr(unbiased_mod, "unbiased_distillation", one)
    settings = {"feature_kd": False, "arcl": False} if name == "idec" else {}
    method = build_method(MethodConfig(name=name, lambda_logit_kd=6.0, **settings))
    method.start_step(_plan(), NUM_OLD)
    terms = method.losses(_batch(method))
    assert terms["loss_logit_kd"].item() == pytest.approx(6.0 / NUM_OLD)


def test_arcl_anchors_every_old_class_background_included(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def record(new_emb: torch.Tensor, new_img: torch.Tensor, new_cls: torch.Tensor,
               old_emb: torch.Tensor, old_img: torch.Tensor, old_cls: torch.Tensor,
               old_classes: list[int], temperature: float) -> torch.Tensor:
        seen.update(old_classes=old_classes, new_cls=new_cls.tolist(),
                    temperature=temperature, grad=new_emb.requires_grad,
                    old_grad=old_emb.requires_grad)
        return torch.tensor(2.0)

    monkeypatch.setattr(idec_mod, "arcl_infonce", record)
    method = _idec(pseudo_labels=False, feature_kd=False, logit_kd=False, lambda_arcl=0.5)
    terms = method.losses(_batch(method))
    assert terms["loss_arcl"].item() == pytest.approx(1.0)
    assert seen["old_classes"] == [0, 1, 2]
    assert seen["new_cls"] == [0, 3, 4, 0, 3, 4]  # (image, class) regions of both images
    assert seen["grad"] and not seen["old_grad"] and seen["temperature"] == 0.1


def test_thresholds_refresh_once_per_optimiser_step(monkeypatch: pytest.MonkeyPatch) -> None:
    refreshed: list[int] = []
    original = idec_mod.DynamicThresholds.thresholds

    def counting(self: Any) -> torch.Tensor:
        refreshed.append(len(calls))
        return original(self)

    monkeypatch.setattr(idec_mod.DynamicThresholds, "thresholds", counting)
    method = _idec(feature_kd=False, logit_kd=False, arcl=False, pseudo_update_every=2)
    logits = _old_logits(4.0, 1.0)
    calls: list[int] = []
    for step in (0, 0, 1, 1, 2, 2, 3, 3, 4, 4):  # two micro-batches per optimiser step
        calls.append(step)
        method.losses(_batch(method, global_step=step, old_logits=logits))
    # refreshed at the first micro-batch of optimiser steps 0, 2 and 4 only
    assert refreshed == [1, 5, 9]
    hist = method.thresholds.counts()
    background = int((_target() == 0).sum())
    assert int(hist.sum()) == 10 * background  # every micro-batch is counted


@pytest.mark.parametrize(("mode", "uncertain", "expected"), [
    ("dynamic", "auto", IGNORE_INDEX),
    ("fixed", "auto", 0),
    ("dynamic", "background", 0),
    ("fixed", "ignore", IGNORE_INDEX),
])
def test_uncertain_background_pixels(mode: str, uncertain: str, expected: int) -> None:
    method = _idec(feature_kd=False, logit_kd=False, arcl=False, pseudo_label_mode=mode,
                   uncertain=uncertain, pseudo_fixed_threshold=0.7)
    # class 1 rows: softmax 0.965 (confident); class 2 rows: 0.58 (below 0.7 and the 0.9 cap)
    batch = _batch(method, old_logits=_old_logits(4.0, 1.0))
    target = method._target(batch, batch.old_out.logits)
    assert (target[:, 1:8, :16] == 1).all()  # confident old class 1 -> pseudo-label
    assert (target[:, 8:16, :16] == expected).all()  # uncertain old class 2
    assert (target[:, 16:, :16] == 0).all()  # the old model's background stays background
    assert torch.equal(target[:, :, 16:], _target()[:, :, 16:])  # new classes untouched
    stats = method.step_stats()
    assert stats["pseudo_labels"] == {1: 2 * (8 * 16 - 1), 2: 0}  # rows 0-7 but pixel (0, 0)
    assert stats["uncertain_pixels"] == 2 * 8 * 16
    assert stats["uncertain_label"] == ("ignore" if expected == IGNORE_INDEX else "background")


def test_pseudo_background_judges_the_old_background_by_its_threshold() -> None:
    logits = _old_logits(4.0, 1.0)
    logits[:, 0, 24:] = 0.3  # rows 24-31: background, but unsure (softmax 0.40)
    for judged, expected in ((False, 0), (True, IGNORE_INDEX)):
        method = _idec(feature_kd=False, logit_kd=False, arcl=False, pseudo_label_mode="fixed",
                       uncertain="ignore", pseudo_background=judged)
        batch = _batch(method, old_logits=logits)
        target = method._target(batch, batch.old_out.logits)
        assert (target[:, 16:24, :16] == 0).all()  # confident background (0.96) stays
        assert (target[:, 24:, :16] == expected).all()
        assert method.step_stats()["pseudo_labels"][1] == 2 * (8 * 16 - 1)
