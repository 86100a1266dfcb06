"""Python API for notebooks and scripts: load a trained model, map arrays.

    import geoidec
    model = geoidec.load("runs/v2")            # a run folder (its last step) or a step_N.pt
    model.classes                              # [ModelClass(index, name, code, color), ...]
    codes = model.predict(image)               # (bands, H, W) numpy array or torch tensor
    probs = model.predict_proba(image)         # (K, H, W) float32

``predict`` runs exactly what ``geoidec predict`` runs (the checkpoint's window size and
overlap, cosine blending, strips of at most 2,048 px, the training normalisation, nodata
and fill values read as invalid), so for the bands of a GeoTIFF it returns the class map
``geoidec predict`` writes, pixel for pixel (tests/test_api.py). docs/api.md has the guide.
"""

from geoidec.api.commands import evaluate, predict_file, train
from geoidec.api.model import Model, ModelClass, load

__all__ = ["Model", "ModelClass", "evaluate", "load", "predict_file", "train"]
