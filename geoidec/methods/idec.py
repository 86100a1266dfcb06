"""IDEC (Zhao, Yuan, Shi, TPAMI 2023): Inherit with Distillation and Evolve with Contrast.

At step t > 0, with the frozen step t-1 model run on the same augmented batch:

    L = L_cls(pseudo-labelled target)
      + lambda_fkd * L_feat   (DADA: dense feature distillation, old-class emphasis mask)
      + lambda_lkd * L_logit  (unbiased logit distillation)
      + lambda_cl  * L_arcl   (asymmetric region-wise contrast)

Pseudo-labels are dynamic and class-specific: per old class, the threshold is a quantile of
the running confidence of the old model's predictions of that class (summed over DDP
processes), refreshed every ``pseudo_update_every`` optimiser steps; uncertain background
becomes ignore (``method.uncertain``; the fixed-threshold mode of the authors' code keeps it
as background). Each term has a switch
(``feature_kd``, ``logit_kd``, ``pseudo_labels``, ``arcl``) for the ablation. docs/method.md
lists every assumption the paper leaves open.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from geoidec.config import MethodConfig
from geoidec.constants import IGNORE_INDEX
from geoidec.losses import (
    IDEC_LAYER_WEIGHTS,
    DynamicThresholds,
    arcl_infonce,
    arcl_triplet,
    binary_cross_entropy,
    feature_distillation,
    mib_logit_distillation,
    pseudo_label,
    region_embeddings,
)
from geoidec.methods.base import Batch, RunningThresholds, StepPlan
from geoidec.methods.finetune import Finetune

LAYERS = tuple(IDEC_LAYER_WEIGHTS)
"""Feature maps DADA distils (``method.feat_kd_weights`` gives their weights in this order)."""


class IDEC(RunningThresholds, Finetune):
    name = "idec"
    needs_old_model = True

    def __init__(self, config: MethodConfig) -> None:
        super().__init__(config)
        #: Running per-class confidence histograms (dynamic mode, steps t > 0).
        self.thresholds: DynamicThresholds | None = None
        #: Thresholds in use, per old class (index 0, background, unused).
        self.current: torch.Tensor | None = None
        #: Optimiser step at which ``current`` was last refreshed.
        self.refreshed_at = -1
        #: Pixels pseudo-labelled per old class, uncertain pixels, labelled pixels seen.
        self.counts = torch.zeros(1, dtype=torch.long)
        self.uncertain = 0
        self.labelled = 0

    def start_step(self, plan: StepPlan, num_old: int) -> None:
        super().start_step(plan, num_old)
        cfg = self.config
        self.thresholds = (
            DynamicThresholds(num_old, quantile=cfg.pseudo_quantile,
                              max_threshold=cfg.pseudo_max_threshold)
            if num_old and cfg.pseudo_label_mode == "dynamic" else None
        )
        self.current = None
        self.refreshed_at = -1
        self.counts = torch.zeros(max(num_old, 1), dtype=torch.long)
        self.uncertain = 0
        self.labelled = 0

    @property
    def uncertain_label(self) -> int:
        """Label of uncertain background pixels: ignore (the paper's dynamic rule) or
        background (the authors' fixed rule), unless ``method.uncertain`` says which."""
        choice = self.config.uncertain
        if choice == "auto":
            choice = "background" if self.config.pseudo_label_mode == "fixed" else "ignore"
        return 0 if choice == "background" else IGNORE_INDEX

    def _taus(self, old_logits: torch.Tensor, background: torch.Tensor,
              global_step: int) -> torch.Tensor:
        """Per-class thresholds: counted on every micro-batch, refreshed every
        ``pseudo_update_every`` optimiser steps (micro-batches of one step share it)."""
        cfg = self.config
        if cfg.pseudo_label_mode == "fixed":
            return torch.full((self.num_old,), cfg.pseudo_fixed_threshold)
        return self._refreshed(self.thresholds, old_logits, background, global_step)

    def _target(self, batch: Batch, old_logits: torch.Tensor) -> torch.Tensor:
        if not self.config.pseudo_labels:
            return batch.target
        taus = self._taus(old_logits, batch.target == 0, batch.global_step)
        target, stats = pseudo_label(batch.target, old_logits, taus.to(old_logits.device),
                                     uncertain_label=self.uncertain_label,
                                     include_background=self.config.pseudo_background)
        self.counts += stats["pseudo"].cpu()
        self.uncertain += int(stats["uncertain"])
        self.labelled += int((batch.target != IGNORE_INDEX).sum())
        return target

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        if batch.old_out is None or not self.num_old:
            return super().losses(batch)
        cfg = self.config
        new, old = batch.out, batch.old_out
        old_logits = old.logits.detach()
        target = self._target(batch, old_logits)
        if cfg.classification == "bce":
            terms = {"loss_ce": binary_cross_entropy(new.logits, target)}
        else:
            terms = {"loss_ce": F.cross_entropy(new.logits, target, ignore_index=IGNORE_INDEX)}
        if cfg.feature_kd:
            mask = None
            if cfg.feat_kd_mask:
                # every pixel but the new classes' (which may drift): background, old
                # classes, uncertain and unlabelled pixels keep the old features
                mask = ((target < self.num_old) | (target == IGNORE_INDEX)).float()
            weights = dict(zip(LAYERS, cfg.feat_kd_weights, strict=True))
            terms["loss_feat_kd"] = cfg.lambda_feat_kd * feature_distillation(
                new.features, old.features, weights, distance=cfg.feat_kd_distance, mask=mask,
                alpha=cfg.channel_softmax_alpha,
            )
        if cfg.logit_kd:
            terms["loss_logit_kd"] = cfg.lambda_logit_kd * mib_logit_distillation(
                new.logits, old_logits, temperature=cfg.kd_temperature)
        if cfg.arcl and batch.model is not None and batch.old_model is not None:
            terms["loss_arcl"] = cfg.lambda_arcl * self._arcl(batch, target)
        return terms

    def _arcl(self, batch: Batch, target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        assert batch.model is not None and batch.old_model is not None
        assert batch.old_out is not None
        new_proj = batch.model.project(batch.out.features["aspp"])
        with torch.no_grad():
            old_proj = batch.old_model.project(batch.old_out.features["aspp"])
        new_emb, new_img, new_cls = region_embeddings(new_proj, target)
        old_emb, old_img, old_cls = region_embeddings(old_proj, target)
        # every class the old model knows anchors on it, background included
        old_classes = list(range(self.num_old))
        if cfg.arcl_loss == "triplet":
            return arcl_triplet(new_emb, new_img, new_cls, old_emb, old_img, old_cls,
                                old_classes, margin=cfg.arcl_margin)
        return arcl_infonce(new_emb, new_img, new_cls, old_emb, old_img, old_cls, old_classes,
                            temperature=cfg.arcl_temperature)

    def step_stats(self) -> dict[str, Any]:
        """Pseudo-labelled pixels and last thresholds per old class (model index), pixels
        left uncertain (and what they became), labelled pixels seen."""
        if not self.num_old or not self.config.pseudo_labels:
            return {}
        taus = self.current.tolist() if self.current is not None else []
        old = range(1, self.num_old)
        return {
            "pseudo_labels": {c: int(self.counts[c]) for c in old},
            "uncertain_pixels": self.uncertain,
            "uncertain_label": "background" if self.uncertain_label == 0 else "ignore",
            "labelled_pixels": self.labelled,
            "thresholds": {c: round(float(taus[c]), 4) for c in old if c < len(taus)},
        }
