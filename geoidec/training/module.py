"""The Lightning module that trains one incremental step with any method."""

from __future__ import annotations

from typing import cast

import lightning as L
import torch
from torch import nn

from geoidec.config import TrainConfig
from geoidec.data.normalization import Normalization
from geoidec.data.transforms import TrainAugmentation
from geoidec.methods import Batch, Method, StepPlan
from geoidec.models import SegmentationModel


class StepModule(L.LightningModule):
    """Trains ``model`` on one step; ``old_model`` (frozen, eval mode) feeds the method.

    Per batch: kornia augmentation on the device, standardisation, the new model's forward,
    the old model's forward (no gradient) when the method needs it, and the method's named
    losses, each logged (``loss_ce``, ...) and shown in the progress bar.

    Modes are set explicitly when the fit starts, whatever mode the models arrive in (the
    previous step's model arrives in eval mode, and Lightning keeps modes as it finds them):
    the new model trains, with its BatchNorm layers in eval mode at incremental steps under
    ``train.freeze_bn``; the old model is always in eval mode. The old model is kept out of
    the module tree: it is not trained, not saved in partial checkpoints (it is the previous
    step's checkpoint) and not wrapped by DDP.
    """

    def __init__(
        self,
        model: SegmentationModel,
        method: Method,
        plan: StepPlan,
        normalization: Normalization,
        augmentation: TrainAugmentation,
        train: TrainConfig,
        iterations: int,
        old_model: SegmentationModel | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.plan = plan
        self.augmentation = augmentation
        self.train_cfg = train
        self.iterations = iterations
        #: BatchNorm layers stay in eval mode (running statistics frozen) in this step.
        self.freeze_bn = bool(train.freeze_bn and plan.incremental)
        object.__setattr__(self, "_old_model", old_model)  # outside the module tree
        if old_model is not None:
            old_model.eval()
            old_model.requires_grad_(False)
        if plan.incremental and getattr(method.config, "freeze_backbone", False):
            model.backbone.requires_grad_(False)
        self.channels_last = bool(train.channels_last)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
            if old_model is not None:
                old_model.to(memory_format=torch.channels_last)
        if train.compile:
            model.compile()
        self.register_buffer("mean", torch.tensor(normalization.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(normalization.std).view(1, -1, 1, 1))

    @property
    def old_model(self) -> SegmentationModel | None:
        """The frozen previous-step model (None at step 0)."""
        return cast("SegmentationModel | None", self._old_model)

    def train(self, mode: bool = True) -> StepModule:
        """``mode`` for the new model, except its BatchNorm layers under ``freeze_bn``."""
        super().train(mode)
        if mode and self.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def on_fit_start(self) -> None:
        self.train()
        if self.old_model is not None:
            self.old_model.to(self.device).eval()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Partial checkpoints of earlier versions also held the old model's weights."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("old_model.")]:
            del state[key]

    def on_train_start(self) -> None:
        num_old = self.old_model.num_classes if self.old_model is not None else 0
        self.method.start_step(self.plan, num_old)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        image01, target = batch
        with torch.no_grad():
            image01, target = self.augmentation(image01, target)
        x = (image01 - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.model(x)
        old_out = None
        if self.old_model is not None and self.method.needs_old_model:
            with torch.no_grad():
                old_out = self.old_model(x)
        losses = self.method.losses(
            Batch(x, target, out, old_out, self.plan, self.model, self.old_model,
                  global_step=self.global_step)
        )
        total = torch.stack([v for v in losses.values()]).sum()
        bs = x.shape[0]
        self.log_dict({k: v.detach() for k, v in losses.items()}, prog_bar=True, batch_size=bs)
        self.log("loss", total.detach(), prog_bar=False, batch_size=bs)
        return total

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's own union type
        cfg = self.train_cfg
        lr = cfg.lr_incremental if self.plan.incremental else cfg.lr
        groups = [
            {"params": [p for p in self.model.backbone_parameters() if p.requires_grad],
             "lr": lr * cfg.backbone_lr_mult},
            {"params": [p for p in self.model.head_parameters() if p.requires_grad], "lr": lr},
        ]
        groups = [g for g in groups if g["params"]]
        optimizer: torch.optim.Optimizer
        if cfg.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                groups, lr=lr, momentum=cfg.momentum,
                nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay,
            )
        total, power = max(self.iterations, 1), cfg.poly_power
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda it: max(0.0, 1.0 - it / total) ** power
        )
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
