"""Evaluation over whole stitched scenes with the same sliding window as prediction."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from geoidec.config import Config, Tta
from geoidec.constants import IGNORE_INDEX
from geoidec.data.base import Scene
from geoidec.data.decoders import LabelDecoder
from geoidec.data.normalization import Normalization
from geoidec.data.scene_reader import SceneReader, open_raster
from geoidec.devices import all_reduce_sum, rank_and_world
from geoidec.evaluation.metrics import ConfusionMatrix
from geoidec.evaluation.summary import summarize
from geoidec.inference.forward import probability_fn
from geoidec.inference.reading import SingleReader, WindowReader
from geoidec.inference.sliding import SlidingWindowPredictor
from geoidec.methods.base import StepPlan
from geoidec.models import SegmentationModel
from geoidec.progress import window_bar

#: A step's scoring function: (scenes, their label decoder, label LUT) -> confusion matrix.
Scorer = Callable[[Sequence[Scene], LabelDecoder, np.ndarray], np.ndarray]


def mixed_precision(device: torch.device, precision: str) -> bool:
    """Evaluate under CUDA autocast: on a GPU with ``train.precision: auto`` (as trained)."""
    return device.type == "cuda" and precision == "auto"


def step_summary(matrix: np.ndarray, names: list[str], plan: StepPlan,
                 eval_background: bool) -> tuple[tuple[int, ...], dict[str, Any]]:
    """The old classes of step ``plan`` (background among them when the dataset scores it)
    and :func:`summarize` of ``matrix`` over them, the step's new classes and all classes."""
    old = tuple(plan.old_classes)
    if eval_background:
        old = (0, *old)
    return old, summarize(matrix, class_names=names, old=old, new=plan.new_classes,
                          include_background=eval_background, background_name=names[0])


def evaluate_scenes(
    model: SegmentationModel,
    scenes: Sequence[Scene],
    decoder: LabelDecoder,
    normalization: Normalization,
    lut: np.ndarray,
    *,
    tile: int,
    overlap: int,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    tta: Tta = "none",
    progress: Callable[[int, int], None] | None = None,
) -> ConfusionMatrix:
    """One confusion matrix over every pixel of every scene (labels remapped by ``lut``);
    ``progress(done, total)`` counts the windows of all scenes together. The model runs in
    the prediction's layout for ``device`` (channels-last on CPU, see
    :func:`~geoidec.inference.forward.prefers_channels_last`) and leaves in the layout it
    came in (the training setting ``train.channels_last`` decides the layout of the steps
    that follow)."""
    model.eval().to(device)
    with _layout_kept(model):
        return _evaluate(model, scenes, decoder, normalization, lut, tile, overlap, batch_size,
                         device, amp, tta, progress)


@contextmanager
def _layout_kept(model: torch.nn.Module) -> Iterator[None]:
    """Leave ``model`` in the memory layout it came in (the channels-last forward of
    :func:`probability_fn` converts it in place)."""
    weight = next((p for p in model.parameters() if p.dim() == 4), None)
    nchw = weight is not None and weight.is_contiguous()
    try:
        yield
    finally:
        if nchw:
            model.to(memory_format=torch.contiguous_format)


def _evaluate(model: SegmentationModel, scenes: Sequence[Scene], decoder: LabelDecoder,
              normalization: Normalization, lut: np.ndarray, tile: int, overlap: int,
              batch_size: int, device: torch.device, amp: bool, tta: Tta,
              progress: Callable[[int, int], None] | None) -> ConfusionMatrix:
    cm = ConfusionMatrix(model.num_classes)
    predictor = SlidingWindowPredictor(
        probability_fn(model, device, amp, tta=tta), num_classes=model.num_classes, tile=tile,
        overlap=overlap, batch_size=batch_size, device=device,
    )
    counts = [0] * len(scenes)
    if progress is not None:
        for i, scene in enumerate(scenes):
            with open_raster(scene.image) as src:
                counts[i] = len(predictor.windows(src.height, src.width))
    for i, scene in enumerate(scenes):
        before, total = sum(counts[:i]), sum(counts)
        scene_progress = None if progress is None else (
            lambda done, _, before=before, total=total: progress(before + done, total))
        with SceneReader(scene, decoder) as reader:
            read = WindowReader(SingleReader(reader), [normalization], mirror=False)
            bands = predictor.run(read, reader.height,
                                  reader.width, scene_progress)
            for row, probs, valid in bands:
                pred = probs.argmax(axis=0).astype(np.uint8)
                label = reader.read_label(Window(0, row, reader.width, pred.shape[0]))
                target = lut[label]
                target[~valid] = IGNORE_INDEX
                cm.update(pred, target)
    return cm


def evaluate_scenes_sharded(
    model: SegmentationModel,
    scenes: Sequence[Scene],
    decoder: LabelDecoder,
    normalization: Normalization,
    lut: np.ndarray,
    *,
    tile: int,
    overlap: int,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    tta: Tta = "none",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The confusion matrix of every scene, as :func:`evaluate_scenes`; in a DDP process group
    each process evaluates every world-th scene and the matrices are summed over the
    processes, so every process returns the matrix of the whole set (one process: all scenes).
    """
    rank, world = rank_and_world()
    mine = list(scenes)[rank::world]
    if mine:
        matrix = evaluate_scenes(model, mine, decoder, normalization, lut, tile=tile,
                                 overlap=overlap, batch_size=batch_size, device=device,
                                 amp=amp, tta=tta, progress=progress).matrix
    else:
        matrix = np.zeros((model.num_classes, model.num_classes), dtype=np.int64)
    return all_reduce_sum(matrix, device)


def step_scorer(model: SegmentationModel, normalization: Normalization, *, step: int,
                tile: int, overlap: int, config: Config, device: torch.device,
                progress: bool = True) -> Scorer:
    """``(scenes, decoder, lut) -> confusion matrix`` of one step's model, the one way a step
    is scored, after training and by ``geoidec evaluate``: windows of ``tile`` px with
    ``overlap``, ``config.eval.batch_size``, ``config.eval.tta``, mixed precision as
    ``config.train.precision`` allows, a progress bar, the scenes shared over DDP processes."""
    amp = mixed_precision(device, config.train.precision)

    def score(scenes: Sequence[Scene], decoder: LabelDecoder, lut: np.ndarray) -> np.ndarray:
        with window_bar(f"step {step}: evaluating", progress) as bar:
            return evaluate_scenes_sharded(
                model, scenes, decoder, normalization, lut, tile=tile, overlap=overlap,
                batch_size=config.eval.batch_size, device=device, amp=amp,
                tta=config.eval.tta, progress=bar)

    return score
