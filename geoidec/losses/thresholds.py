"""Class-specific thresholds for pseudo-labelling: running per-class statistics of the old model.

"Certain enough" is class-specific. :class:`DynamicThresholds` keeps, per old class, a running
histogram of the old model's max-softmax confidence (:func:`softmax_confidence`) on the pixels
it predicts as that class and returns a quantile of it (IDEC, default the median capped at
0.9). :class:`EntropyMedians` does the same with the normalised entropy
(:func:`normalized_entropy`, PLOP). The labels themselves are made by
:mod:`geoidec.losses.pseudo_labels`.

Typical use: ``update`` on every batch (mask = background pixels), and at the start of each
epoch read ``thresholds()`` (the previous epoch's distribution; a pre-pass over the data set,
as PLOP does, or the no-data default for the first epoch), then ``reset()``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DynamicThresholds",
    "EntropyMedians",
    "normalized_entropy",
    "softmax_confidence",
]


def softmax_confidence(logits: Tensor) -> tuple[Tensor, Tensor]:
    r"""Per-pixel class and confidence of ``p = softmax(logits)``, computed in float32.

    ::

        c(i) = argmax_c p_c(i),        conf(i) = max_c p_c(i)

    Args:
        logits: ``(B, K, H, W)``.

    Returns:
        ``(c, conf)``: ``(B, H, W)`` int64 and ``(B, H, W)`` float32.
    """
    conf, pred = torch.softmax(logits.float(), dim=1).max(dim=1)
    return pred, conf


def normalized_entropy(logits: Tensor) -> Tensor:
    r"""Per-pixel entropy of ``softmax(logits)`` divided by its maximum, in [0, 1].

    ::

        H(i) = -sum_{c < K} p_c(i) log p_c(i) / log K        (0 when K == 1; 0 log 0 = 0)

    Args:
        logits: ``(B, K, H, W)``; computed in float32.

    Returns:
        ``(B, H, W)`` float32.
    """
    z = logits.float()
    num_classes = z.shape[1]
    if num_classes < 2:
        return torch.zeros_like(z[:, 0])
    log_p = torch.log_softmax(z, dim=1)
    ent = -(log_p.exp() * log_p).sum(dim=1)
    return (ent / math.log(num_classes)).clamp(0.0, 1.0)


class _ClassHistograms:
    """Per-class histograms of a [0, 1] statistic and their quantiles (shared machinery)."""

    #: Threshold of a class with no data: ``"max"`` or ``"min"`` (the strict end of the range).
    _empty: str = "max"

    def __init__(
        self,
        num_old: int,
        quantile: float,
        max_threshold: float,
        min_threshold: float,
        bins: int,
    ) -> None:
        if num_old < 1:
            raise ValueError(f"num_old must be >= 1, got {num_old}")
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {quantile}")
        if not 0.0 <= min_threshold <= max_threshold <= 1.0:
            raise ValueError(
                "need 0 <= min_threshold <= max_threshold <= 1, got "
                f"{min_threshold} and {max_threshold}"
            )
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.num_old = int(num_old)
        self.quantile = float(quantile)
        self.max_threshold = float(max_threshold)
        self.min_threshold = float(min_threshold)
        self.bins = int(bins)
        self.histogram = torch.zeros(self.num_old, self.bins, dtype=torch.int64)

    # --------------------------------------------------------------------------- counting
    def _statistic(self, old_logits: Tensor) -> tuple[Tensor, Tensor]:
        """(argmax class, statistic in [0, 1]) per pixel."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, old_logits: Tensor, mask: Tensor | None = None) -> None:
        """Count the pixels of ``old_logits`` ``(B, K_old, H, W)`` selected by ``mask``.

        Each pixel goes into the histogram of the old model's argmax class, in bin
        ``min(floor(v * bins), bins - 1)`` of its statistic v. ``mask`` (B, H, W, bool) selects
        the pixels to count (typically those labelled background); all pixels without it.
        The histogram lives on the logits' device (no host transfer per batch).

        In a DDP process group the batch's counts are summed over the processes (one
        all-reduce of ``num_old x bins`` integers), so every process holds the histogram of
        the whole global batch and derives the same thresholds. Every process must call
        ``update`` as often as the others (once per micro-batch, as the engine does).
        """
        if old_logits.ndim != 4 or old_logits.shape[1] != self.num_old:
            raise ValueError(
                f"old_logits must be (B, {self.num_old}, H, W), got {tuple(old_logits.shape)}"
            )
        pred, value = self._statistic(old_logits)
        if self.histogram.device != pred.device:
            self.histogram = self.histogram.to(pred.device)
        index = (value * self.bins).long().clamp_(0, self.bins - 1)
        keys = pred * self.bins + index
        if mask is not None:
            mask = mask.to(device=keys.device, dtype=torch.bool)
            if mask.shape != keys.shape:
                raise ValueError(f"mask shape {tuple(mask.shape)} must be {tuple(keys.shape)}")
            keys = keys[mask]
        counts = torch.bincount(keys.reshape(-1), minlength=self.num_old * self.bins)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts)
        self.histogram += counts.view(self.num_old, self.bins)

    def counts(self) -> Tensor:
        """Pixels counted per class, ``(num_old,)`` int64."""
        return self.histogram.sum(dim=1)

    def reset(self) -> None:
        """Forget every counted pixel."""
        self.histogram.zero_()

    # --------------------------------------------------------------------------- quantiles
    def thresholds(self) -> Tensor:
        r"""Per-class quantile of the histogram, clipped to [min_threshold, max_threshold].

        With n_j the count of bin j (width 1 / bins), N = sum_j n_j and S_j = sum_{j' < j} n_j',
        the quantile q is read in the first non-empty bin j with S_j + n_j >= q N, assuming
        values spread uniformly inside it::

            tau = (j + (q N - S_j) / n_j) / bins

        so it is exact up to the bin width ``1 / bins``. Classes with no counted pixel get the
        strict end of the range (see the subclass).

        Returns:
            ``(num_old,)`` float32 on the histogram's device.
        """
        hist = self.histogram.to(torch.float64)
        total = hist.sum(dim=1, keepdim=True)
        cum = hist.cumsum(dim=1)
        target = self.quantile * total
        reached = (cum >= target) & (hist > 0)
        j = reached.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True
        before = (cum - hist).gather(1, j)
        in_bin = hist.gather(1, j).clamp_min(1.0)
        frac = ((target - before) / in_bin).clamp(0.0, 1.0)
        value = ((j.to(torch.float64) + frac) / self.bins)[:, 0]
        value = value.clamp(self.min_threshold, self.max_threshold)
        empty_value = self.max_threshold if self._empty == "max" else self.min_threshold
        value = torch.where(total[:, 0] > 0, value, torch.full_like(value, empty_value))
        return value.to(torch.float32)

    # --------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Histogram (on CPU) and settings."""
        return {
            "histogram": self.histogram.detach().cpu().clone(),
            "num_old": self.num_old,
            "bins": self.bins,
            "quantile": self.quantile,
            "max_threshold": self.max_threshold,
            "min_threshold": self.min_threshold,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the histogram (and settings) from :meth:`state_dict`'s output."""
        hist = torch.as_tensor(state["histogram"], dtype=torch.int64)
        if tuple(hist.shape) != (self.num_old, self.bins):
            raise ValueError(
                f"histogram of shape {tuple(hist.shape)} does not fit num_old={self.num_old}, "
                f"bins={self.bins}"
            )
        self.histogram = hist.to(self.histogram.device).clone()
        self.quantile = float(state.get("quantile", self.quantile))
        self.max_threshold = float(state.get("max_threshold", self.max_threshold))
        self.min_threshold = float(state.get("min_threshold", self.min_threshold))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_old={self.num_old}, quantile={self.quantile}, "
            f"max_threshold={self.max_threshold}, min_threshold={self.min_threshold}, "
            f"bins={self.bins})"
        )


class DynamicThresholds(_ClassHistograms):
    r"""IDEC's class-specific confidence thresholds: a running quantile per old class.

    For every counted pixel i with old-model probabilities p(i) over the K_old old channels,
    ``c(i) = argmax_c p_c(i)`` and ``conf(i) = max_c p_c(i)``; then::

        tau_c = clip( quantile_q { conf(i) : c(i) = c },  min_threshold, max_threshold )

    (default: median capped at 0.9). The quantile is read from a histogram of ``bins`` bins
    over [0, 1], so it is approximate to the bin width (1/200 by default). A class the old
    model never predicted gets ``max_threshold`` (the strictest).

    Args:
        num_old: K_old, old-model channels (background included).
        quantile: q in [0, 1].
        max_threshold: upper cap of every tau_c.
        min_threshold: lower bound of every tau_c.
        bins: histogram bins over [0, 1].
    """

    _empty = "max"

    def __init__(
        self,
        num_old: int,
        quantile: float = 0.5,
        max_threshold: float = 0.9,
        min_threshold: float = 0.0,
        bins: int = 200,
    ) -> None:
        super().__init__(num_old, quantile, max_threshold, min_threshold, bins)

    def _statistic(self, old_logits: Tensor) -> tuple[Tensor, Tensor]:
        return softmax_confidence(old_logits)


class EntropyMedians(_ClassHistograms):
    r"""PLOP's class-specific entropy thresholds: a running median of the normalised entropy.

    For every counted pixel i, ``c(i) = argmax_c p_c(i)`` and ``H(i)`` is
    :func:`normalized_entropy` of the old logits; then::

        tau_c = clip( quantile_q { H(i) : c(i) = c },  min_threshold, max_threshold )

    A *low* entropy means a confident pixel, so the rule keeps pixels with ``H < tau_c``.

    Defaults follow PLOP's published configuration: the median (q = 0.5), 100 bins in the
    entropy mode, and PLOP's ``--threshold 0.001`` which, for entropy, is a *floor*
    (``tau_c = max(median, 0.001)``), not a cap: ``min_threshold=0.001``, ``max_threshold=1``
    (no cap). A class with no data gets ``min_threshold`` (the strictest; PLOP's 0 floored).
    Note PLOP's code scales the entropy differently (an extra ``1 / (K log K)``), so its
    floor is not numerically the same cut; the median itself is scale-free.

    Args:
        num_old: K_old, old-model channels (background included).
        quantile: q in [0, 1].
        max_threshold: upper cap of every tau_c.
        min_threshold: lower bound of every tau_c.
        bins: histogram bins over [0, 1].
    """

    _empty = "min"

    def __init__(
        self,
        num_old: int,
        quantile: float = 0.5,
        max_threshold: float = 1.0,
        min_threshold: float = 0.001,
        bins: int = 100,
    ) -> None:
        super().__init__(num_old, quantile, max_threshold, min_threshold, bins)

    def _statistic(self, old_logits: Tensor) -> tuple[Tensor, Tensor]:
        return old_logits.argmax(dim=1), normalized_entropy(old_logits)
