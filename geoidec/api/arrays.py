"""What :class:`geoidec.api.model.Model` reads and returns: an in-memory ``(C, H, W)`` array
read like a scene (:class:`ArrayReader`, with the scene reader's validity rule), and xarray
DataArrays unwrapped to their values and nodata, and predictions wrapped back on their
coordinates, CRS and transform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rasterio.windows import Window

from geoidec.data.scene_reader import fill_mask


class ArrayReader:
    """A scene reader over an in-memory ``(C, H, W)`` array, with the validity rule of
    :class:`geoidec.data.scene_reader.SceneReader`: a pixel is valid when every band is
    finite, none equals ``nodata`` and none equals its band's fill value."""

    def __init__(self, image: np.ndarray, nodata: float | None,
                 fill: Sequence[float | None] | None) -> None:
        self.image = image
        self.height, self.width = image.shape[1:]
        ok = np.ones(image.shape[1:], dtype=bool)
        if np.issubdtype(image.dtype, np.floating):
            ok &= np.isfinite(image).all(axis=0)
        if nodata is not None:
            ok &= ~(fill_mask(image, nodata).any(axis=0))
        for band, value in enumerate(fill or ()):
            if value is not None:
                ok &= ~fill_mask(image[band], value)
        self.valid = ok

    def get(self) -> ArrayReader:  # the interface of predict.py's thread-local readers
        return self

    def read_image(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        rows = slice(int(window.row_off), int(window.row_off) + int(window.height))
        cols = slice(int(window.col_off), int(window.col_off) + int(window.width))
        valid = self.valid[rows, cols]
        part = self.image[:, rows, cols].astype(np.float32)
        part[:, ~valid] = 0.0
        return part, valid.copy()


def is_dataarray(obj: Any) -> bool:
    return type(obj).__name__ == "DataArray" and hasattr(obj, "dims")


def unwrap(image: Any, nodata: float | None) -> tuple[Any, float | None]:
    """The values of an xarray DataArray (and its nodata, from rioxarray, unless given);
    anything else unchanged."""
    if not is_dataarray(image):
        return image, nodata
    if nodata is None:
        rio = getattr(image, "rio", None)  # present once rioxarray is imported
        nodata = rio.nodata if rio is not None else image.attrs.get("_FillValue")
    return image.values, None if nodata is None else float(nodata)


def wrap(like: Any, values: np.ndarray, name: str, *, nodata: int | None = None,
          extra: tuple[str, list[str]] | None = None) -> Any:
    """``values`` as a DataArray on ``like``'s spatial dimensions and coordinates, with its
    CRS and transform (rioxarray), ``extra`` as a leading dimension."""
    import xarray as xr

    spatial = like.dims[1:]
    dims = ((extra[0],) if extra else ()) + tuple(spatial)
    coords = {d: like.coords[d] for d in spatial if d in like.coords}
    if extra:
        coords[extra[0]] = extra[1]
    out = xr.DataArray(values, dims=dims, coords=coords, name=name)
    rio = getattr(like, "rio", None)
    if rio is not None and rio.crs is not None:
        out = out.rio.write_crs(rio.crs).rio.write_transform(rio.transform())
    if nodata is not None:
        out = out.rio.write_nodata(nodata) if rio is not None else out.assign_attrs(
            _FillValue=nodata)
    return out
