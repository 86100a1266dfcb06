"""The Lightning module that trains one incremental step with any method."""

from __future__ import annotations

import lightning as L
import torch

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
        self.old_model = old_model
        if old_model is not None:
            old_model.eval()
            old_model.requires_grad_(False)
        if plan.incremental and getattr(method.config, "freeze_backbone", False):
            model.backbone.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(normalization.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(normalization.std).view(1, -1, 1, 1))

    def train(self, mode: bool = True) -> StepModule:
        """Keep the old model in eval mode whatever Lightning asks of the rest."""
        super().train(mode)
        if self.old_model is not None:
            self.old_model.eval()
        return self

    def on_train_start(self) -> None:
        num_old = self.old_model.num_classes if self.old_model is not None else 0
        self.method.start_step(self.plan, num_old)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        image01, target = batch
        with torch.no_grad():
            image01, target = self.augmentation(image01, target)
        x = (image01 - self.mean) / self.std
        out = self.model(x)
        old_out = None
        if self.old_model is not None and self.method.needs_old_model:
            with torch.no_grad():
                old_out = self.old_model(x)
        losses = self.method.losses(
            Batch(x, target, out, old_out, self.plan, self.model, self.old_model)
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
        optimizer = torch.optim.SGD(
            [g for g in groups if g["params"]], lr=lr, momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay,
        )
        total, power = max(self.iterations, 1), cfg.poly_power
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda it: max(0.0, 1.0 - it / total) ** power
        )
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
