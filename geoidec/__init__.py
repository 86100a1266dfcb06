"""geoidec: class-incremental segmentation for remote sensing (IDEC), GIS-grade outputs.

``geoidec.load(RUN)`` gives a :class:`geoidec.api.Model` to map arrays in a notebook,
``geoidec.train``, ``geoidec.evaluate`` and ``geoidec.predict_file`` are the ``train``,
``evaluate`` and ``predict`` commands as functions (docs/api.md).
"""

from typing import Any

__version__ = "0.1.0"

_API = ("load", "Model", "ModelClass", "train", "evaluate", "predict_file")


def __getattr__(name: str) -> Any:
    """``geoidec.load`` and friends, imported on first use (torch is heavy; the command
    line imports this package for its version)."""
    if name in _API:
        from geoidec import api

        return getattr(api, name)
    raise AttributeError(f"module 'geoidec' has no attribute {name!r}")


__all__ = ["__version__", *_API]
