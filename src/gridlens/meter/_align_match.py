"""Image side of the alignment: templates, ORB keypoints, refinement patches, the score.

Private helpers of :mod:`gridlens.meter.align`.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import ParameterError
from gridlens.meter._align_geom import F64, subpixel
from gridlens.meter.roi import Box, MeterROI

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

SCORE_SCALE = 4  # the score is computed at 1/4 resolution


def u8(a: object) -> U8:
    """View an OpenCV result (typed as a generic array) as uint8; no copy."""
    return np.asarray(a, dtype=np.uint8)


def to_gray(img: U8, what: str) -> U8:
    """A grayscale view or copy of a uint8 image; ParameterError for anything else."""
    arr = np.asarray(img)
    ok = (
        isinstance(img, np.ndarray)
        and arr.dtype == np.uint8
        and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)))
        and min(arr.shape[:2]) >= 16
    )
    if not ok:
        raise ParameterError(
            f"{what} must be a uint8 image array of shape (H, W) or (H, W, 3), at least "
            f"16x16 px; got {arr.dtype} array of shape {arr.shape}"
        )
    if arr.ndim == 2:
        return arr
    if arr.shape[2] == 1:
        return np.ascontiguousarray(arr[:, :, 0])
    code = cv2.COLOR_BGR2GRAY if arr.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
    return u8(cv2.cvtColor(arr, code))


def orb(n: int) -> cv2.ORB:
    """ORB detector [1]_ with 4 pyramid levels 1.2 apart (scale changes up to ~1.7x).

    References
    ----------
    .. [1] E. Rublee, V. Rabaud, K. Konolige and G. Bradski, "ORB: an efficient alternative
       to SIFT or SURF", Proc. IEEE ICCV 2011, 2564-2571. doi:10.1109/ICCV.2011.6126544
    """
    return cv2.ORB.create(nfeatures=n, scaleFactor=1.2, nlevels=4, edgeThreshold=15, patchSize=31)


def counter_box(roi: MeterROI) -> Box:
    """The bounding box of all digit boxes (of the dials, for a register of dials only)."""
    boxes = roi.digits or tuple(d.box for d in roi.dials)
    x0 = min(b.x for b in boxes)
    y0 = min(b.y for b in boxes)
    x1 = max(b.x2 for b in boxes)
    y1 = max(b.y2 for b in boxes)
    return Box(x0, y0, x1 - x0, y1 - y0)


def halve(img: U8) -> U8:
    """Half resolution (INTER_AREA: 2x2 means, OpenCV's fast path)."""
    h, w = img.shape
    return u8(cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA))


def highpass(img: npt.ArrayLike) -> F32:
    """Image minus its Gaussian blur (sigma 2 px): structure without shading or glare."""
    f = np.asarray(img, dtype=np.float32)
    return f - np.asarray(cv2.GaussianBlur(f, (0, 0), 2.0), dtype=np.float32)


def score_template(half: U8, roi: MeterROI) -> tuple[F32, npt.NDArray[np.bool_]]:
    """High-passed quarter-resolution reference values and their mask, from the
    half-resolution reference (as photos are scored)."""
    k = SCORE_SCALE
    small = highpass(halve(half))
    sh, sw = small.shape
    boxes = [counter_box(roi), *roi.markers]
    x0 = min(b.x for b in boxes)
    y0 = min(b.y for b in boxes)
    x1 = max(b.x2 for b in boxes)
    y1 = max(b.y2 for b in boxes)
    pad_x = pad_y = round(0.25 * max(x1 - x0, y1 - y0))
    mask = np.zeros((sh, sw), bool)
    mask[
        max(0, (y0 - pad_y) // k) : (y1 + pad_y) // k, max(0, (x0 - pad_x) // k) : (x1 + pad_x) // k
    ] = True
    for b in roi.digits:
        mask[max(0, b.y // k - 1) : b.y2 // k + 1, max(0, b.x // k - 1) : b.x2 // k + 1] = False
    return small[mask].astype(np.float32), mask


def score(ref_values: F32, mask: npt.NDArray[np.bool_], half: U8, hmat: F64) -> tuple[float, float]:
    """Zero-mean normalised correlation of the aligned photo with the reference.

    ``half`` is the photo at half resolution, ``hmat`` maps reference pixels to (full
    resolution) photo pixels. Only the part of ``mask`` that the photo covers counts, and the
    reference values are normalised over that part.

    Returns
    -------
    (score, covered)
        The correlation (0 for a featureless photo) and the covered share of the mask.
    """
    k = SCORE_SCALE
    sh, sw = mask.shape
    small_img = halve(half)
    # Pixel centres: small pixel i covers full pixels k*i .. k*i + k - 1.
    up = np.array([[k, 0.0, (k - 1) / 2.0], [0.0, k, (k - 1) / 2.0], [0.0, 0.0, 1.0]])
    m = np.linalg.inv(up) @ hmat @ up
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    small = cv2.warpPerspective(
        small_img, m, (sw, sh), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
    # Which small reference pixels the photo sees (2 px in from its edge, where the
    # replicated border would bend the high-pass).
    ih, iw = small_img.shape
    inside = np.zeros((ih, iw), np.uint8)
    inside[2 : ih - 2, 2 : iw - 2] = 1
    seen = cv2.warpPerspective(
        inside, m, (sw, sh), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0
    )
    sel = seen[mask] > 0
    covered = float(sel.mean()) if sel.size else 0.0
    if covered < 1e-3:
        return 0.0, covered
    v = highpass(small)[mask][sel]
    r = ref_values[sel]
    v -= v.mean()
    r = r - r.mean()
    nv = float(np.sqrt(np.dot(v, v)))
    nr = float(np.sqrt(np.dot(r, r)))
    if nv < 1e-6 or nr < 1e-6:
        return 0.0, covered
    return float(np.dot(v, r) / (nv * nr)), covered


def refine(
    gray: U8,
    hmat: F64,
    boxes: tuple[Box, ...],
    templates: list[U8],
    centers: F64,
    margin: int,
    min_ncc: float,
) -> tuple[F64, F64]:
    """Re-find reference patches in a photo rectified by ``hmat``.

    Each box's neighbourhood (``margin`` px around it, in reference coordinates) is warped
    from the photo into the reference frame, and the box's template is matched there. The
    peak offset d (sub-pixel) means that the box centre c lies at H(c + d) in the photo.

    Returns
    -------
    (src, dst)
        Reference centres and their photo positions for the patches with NCC >= min_ncc.
    """
    src: list[F64] = []
    dst: list[F64] = []
    for b, tmpl, c in zip(boxes, templates, centers, strict=True):
        shift = np.array([[1.0, 0.0, b.x - margin], [0.0, 1.0, b.y - margin], [0.0, 0.0, 1.0]])
        patch = cv2.warpPerspective(
            gray,
            hmat @ shift,
            (b.w + 2 * margin, b.h + 2 * margin),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        res = cv2.matchTemplate(patch, tmpl, cv2.TM_CCOEFF_NORMED)
        _, best, _, loc = cv2.minMaxLoc(res)
        if best < min_ncc:
            continue
        dx, dy = subpixel(res, loc)
        p = hmat @ np.array([c[0] + dx - margin, c[1] + dy - margin, 1.0])
        src.append(c)
        dst.append(p[:2] / p[2])
    return np.array(src, dtype=np.float64).reshape(-1, 2), np.array(dst).reshape(-1, 2)


def auto_patches(ref: U8, mask: U8) -> tuple[Box, ...]:
    """Choose up to 12 distinctive, well-spread reference patches outside ``mask == 0``.

    The reference is divided into a 4x3 grid. In each cell the candidates are ranked by the
    smaller eigenvalue of the structure tensor (corner strength) [1]_. The first one that is
    unique within one patch width of itself is taken: its normalised correlation with every
    shift of more than 2 px must stay below 0.8.

    References
    ----------
    .. [1] J. Shi and C. Tomasi, "Good features to track", Proc. IEEE CVPR 1994, 593-600.
       doi:10.1109/CVPR.1994.323794
    """
    h, w = ref.shape
    p = int(np.clip(round(0.04 * max(w, h)), 16, 48))
    boxes: list[Box] = []
    for cell in grid_corners(ref, mask, patch=p, border=2 * p, per_cell=8):
        b = next((b for b in cell if _unique(ref, b)), None)
        if b is not None:
            boxes.append(b)
    return tuple(boxes)


def grid_corners(img: U8, mask: U8, *, patch: int, border: int, per_cell: int) -> list[list[Box]]:
    """Corner-like ``patch`` x ``patch`` boxes in each cell of a 4x3 grid over ``img``.

    Corner strength is the smaller eigenvalue of the structure tensor [1]_. A box must lie
    where ``mask`` is non-zero (eroded by the patch) and ``border`` px from the edges; per
    cell, up to ``per_cell`` candidates at least 5 % as strong as the strongest anywhere,
    strongest first.

    References
    ----------
    .. [1] J. Shi and C. Tomasi, "Good features to track", Proc. IEEE CVPR 1994, 593-600.
       doi:10.1109/CVPR.1994.323794
    """
    h, w = img.shape
    half = patch // 2
    eig = cv2.cornerMinEigenVal(img, blockSize=max(3, half | 1), ksize=3)
    ok = cv2.erode(mask, np.ones((border + 1, border + 1), np.uint8)) > 0
    ok[:border, :] = False
    ok[-border:, :] = False
    ok[:, :border] = False
    ok[:, -border:] = False
    strength = np.where(ok, eig, 0.0)
    top = float(strength.max())
    if top <= 0:
        return []
    cells: list[list[Box]] = []
    step = max(2, half // 2)
    for gy in range(3):
        for gx in range(4):
            y0, y1 = gy * h // 3, (gy + 1) * h // 3
            x0, x1 = gx * w // 4, (gx + 1) * w // 4
            cell = strength[y0:y1:step, x0:x1:step]
            found: list[Box] = []
            for flat in np.argsort(cell, axis=None)[::-1][:per_cell]:
                if cell.flat[flat] < 0.05 * top:
                    break
                cy, cx = np.unravel_index(flat, cell.shape)
                found.append(
                    Box(x0 + int(cx) * step - half, y0 + int(cy) * step - half, patch, patch)
                )
            cells.append(found)
    return cells


def _unique(ref: U8, b: Box) -> bool:
    h, w = ref.shape
    x0, y0 = max(0, b.x - b.w), max(0, b.y - b.h)
    x1, y1 = min(w, b.x2 + b.w), min(h, b.y2 + b.h)
    res = cv2.matchTemplate(ref[y0:y1, x0:x1], ref[b.y : b.y2, b.x : b.x2], cv2.TM_CCOEFF_NORMED)
    cx, cy = b.x - x0, b.y - y0
    res[max(0, cy - 2) : cy + 3, max(0, cx - 2) : cx + 3] = -1.0
    return float(res.max()) < 0.8
