"""Geometry of the alignment: point-set fits, sub-pixel peaks, local Jacobians.

Private helpers of :mod:`gridlens.meter.align`. Every transform is a 3x3 matrix that maps
reference pixel coordinates to photo pixel coordinates (pixel centres at integers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

HINT = "check that the camera still sees the meter face and that the photo is sharp"


class Failure(Exception):
    """Why one alignment stage failed: a short reason and a hint for the user."""

    def __init__(self, reason: str, hint: str = HINT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint
        self.method = ""


def rotation_about(
    deg_ccw: float, src_center: tuple[float, float], dst_center: tuple[float, float]
) -> F64:
    """The turn by ``deg_ccw`` degrees counter-clockwise on screen (image y points down) that
    takes ``src_center`` to ``dst_center``, as a 3x3 matrix (the map of
    ``cv2.getRotationMatrix2D`` with a translation to another centre)."""
    t = math.radians(deg_ccw)
    c, s = math.cos(t), math.sin(t)
    # right angles exactly, so that a hint of 90 or 180 degrees adds no rounding noise
    c, s = (float(round(v)) if abs(v - round(v)) < 1e-12 else v for v in (c, s))
    sx, sy = src_center
    dx, dy = dst_center
    return np.array(
        [
            [c, s, dx - (c * sx + s * sy)],
            [-s, c, dy - (-s * sx + c * sy)],
            [0.0, 0.0, 1.0],
        ]
    )


def subpixel(res: npt.ArrayLike, loc: Sequence[int]) -> tuple[float, float]:
    """Parabolic sub-pixel refinement of a correlation peak at ``loc`` = (x, y)."""
    res = np.asarray(res, dtype=np.float32)
    x, y = int(loc[0]), int(loc[1])
    fx, fy = float(x), float(y)
    if 0 < x < res.shape[1] - 1:
        a, b, c = float(res[y, x - 1]), float(res[y, x]), float(res[y, x + 1])
        den = a - 2 * b + c
        if den < 0:
            fx += max(-0.5, min(0.5, 0.5 * (a - c) / den))
    if 0 < y < res.shape[0] - 1:
        a, b, c = float(res[y - 1, x]), float(res[y, x]), float(res[y + 1, x])
        den = a - 2 * b + c
        if den < 0:
            fy += max(-0.5, min(0.5, 0.5 * (a - c) / den))
    return fx, fy


def fit(src: F64, dst: F64, *, similarity_only: bool) -> F64:
    """Least-squares transform src -> dst as a 3x3 matrix.

    2 points (or ``similarity_only``): similarity; 3: affine; 4+: homography.
    """
    n = len(src)
    s32, d32 = src.astype(np.float32), dst.astype(np.float32)
    if n >= 4 and not similarity_only:
        hmat, _ = cv2.findHomography(s32, d32, 0)
        if hmat is not None and abs(hmat[2, 2]) > 1e-12:
            out: F64 = hmat.astype(np.float64) / hmat[2, 2]
            return out
    a: F64 | None
    if n == 3 and not similarity_only:
        a = np.asarray(cv2.getAffineTransform(s32, d32), dtype=np.float64)
    else:
        a = similarity_lstsq(src, dst)
    if a is None:
        raise Failure(
            "the matched markers are too close together",
            "put marker boxes near the corners of the meter face",
        )
    return np.vstack([np.asarray(a, dtype=np.float64), [0.0, 0.0, 1.0]])


def similarity_lstsq(src: F64, dst: F64) -> F64 | None:
    """Least-squares similarity (Umeyama without reflection) as a 2x3 matrix [1]_.

    References
    ----------
    .. [1] S. Umeyama, "Least-squares estimation of transformation parameters between two
       point patterns", IEEE Trans. Pattern Anal. Mach. Intell. 13(4), 376-380, 1991.
       doi:10.1109/34.88573
    """
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - ms, dst - md
    var = float((a**2).sum())
    if var < 1e-9:
        return None
    # Complex-number form: b = z * a with z = s * exp(i*theta).
    za = a[:, 0] + 1j * a[:, 1]
    zb = b[:, 0] + 1j * b[:, 1]
    z = complex(np.vdot(za, zb) / var)
    c, s = z.real, z.imag
    t = md - np.array([c * ms[0] - s * ms[1], s * ms[0] + c * ms[1]])
    return np.array([[c, -s, t[0]], [s, c, t[1]]])


def affine_lstsq(src: F64, dst: F64) -> F64 | None:
    """Least-squares affine map as a 2x3 matrix (None when degenerate)."""
    a = np.hstack([src, np.ones((len(src), 1))])
    sol, _, rank, _ = np.linalg.lstsq(a, dst, rcond=None)
    if rank < 3:
        return None
    return np.asarray(sol.T, dtype=np.float64)


def drop_outlier(
    src: F64, dst: F64, tol: float, model: Literal["similarity", "affine"]
) -> npt.NDArray[np.bool_]:
    """Keep mask: drop the single worst point if the model misfits it and fits the rest.

    Needs one point more than the model's minimum (3 for a similarity, 4 for an affine map);
    with fewer points nothing can be checked and all are kept.
    """
    fitter = similarity_lstsq if model == "similarity" else affine_lstsq
    keep = np.ones(len(src), bool)
    if len(src) < (3 if model == "similarity" else 4):
        return keep

    def max_err(m: npt.NDArray[np.bool_]) -> float:
        a = fitter(src[m], dst[m])
        if a is None:
            return math.inf
        pred = src[m] @ a[:, :2].T + a[:, 2]
        return float(np.hypot(*(pred - dst[m]).T).max())

    if max_err(keep) <= tol:
        return keep
    best, best_err = -1, math.inf
    for j in range(len(src)):
        m = keep.copy()
        m[j] = False
        e = max_err(m)
        if e < best_err:
            best, best_err = j, e
    if best >= 0 and best_err <= tol:
        keep[best] = False
    return keep


def jacobian(hmat: F64, c: F64) -> F64:
    """The 2x2 derivative of the homography ``hmat`` at the point ``c``."""
    x, y = float(c[0]), float(c[1])
    h = hmat
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    u = h[0, 0] * x + h[0, 1] * y + h[0, 2]
    v = h[1, 0] * x + h[1, 1] * y + h[1, 2]
    jac = np.array(
        [
            [(h[0, 0] * w - u * h[2, 0]) / w**2, (h[0, 1] * w - u * h[2, 1]) / w**2],
            [(h[1, 0] * w - v * h[2, 0]) / w**2, (h[1, 1] * w - v * h[2, 1]) / w**2],
        ]
    )
    return jac


def local_pose(hmat: F64, c: F64) -> tuple[float, float, float, float, float]:
    """Scale, rotation [deg, clockwise on screen], anisotropy, determinant and shift [px] of
    ``hmat`` at the reference point ``c``."""
    jac = jacobian(hmat, c)
    if not np.all(np.isfinite(jac)):
        return math.nan, math.nan, math.inf, -1.0, math.inf
    det = float(np.linalg.det(jac))
    sv = np.linalg.svd(jac, compute_uv=False)
    a, b = (jac[0, 0] + jac[1, 1]) / 2.0, (jac[1, 0] - jac[0, 1]) / 2.0
    scale = math.hypot(a, b)
    rot = math.degrees(math.atan2(b, a))
    p = hmat @ np.array([c[0], c[1], 1.0])
    shift = float(np.hypot(*(p[:2] / p[2] - c))) if abs(p[2]) > 1e-12 else math.inf
    aniso = float(sv[0] / sv[1]) if sv[1] > 1e-12 else math.inf
    return scale, rot, aniso, det, shift
