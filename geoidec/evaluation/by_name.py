"""Scoring a model by class name on datasets that list only some of its classes (a
``--from`` run's own dataset, ``--eval-on`` datasets, ``geoidec evaluate --on``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from geoidec.constants import BACKGROUND, IGNORE_INDEX
from geoidec.data.base import DatasetSpec
from geoidec.data.normalization import Normalization, with_fill
from geoidec.evaluation.summary import summarize
from geoidec.tasks import normalise_name


def eval_lut(model_names: Sequence[str], dataset: DatasetSpec) -> tuple[np.ndarray, list[int],
                                                                         list[str]]:
    """Dataset index -> model index by class name, for scoring a model on ``dataset``.

    Returns the lookup table, the model indices the dataset scores (the classes it lists and
    the model knows; background too when the dataset evaluates it), and the dataset's class
    names the model does not know (not scored). Background is not scored otherwise: in a
    dataset that lists only some classes it may hold the others.
    """
    model = {normalise_name(n): i for i, n in enumerate(model_names) if i > 0}
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    scored, unknown = [], []
    if dataset.eval_background:
        lut[BACKGROUND] = BACKGROUND
        scored.append(BACKGROUND)
    for index, info in enumerate(dataset.classes, start=1):
        hit = model.get(normalise_name(info.name))
        if hit is None:
            unknown.append(info.name)
        else:
            lut[index] = hit
            scored.append(hit)
    return lut, sorted(scored), unknown


def summary_by_name(matrix: np.ndarray, names: Sequence[str], scored: Sequence[int],
                    old_classes: Sequence[int]) -> dict[str, Any]:
    """Old / new / all scores of the classes a by-name evaluation scored."""
    old = [c for c in scored if c == BACKGROUND or c in old_classes]
    new = [c for c in scored if c not in old]
    return summarize(matrix, class_names=list(names), old=old, new=new,
                     include_background=BACKGROUND in scored, background_name=names[0])


def evaluate_by_name(evaluate: Callable[[Sequence, Any, np.ndarray], np.ndarray],
                     model_names: Sequence[str], datasets: Sequence[tuple[DatasetSpec, str]],
                     normalization: Normalization,
                     echo: Callable[[str], None]) -> tuple[np.ndarray | None, list[int],
                                                           list[dict[str, Any]]]:
    """Score a model on several (dataset, split) pairs by class name; returns the pooled
    confusion matrix (None when nothing was scored), the classes scored and one record per
    dataset (``dataset``, ``split``, ``scenes``, ``classes``, ``matrix``)."""
    pooled: np.ndarray | None = None
    scored_all: set[int] = set()
    records = []
    for dataset, split in datasets:
        lut, scored, unknown = eval_lut(model_names, dataset)
        if unknown:
            echo(f"warning: {dataset.name} lists {', '.join(unknown)}, which the model does "
                 "not know; not scored")
        if not scored:
            echo(f"warning: {dataset.name} lists no class the model knows; not scored")
            continue
        scenes = with_fill(dataset.scenes(split), normalization)
        matrix = evaluate(scenes, dataset.decoder, lut)
        pooled = matrix if pooled is None else pooled + matrix
        scored_all.update(scored)
        records.append({"dataset": dataset.name, "split": split, "scenes": len(scenes),
                        "classes": [model_names[c] for c in scored], "matrix": matrix,
                        "scored": scored})
    return pooled, sorted(scored_all), records
