"""Rendering a painted scene to R, G, B, IR bands with cast shadows, and its surface model."""

from __future__ import annotations

import math

import numpy as np

from geoidec.synthetic.scene import (
    _DRY_GRASS,
    _M_ASPHALT,
    _M_CAR,
    _M_CLUTTER,
    _M_GLASS,
    _M_GRASS,
    _M_HEAP,
    _M_MARKING,
    _M_PAVING,
    _M_ROOF_FLAT,
    _M_ROOF_GABLE,
    _M_ROOF_UNIT,
    _M_SIDEWALK,
    _M_TREE,
    _ORIGIN_X,
    _ORIGIN_Y,
    _SHADOW_COL_PER_ROW,
    _SHADOW_FACTOR,
    _SUN_TAN_ELEVATION,
    _fractal_noise,
    _Scene,
    _value_noise,
)


def _cast_shadows(hgt: np.ndarray, res: float) -> np.ndarray:
    """Boolean shadow mask from heights above ground, for a sun in the south-south-west.

    Propagates a "shadow surface" row by row from south to north: each row takes the row to its
    south (shifted east by the accumulated drift), lowered by the sun's slope over one step.
    """
    n_rows, n_cols = hgt.shape
    surf = np.empty_like(hgt)
    surf[-1] = hgt[-1]
    acc = 0.0
    for i in range(n_rows - 2, -1, -1):
        prev_acc = acc
        acc += _SHADOW_COL_PER_ROW
        shift = int(acc) - int(prev_acc)
        drop = np.float32(res * math.hypot(1.0, shift) * _SUN_TAN_ELEVATION)
        src = surf[i + 1]
        if shift:
            row = np.empty_like(src)
            row[shift:] = src[:-shift]
            row[:shift] = 0.0
        else:
            row = src
        surf[i] = np.maximum(hgt[i], row - drop)
    return surf > hgt + np.float32(0.25)


def _blur3(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur over the first two axes, edges replicated."""
    p = np.pad(img, [(1, 1), (1, 1)] + [(0, 0)] * (img.ndim - 2), mode="edge")
    v = (p[:-2] + 2 * p[1:-1] + p[2:]) * np.float32(0.25)
    return (v[:, :-2] + 2 * v[:, 1:-1] + v[:, 2:]) * np.float32(0.25)


def _render(sc: _Scene) -> np.ndarray:
    """Turn the painted scene into a ``(4, H, W)`` uint8 R, G, B, IR image."""
    rng, n, res = sc.rng, sc.size, sc.res
    col = sc.col
    mat = sc.mat
    fine = _fractal_noise(rng, n, res, (0.25, 0.1))
    mid = _fractal_noise(rng, n, res, (1.5, 0.6))
    low = _fractal_noise(rng, n, res, (8.0, 3.0))
    grain = rng.standard_normal((n, n), dtype=np.float32)

    tex = np.ones((n, n), dtype=np.float32)
    grass = mat == _M_GRASS
    # Lawns: patchy, some dry areas drifting to yellow-brown (less near-infrared).
    dry = np.clip(0.5 * low + 0.2 * mid - 0.35, 0.0, 1.0)[..., None] * grass[..., None]
    col = col * (1 - dry) + _DRY_GRASS * dry
    tex = np.where(grass, 1 + 0.09 * low + 0.06 * mid + 0.05 * fine, tex)
    tree = mat == _M_TREE
    clumps = _fractal_noise(rng, n, res, (0.7, 0.3))
    tex = np.where(tree, 0.95 + 0.2 * clumps + 0.08 * fine, tex)
    paved = np.isin(mat, (_M_ASPHALT, _M_MARKING))
    tex = np.where(paved, 1 + 0.035 * mid + 0.045 * fine + 0.03 * low, tex)
    walk = np.isin(mat, (_M_SIDEWALK, _M_PAVING))
    if res <= 0.1:  # joints between paving stones
        ii, jj = np.indices((n, n), dtype=np.float32) * np.float32(res)
        joints = ((ii % 0.5) < res * 0.99) | ((jj % 0.3) < res * 0.99)
        tex = np.where(walk & joints, tex * 0.88, tex)
    tex = np.where(walk, tex * (1 + 0.04 * mid + 0.04 * fine), tex)
    roofs = np.isin(mat, (_M_ROOF_GABLE, _M_ROOF_FLAT, _M_ROOF_UNIT))
    tex = np.where(roofs, tex * (1 + 0.05 * fine + 0.04 * mid), tex)
    odd = np.isin(mat, (_M_CLUTTER, _M_HEAP))
    tex = np.where(odd, 1 + 0.12 * mid + 0.1 * fine, tex)
    tex = np.where(np.isin(mat, (_M_CAR, _M_GLASS)), 1 + 0.03 * fine, tex)

    img = col * (tex * sc.shade)[..., None]
    # Vegetation near-infrared follows its own texture (leaf density) more than its colour.
    veg = grass | tree
    img[..., 3] = np.where(veg, img[..., 3] * (1 + 0.06 * clumps), img[..., 3])

    shadow = _blur3(_cast_shadows(sc.hgt, res).astype(np.float32))
    factor = 1.0 - shadow[..., None] * (1.0 - _SHADOW_FACTOR)
    img = img * factor
    tint = rng.uniform(0.95, 1.05, size=4).astype(np.float32) * np.float32(rng.uniform(0.93, 1.07))
    img = _blur3(img * tint)
    img += grain[..., None] * np.float32(2.5) + rng.standard_normal(
        (n, n, 4), dtype=np.float32
    ) * np.float32(2.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(2, 0, 1).copy()


def _dsm(sc: _Scene, x0: float, y0: float, seed: int) -> np.ndarray:
    """Surface model: ~35 m ground with a gentle seed-wide slope, plus object heights."""
    g = np.random.default_rng([seed, 7919])
    gx, gy = g.uniform(-0.004, 0.004, size=2)
    n, res = sc.size, sc.res
    east = x0 + (np.arange(n, dtype=np.float64) + 0.5) * res - _ORIGIN_X
    north = y0 - (np.arange(n, dtype=np.float64) + 0.5) * res - _ORIGIN_Y
    ground = 35.0 + gx * east[None, :] + gy * north[:, None]
    ground = ground + 0.15 * _value_noise(sc.rng, n, 6.0 / res)
    grass_height = np.where(
        sc.mat == _M_GRASS, 0.08 * np.abs(_value_noise(sc.rng, n, 0.5 / res)), 0.0
    )
    noise = 0.03 * sc.rng.standard_normal((n, n))
    return (ground + sc.hgt + grass_height + noise).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Writing
