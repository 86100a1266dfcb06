"""The config sections that describe the learning: ``train`` (optimisation, precision,
devices, checkpoints, per incremental step) and ``method`` (the continual-learning method and
its loss terms), frozen dataclasses; invalid values raise
:class:`~geoidec.config.choices.ConfigError`."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from geoidec.config.choices import METHOD_NAMES, ConfigError, Precision

__all__ = ["MethodConfig", "TrainConfig"]

#: ``train.device``: auto, cpu, cuda, cuda:N or mps.
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, per incremental step."""

    #: Iterations of step 0 (and of joint training).
    iterations: int = 200
    #: Iterations of steps t > 0 (default: same as ``iterations``).
    iterations_incremental: int | None = None
    #: If set, iterations are derived from epochs over the step's chips (paper preset).
    epochs: int | None = None
    #: Chips drawn per epoch and scene when ``epochs`` is set.
    chips_per_scene: int = 100
    batch_size: int = 8
    #: ``sgd`` (momentum, optionally Nesterov; the papers') or ``adamw``.
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    lr_incremental: float = 0.001
    #: Backbone learning rate = lr x backbone_lr_mult.
    backbone_lr_mult: float = 1.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    #: Keep every BatchNorm layer in eval mode (running statistics of the previous step,
    #: not updated) at steps t > 0, as some CISS code does; false trains BatchNorm as MiB,
    #: PLOP and IDEC do. Step 0 and joint always train it.
    freeze_bn: bool = False
    #: Clip the global gradient norm (None: no clipping). Light MobileNets trained with SGD
    #: diverge at the first incremental iterations without it.
    grad_clip: float | None = None
    #: ``auto`` uses mixed precision on CUDA and fp32 elsewhere; ``32`` forces fp32.
    precision: Precision = "auto"
    #: Train in the channels-last memory layout: convolutions run faster (2-core CPU, 256 px
    #: chips: 1.31x steps/s for MobileNetV3, 1.12x for ResNet-50; the standard fast path of
    #: mixed precision on CUDA). Off by default until the real-data comparison of
    #: docs/results.md is rerun with it (it changes the convolutions' rounding, so every
    #: trained model a little). Checkpoints are saved in the standard layout either way.
    channels_last: bool = False
    #: Compile the model being trained with ``torch.compile`` (``nn.Module.compile``): faster
    #: steps after a compilation of tens of seconds (a C++ compiler is needed on CPU).
    compile: bool = False
    seed: int = 0
    #: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "auto"
    #: Devices per node: GPUs, or CPU processes (gloo backend). More than one (or
    #: ``num_nodes`` > 1) trains with DDP; see docs/reliability.md.
    devices: int = 1
    #: ``auto`` (one process, or DDP when devices x num_nodes > 1) or ``ddp``.
    strategy: Literal["auto", "ddp"] = "auto"
    #: Nodes taking part; start one process per device on every node (srun or torchrun).
    num_nodes: int = 1
    #: Batches whose gradients are summed per optimiser step; iterations count optimiser steps.
    accumulate: int = 1
    #: Save the step in progress every N iterations to checkpoints/step_T.partial.ckpt, so
    #: ``--resume`` continues an interrupted step from there (0: never).
    checkpoint_every: int = 100
    progress: bool = True
    #: Where the loss terms, learning rate and per-step evaluation go besides the run
    #: folder's CSV files: ``csv`` (nothing more) or ``tensorboard`` (RUN/logs/step_T and
    #: RUN/logs/evaluation event files; needs ``pip install 'geoidec[tensorboard]'``).
    logger: Literal["csv", "tensorboard"] = "csv"

    def __post_init__(self) -> None:
        if not _DEVICE.match(self.device):
            raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:N or mps, got "
                              f"'{self.device}'")


@dataclass(frozen=True)
class MethodConfig:
    """Continual-learning method and its settings (defaults from docs/method.md).

    Each IDEC term has a switch for the ablation (``--set method.feature_kd=false``).
    """

    #: finetune, joint, mib, plop or idec.
    name: str = "finetune"
    # --- IDEC switches (the four terms of the ablation)
    feature_kd: bool = True
    logit_kd: bool = True
    pseudo_labels: bool = True
    arcl: bool = True
    # --- classification loss on the (pseudo-labelled) target: ce or bce (authors' code)
    classification: Literal["ce", "bce"] = "ce"
    # --- DADA feature distillation
    #: 0.1: at 1.0 the distillation dominated and blocked new classes (docs/method.md)
    lambda_feat_kd: float = 0.1
    #: pod (PLOP-style pooled strips), l2 (normalised L2) or channel_softmax (authors' code)
    feat_kd_distance: Literal["pod", "l2", "channel_softmax"] = "pod"
    #: Weights of layer1, layer2, layer3 and the ASPP output.
    feat_kd_weights: tuple[float, float, float, float] = (0.5, 1.0, 2.0, 1.0)
    #: Weight feature distances by the old-class (and background) pseudo-label mask.
    feat_kd_mask: bool = True
    channel_softmax_alpha: float = 2.0
    # --- unbiased logit distillation (MiB, IDEC); weight of the loss averaged over the old
    # classes, as in MiB's code (so MiB's published lambda applies unchanged)
    lambda_logit_kd: float = 10.0
    kd_temperature: float = 1.0
    # --- dynamic class-specific pseudo-labels (IDEC)
    #: dynamic (per-class quantile of the running confidence) or fixed (authors' code)
    pseudo_label_mode: Literal["dynamic", "fixed"] = "dynamic"
    pseudo_quantile: float = 0.5
    pseudo_max_threshold: float = 0.9
    pseudo_fixed_threshold: float = 0.7
    #: Judge the old model's background by its own threshold like any old class (uncertain
    #: background predictions become uncertain pixels instead of background targets).
    pseudo_background: bool = False
    #: Uncertain background pixels (old-class prediction below its threshold): ``ignore``
    #: (the paper's dynamic rule), ``background`` (the authors' fixed rule) or ``auto``
    #: (ignore in dynamic mode, background in fixed mode).
    uncertain: Literal["auto", "ignore", "background"] = "auto"
    #: Recompute the per-class thresholds every N iterations.
    pseudo_update_every: int = 20
    # --- ARCL
    lambda_arcl: float = 0.1
    arcl_temperature: float = 0.1
    #: infonce (default) or triplet (authors' code)
    arcl_loss: Literal["infonce", "triplet"] = "infonce"
    arcl_margin: float = 1.0
    # --- PLOP
    #: Local POD factor of each feature entry (backbone stages 1-4 and the ASPP output).
    lambda_pod: float = 0.01
    #: Local POD factor of the logits (PLOP's ``"after"`` switch).
    lambda_pod_logits: float = 0.0005
    #: Scale each image's cross-entropy by its share of confidently labelled background
    #: (PLOP's ``classif_adaptive_factor``).
    plop_adaptive_factor: bool = True
    # --- SSUL-like option of the authors' code
    freeze_backbone: bool = False

    def __post_init__(self) -> None:
        if self.name not in METHOD_NAMES:
            close = difflib.get_close_matches(self.name, METHOD_NAMES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown method '{self.name}'{hint}; valid: "
                              f"{', '.join(METHOD_NAMES)}")
