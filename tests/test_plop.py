"""How PLOP wires its terms: which maps the local POD distils and with which factors, the
sqrt(K / K_new) schedule, the entropy rule that also sends uncertain background to ignore, the
adaptive factor of the cross-entropy, when the thresholds are refreshed and what step_stats
reports. The POD distance itself is checked against hand values in test_losses.py; here it
is replaced by a recorder so that only the wiring is under test."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from geoidec.config import MethodConfig
from geoidec.constants import IGNORE_INDEX
from geoidec.losses import entropy_pseudo_label, fold_extra_channels
from geoidec.methods import Batch, StepPlan, build_method
from geoidec.methods import plop as plop_mod
from geoidec.models import SegOutput, build_model
from geoidec.tasks import TaskSchedule

NAMES = ("a", "b", "c", "d")
NUM_OLD = 3  # background, a, b


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _plan(steps: str = "2-2") -> StepPlan:
    return build_method(MethodConfig(name="plop")).plan(TaskSchedule.parse(steps, NAMES))[1]


def _models(n_new: int = 2) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    old = build_model("mobilenet_v3_small", [NUM_OLD], aspp_channels=16).eval()
    new = build_model("mobilenet_v3_small", [NUM_OLD], aspp_channels=16)
    new.load_state_dict(old.state_dict())
    new.add_step(n_new)
    return new, old


def _target(n_new: int = 2) -> torch.Tensor:
    """(2, 32, 32): background left half, new class 3 top right, 4 (3 with one new class)
    bottom right, one ignored pixel in the new-class half."""
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, :16, 16:] = 3
    target[:, 16:, 16:] = 2 + n_new
    target[:, 0, 16] = IGNORE_INDEX
    return target


def _entropy(z: float) -> float:
    """Normalised entropy of softmax((z, 0, 0)) (3 old classes), by hand."""
    p, q = math.exp(z) / (math.exp(z) + 2), 1 / (math.exp(z) + 2)
    return -(p * math.log(p) + 2 * q * math.log(q)) / math.log(3)


CERTAIN = {1: 6.0, 2: 5.0, 0: 4.0}  # one confident logit per old class, background included
UNSURE = 0.5


def _old_logits() -> torch.Tensor:
    """Old logits (2, 3, 32, 32), the old model's class c scoring z and the others 0.
    Rows 0-7: class 1, confident in image 0, unsure in image 1; rows 8-11 / 12-15: class 2
    confident / unsure; rows 16-23 / 24-31: background confident / unsure. Every class has
    as many confident as unsure background pixels, so its median is the upper edge of the
    confident pixels' histogram bin."""
    logits = torch.zeros(2, NUM_OLD, 32, 32)
    logits[0, 1, :8] = CERTAIN[1]
    logits[1, 1, :8] = UNSURE
    logits[:, 2, 8:12] = CERTAIN[2]
    logits[:, 2, 12:16] = UNSURE
    logits[:, 0, 16:24] = CERTAIN[0]
    logits[:, 0, 24:] = UNSURE
    return logits


def _expected_target() -> torch.Tensor:
    expected = _target()
    left = expected[:, :, :16]
    left[0, :8] = 1
    left[1, :8] = IGNORE_INDEX
    left[:, 8:12] = 2
    left[:, 12:16] = IGNORE_INDEX
    left[:, 16:24] = 0
    left[:, 24:] = IGNORE_INDEX  # uncertain background -> ignore (PLOP's code)
    return expected


def _batch(steps: str = "2-2", n_new: int = 2, global_step: int = 0,
           old_logits: torch.Tensor | None = None) -> Batch:
    new, old = _models(n_new)
    x = torch.randn(2, 3, 32, 32)
    out, old_out = new(x), old(x)
    if old_logits is not None:
        old_out = SegOutput(old_logits, old_out.features)
    return Batch(x, _target(n_new), out, old_out, _plan(steps), new, old,
                 global_step=global_step)


def _plop(steps: str = "2-2", **settings: Any) -> Any:
    method = build_method(MethodConfig(name="plop", **settings))
    method.start_step(_plan(steps), NUM_OLD)
    return method


# ------------------------------------------------------------------------------ POD wiring
@pytest.mark.parametrize(("steps", "n_new"), [("2-2", 2), ("2-1-1", 1)])
def test_pod_distils_every_stage_aspp_and_folded_logits(
    monkeypatch: pytest.MonkeyPatch, steps: str, n_new: int
) -> None:
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(f_new: torch.Tensor, f_old: torch.Tensor) -> torch.Tensor:
        calls.append((f_new, f_old))
        return torch.tensor(1.0)

    monkeypatch.setattr(plop_mod, "local_pod_distance", record)
    method = _plop(steps, lambda_pod=0.02, lambda_pod_logits=0.003)
    batch = _batch(steps, n_new)
    terms = method.losses(batch)
    assert set(terms) == {"loss_ce", "loss_feat_kd"}
    # layer1-4, aspp and the logits before upsampling (PLOP's sem_logits_small), in that
    # order (mobilenet_v3_small, 32 x 32 input)
    shapes = [(tuple(a.shape), tuple(b.shape)) for a, b in calls]
    channels = [16, 24, 48, 576, 16, NUM_OLD]
    sizes = [8, 4, 2, 2, 2, 2]
    assert shapes == [((2, c, s, s), (2, c, s, s)) for c, s in zip(channels, sizes, strict=True)]
    names = ("layer1", "layer2", "layer3", "layer4", "aspp")
    for (f_new, f_old), name in zip(calls, names, strict=False):
        assert f_new is batch.out.features[name]
        assert torch.equal(f_old, batch.old_out.features[name])
    # the logits: the new model's background plus new classes folded into one channel
    logits_new, logits_old = calls[-1]
    z = batch.out.features["logits"]
    assert torch.allclose(logits_new[:, 0], z[:, 0] + z[:, NUM_OLD:].sum(1))
    assert torch.equal(logits_new[:, 1:], z[:, 1:NUM_OLD])
    assert torch.equal(logits_new, fold_extra_channels(z, NUM_OLD))
    assert logits_new.requires_grad and not logits_old.requires_grad
    assert torch.equal(logits_old, batch.old_out.features["logits"])
    # factors and schedule sqrt(K / K_new), divided by the 6 entries
    schedule = math.sqrt((NUM_OLD + n_new) / n_new)
    expected = (5 * 0.02 + 0.003) * schedule / 6
    assert terms["loss_feat_kd"].item() == pytest.approx(expected, rel=1e-6)


def test_default_factors_and_real_pod_trains_only_the_new_model() -> None:
    cfg = MethodConfig(name="plop")
    assert (cfg.lambda_pod, cfg.lambda_pod_logits, cfg.plop_adaptive_factor) == (
        0.01, 0.0005, True)
    assert plop_mod.pod_factors(cfg) == {"layer1": 0.01, "layer2": 0.01, "layer3": 0.01,
                                         "layer4": 0.01, "aspp": 0.01, "logits": 0.0005}
    method = _plop()
    batch = _batch()
    terms = method.losses(batch)
    pod = terms["loss_feat_kd"]
    assert pod.dtype == torch.float32 and torch.isfinite(pod) and pod.item() > 0
    pod.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in batch.model.parameters())
    assert all(p.grad is None for p in batch.old_model.parameters())


def test_step0_is_plain_cross_entropy() -> None:
    method = build_method(MethodConfig(name="plop"))
    method.start_step(build_method(MethodConfig(name="plop")).plan(
        TaskSchedule.parse("2-2", NAMES))[0], 0)
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", [NUM_OLD], aspp_channels=16)
    x = torch.randn(2, 3, 32, 32)
    target = torch.randint(0, NUM_OLD, (2, 32, 32))
    target[:, 0] = IGNORE_INDEX
    out = model(x)
    terms = method.losses(Batch(x, target, out, None, method.step_plan, model))
    assert set(terms) == {"loss_ce"}
    expected = F.cross_entropy(out.logits, target, ignore_index=IGNORE_INDEX)
    assert terms["loss_ce"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert method.step_stats() == {}


# ------------------------------------------------------------------------------ pseudo-labels
def test_entropy_rule_sends_uncertain_background_to_ignore() -> None:
    method = _plop()
    batch = _batch(old_logits=_old_logits())
    target = method._target(batch, batch.old_out.logits)
    assert torch.equal(target, _expected_target())
    # the thresholds: median of each class = upper edge of its confident pixels' bin
    taus = {c: (math.floor(100 * _entropy(z)) + 1) / 100 for c, z in CERTAIN.items()}
    assert taus == {1: 0.04, 2: 0.08, 0: 0.17}
    assert method.current.tolist() == pytest.approx([taus[0], taus[1], taus[2]], abs=1e-6)
    assert _entropy(UNSURE) > max(taus.values())
    # without include_background (IDEC's rule) the old model's background stays background
    kept, _ = entropy_pseudo_label(batch.target, batch.old_out.logits, method.current)
    assert (kept[:, 24:, :16] == 0).all()
    assert torch.equal(kept[:, :24], target[:, :24])


def test_step_stats_keys_by_model_index_background_included() -> None:
    method = _plop()
    method.losses(_batch(old_logits=_old_logits()))
    stats = method.step_stats()
    assert set(stats) == {"pseudo_labels", "uncertain_pixels", "entropy_thresholds"}
    assert stats["pseudo_labels"] == {1: 8 * 16, 2: 2 * 4 * 16}
    # image 1's unsure class-1 rows, both images' unsure class-2 and background rows
    assert stats["uncertain_pixels"] == 8 * 16 + 2 * 4 * 16 + 2 * 8 * 16
    assert stats["entropy_thresholds"] == {0: 0.17, 1: 0.04, 2: 0.08}


def test_thresholds_refresh_once_per_optimiser_step(monkeypatch: pytest.MonkeyPatch) -> None:
    refreshed: list[int] = []
    original = plop_mod.EntropyMedians.thresholds

    def counting(self: Any) -> torch.Tensor:
        refreshed.append(len(calls))
        return original(self)

    monkeypatch.setattr(plop_mod.EntropyMedians, "thresholds", counting)
    monkeypatch.setattr(plop_mod, "local_pod_distance", lambda a, b: torch.tensor(0.0))
    method = _plop(pseudo_update_every=2)
    logits = _old_logits()
    calls: list[int] = []
    for step in (0, 0, 1, 1, 2, 2, 3, 3, 4, 4):  # two micro-batches per optimiser step
        calls.append(step)
        method.losses(_batch(global_step=step, old_logits=logits))
    assert refreshed == [1, 5, 9]  # first micro-batch of optimiser steps 0, 2 and 4
    background = int((_target() == 0).sum())
    assert int(method.medians.counts().sum()) == 10 * background  # every micro-batch counted
    method.start_step(_plan(), NUM_OLD)  # a new step starts afresh
    assert method.current is None and method.refreshed_at == -1 and method.uncertain == 0
    assert int(method.medians.counts().sum()) == 0 and int(method.counts.sum()) == 0


# ------------------------------------------------------------------------------ adaptive factor
@pytest.mark.parametrize("adaptive", [True, False])
def test_cross_entropy_adaptive_factor_and_mean_over_all_pixels(
    monkeypatch: pytest.MonkeyPatch, adaptive: bool
) -> None:
    monkeypatch.setattr(plop_mod, "local_pod_distance", lambda a, b: torch.tensor(0.0))
    method = _plop(plop_adaptive_factor=adaptive)
    batch = _batch(old_logits=_old_logits())
    loss = method.losses(batch)["loss_ce"]
    # background pixels per image: the 32 x 16 left half. Kept a label (certain):
    # image 0: class 1 rows 0-7 (128) + class 2 rows 8-11 (64) + background rows 16-23 (128)
    # image 1: class 2 rows 8-11 (64) + background rows 16-23 (128)
    factors = [320 / (512 + 1e-6), 192 / (512 + 1e-6)] if adaptive else [1.0, 1.0]
    ce = F.cross_entropy(batch.out.logits, _expected_target(), ignore_index=IGNORE_INDEX,
                         reduction="none")  # 0 on ignored pixels
    total = sum(f * ce[b].sum() for b, f in enumerate(factors))
    expected = total / (2 * 32 * 32)  # PLOP: mean over all pixels, ignored ones included
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert factors[0] != factors[1] or not adaptive


def test_adaptive_factor_hand_values() -> None:
    target = torch.tensor([[[0, 0, 0, 0]], [[0, 3, 3, 255]], [[3, 3, 4, 255]]])
    labelled = torch.tensor([[[1, 255, 0, 2]], [[255, 3, 3, 255]], [[3, 3, 4, 255]]])
    got = plop_mod.adaptive_factor(target, labelled)
    # 3 of 4 background pixels kept a label; 0 of 1; no background: 0 (PLOP's num / (den + eps))
    assert got.tolist() == pytest.approx([3 / (4 + 1e-6), 0.0, 0.0])
