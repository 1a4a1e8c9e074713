"""Align a meter photo to its reference image, then cut out the digit boxes.

The ROI boxes are drawn once, on a reference photo. The camera, or the meter in its
cabinet, moves a little between photos, so each photo is mapped into the reference frame by
a homography H (reference pixel -> photo pixel) before the boxes are cut.

**Markers** (when the ROI lists marker boxes). Each marker is a patch of the reference
around a distinctive printed feature. It is found in two stages.

1. *Coarse.* Zero-mean normalised cross-correlation (``TM_CCOEFF_NORMED``) at half
   resolution, in a search window of +-15 % of the image size around the marker's reference
   position. A similarity transform fitted to these positions (least squares; with 3+
   markers the worst one is dropped if it disagrees) gives a first H.
2. *Fine, twice.* The neighbourhood of each marker is rectified with the current H, and the
   template is matched again at full resolution within a few pixels, with a parabolic
   sub-pixel peak. The offset found there, mapped through H, corrects the marker's image
   position. With 4+ markers a homography is fitted, with 3 an affine map, with 2 a
   similarity. Rectifying first means that rotation and perspective no longer blur the
   correlation peak.

**Features** (no markers, or the markers fail).

1. *Coarse.* ORB keypoints are found at half resolution; in the reference only outside the
   counter window, because the digits change. Keypoints of the photo are matched to them by
   brute-force Hamming distance with Lowe's ratio test (0.8). A RANSAC similarity with a
   loose threshold, so that it tolerates perspective, rejects gross outliers. A RANSAC
   homography (4 px) on the remaining matches gives a first H, good to a pixel or two.
2. *Fine.* In ``__init__``, up to 12 well-spread reference patches are chosen outside the
   counter: corner-like (structure-tensor minimum eigenvalue) and unique within their own
   width. They are then used like markers in the two fine passes. A RANSAC homography
   (1.5 px) through them replaces H when at least 6 agree.

ECC refinement was not needed: both methods recover the renderer's camera homography to
about 0.1 px on synthetic photos.

**Checks.** A transform is refused (:class:`~gridlens.errors.ComputationError`) when its
local scale at the counter is outside 0.8-1.25, its rotation is above 15 degrees, it
stretches one axis more than 1.25 times the other, or it mirrors the image. It is also
refused when the aligned photo correlates with the reference below ``min_score``. The score
is the zero-mean normalised correlation of high-passed images (minus a 2 px Gaussian blur)
at quarter resolution. It covers the area around the counter and markers and leaves out the
digit boxes. High-passing makes the score measure structure rather than large uniform areas
or lighting: a correct alignment scores about 0.9, the reference upside down about 0.4.
With ``"auto"``, a marker result that fails a check falls back to features.

All reference-side work (templates, keypoints, descriptors, patches, masks) is done once in
:class:`Aligner`. :meth:`Aligner.align` of a 640x480 photo takes about 2.5 ms with markers
and 6 ms with features on one core; it warps nothing itself. The marker and patch
refinements warp only their small neighbourhoods (about 15 us each) and the score works on
a quarter-resolution image made from the half-resolution one the coarse search uses.
:attr:`Alignment.warped` warps the whole photo on first use (about 3 ms for 640x480
colour), :meth:`Alignment.crop_digits` only the counter's rectangle (about 0.2 ms).
``Aligner`` holds no per-call state and can be shared between threads.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import ComputationError, ParameterError, check_param
from gridlens.meter.image import decode_image
from gridlens.meter.roi import Box, MeterROI

__all__ = ["Aligner", "Alignment", "crop_digits"]

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Method = Literal["auto", "markers", "features"]

_SEARCH_FRAC = 0.15  # marker search window: +- this fraction of the image size
_COARSE_MIN_NCC = 0.35
_FINE_MIN_NCC = 0.5
_FINE_MARGIN = (6, 3)  # px around each marker in the two fine passes
_MIN_MATCHES = 8
_RATIO = 0.8
_SCALE_RANGE = (0.8, 1.25)
_MAX_ROTATION_DEG = 15.0
_MAX_ANISOTROPY = 1.25
_SCORE_SCALE = 4  # the score is computed at 1/4 resolution
_N_FEATURES_REF = 500  # ORB runs at half resolution
_N_FEATURES_IMG = 400
_MIN_PATCHES = 6  # refined patches needed to replace the ORB homography
_HINT = "check that the camera still sees the meter face and that the photo is sharp"
_HINT_MARKERS = (
    "check that the camera still sees the meter face and that no glare or dirt covers the "
    "marked features"
)
_HINT_MOVED = (
    "check that the camera still sees the same meter face; if the camera was moved on "
    "purpose, take a new reference photo"
)


class _Failure(Exception):
    """Why one alignment method failed: a short reason and a hint for the user."""

    def __init__(self, reason: str, hint: str = _HINT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint
        self.method = ""


def _failure_message(failures: list[_Failure]) -> str:
    """One line: every method's reason, then the hint of the last method tried."""
    if len(failures) == 1:
        reasons = failures[0].reason
    else:
        reasons = "; ".join(f"{f.method}: {f.reason}" for f in failures)
    return f"could not align the image to the reference: {reasons}; {failures[-1].hint}"


@dataclass(frozen=True)
class Alignment:
    """The result of aligning one photo to the reference.

    The photo is warped into the reference frame only when asked: :attr:`warped` warps
    the whole frame (once, on first access), :meth:`crop_digits` only the counter, which
    is all a meter read needs and a small part of the frame's cost.

    Attributes
    ----------
    matrix : numpy.ndarray
        3x3 homography mapping reference-frame pixel coordinates to photo coordinates.
    method : str
        ``"markers"``, ``"features"`` or ``"identity"``.
    shift_px : float
        How far the counter's centre moved, in reference pixels.
    rotation_deg : float
        Rotation of the photo's content against the reference at the counter, in degrees.
        Positive is clockwise as seen on screen (image y points down), the angle of
        ``[[cos, -sin], [sin, cos]]`` in pixel coordinates.
    inliers : int
        Markers or feature matches that agree with the transform.
    score : float
        Zero-mean normalised correlation of the aligned photo with the reference around the
        counter, digit boxes excluded: 1 is identical, below ~0.5 means probably
        misaligned. 1.0 for ``"identity"``.
    photo : numpy.ndarray
        The photo as given to :meth:`Aligner.align`.
    scale : float
        Local scale of the photo against the reference at the counter.
    size : (int, int) or None
        The reference frame's (width, height); None for ``"identity"``.
    """

    matrix: F64
    method: str
    shift_px: float
    rotation_deg: float
    inliers: int
    score: float
    photo: U8 = field(repr=False)
    scale: float = 1.0
    size: tuple[int, int] | None = None

    @functools.cached_property
    def warped(self) -> U8:
        """The photo warped into the reference frame (same size as the reference; without
        a reference, the photo itself). Areas not seen by the camera are black."""
        if self.size is None:
            return self.photo
        return self._warp(0, 0, *self.size)

    def crop_digits(self, roi: MeterROI) -> list[U8]:
        """The digit boxes of the aligned photo: ``crop_digits(self.warped, roi)``, but
        warping only the boxes' bounding rectangle (unless :attr:`warped` was made).

        Raises
        ------
        ParameterError
            A box of ``roi`` lies outside the reference frame (for ``"identity"``, the
            photo).
        """
        if self.size is None or "warped" in self.__dict__ or not roi.digits:
            return crop_digits(self.warped, roi)
        roi.check_inside(*self.size)
        x0, y0 = min(b.x for b in roi.digits), min(b.y for b in roi.digits)
        x1, y1 = max(b.x2 for b in roi.digits), max(b.y2 for b in roi.digits)
        region = self._warp(x0, y0, x1 - x0, y1 - y0)
        return [region[b.y - y0 : b.y2 - y0, b.x - x0 : b.x2 - x0].copy() for b in roi.digits]

    def _warp(self, x: int, y: int, w: int, h: int) -> U8:
        """The reference-frame rectangle (x, y, w, h) of the aligned photo."""
        m = self.matrix
        if x or y:
            m = m @ np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])
        return _u8(
            cv2.warpPerspective(
                np.asarray(self.photo),
                m,
                (w, h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
        )


class Aligner:
    """Maps photos of one meter into the frame of its reference image.

    Parameters
    ----------
    reference_img : numpy.ndarray or None
        The reference photo (BGR or grayscale ``uint8``) that the ROI boxes refer to. None
        means no alignment: the ROI boxes are used in each photo's own pixels.
    roi : MeterROI
        Digit boxes and, optionally, marker boxes (``roi.reference.markers``).
    method : {"auto", "markers", "features"}
        ``"auto"`` uses markers when the ROI has them and falls back to features if they
        fail. The other two force one method.
    min_score : float
        Smallest accepted alignment score (see :attr:`Alignment.score`).

    Raises
    ------
    ParameterError
        A box outside the reference image, a marker on a featureless patch, or a bad
        option.
    ComputationError
        Feature matching is needed but the reference has too few distinctive features.
    """

    def __init__(
        self,
        reference_img: U8 | None,
        roi: MeterROI,
        *,
        method: Method = "auto",
        min_score: float = 0.5,
    ) -> None:
        check_param(
            method in ("auto", "markers", "features"),
            "method",
            "Aligner",
            "'auto', 'markers' or 'features'",
            method,
        )
        check_param(
            isinstance(min_score, int | float) and -1.0 <= min_score < 1.0,
            "min_score",
            "Aligner",
            "a number in [-1, 1)",
            min_score,
        )
        self.roi = roi
        self.method: Method = method
        self.min_score = float(min_score)
        self._ref: U8 | None = None
        if reference_img is None:
            if method != "auto":
                raise ParameterError(
                    f"method '{method}' needs a reference image; give one in the ROI file "
                    '("reference": {"image": ...}) or use method "auto"'
                )
            return
        ref = _to_gray(reference_img, "the reference image")
        self._ref = ref
        h, w = ref.shape
        self.size = (w, h)
        roi.check_inside(w, h)
        self._counter = _counter_box(roi)
        cx, cy = self._counter.center
        self._center = np.array([cx, cy], dtype=np.float64)

        # Markers: full- and half-resolution templates.
        self._markers = roi.markers
        self._use_markers = bool(self._markers) and method in ("auto", "markers")
        if method == "markers" and not self._markers:
            raise ParameterError(
                "method 'markers' needs marker boxes in the ROI file "
                '("reference": {"markers": [...]}); add 2-4 boxes around printed features '
                "or use method 'features'"
            )
        half = _u8(cv2.resize(ref, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
        # Score: quarter-resolution reference around counter and markers, digits masked out.
        self._score_ref, self._score_mask = _score_template(half, roi)
        self._tmpl: list[U8] = []
        self._tmpl_half: list[U8] = []
        self._marker_centers = np.array([b.center for b in self._markers], dtype=np.float64)
        for i, b in enumerate(self._markers, start=1):
            t = ref[b.y : b.y2, b.x : b.x2].copy()
            if b.w < 8 or b.h < 8 or float(t.std()) < 8.0:
                raise ParameterError(
                    f"marker box {i} of {len(self._markers)} (x={b.x}..{b.x2}, y={b.y}..{b.y2}) "
                    "is too small or nearly uniform in the reference image; put it around a "
                    "distinctive printed feature (a corner mark, a screw, a label corner), "
                    "at least 8x8 px"
                )
            self._tmpl.append(t)
            self._tmpl_half.append(half[b.y // 2 : b.y2 // 2, b.x // 2 : b.x2 // 2].copy())

        # Features: ORB at half resolution outside the counter window (digits change between
        # photos), plus automatically chosen patches for the full-resolution refinement.
        # With markers, "auto" needs the features only when the markers fail: they are
        # computed then (about 8 ms of a 10 ms build; a server builds one reader per meter
        # and process, so a restart with thousands of meters would pay it for each).
        self._use_features = method in ("auto", "features")
        self._kp_ref = np.zeros((0, 2), np.float32)
        self._des_ref: U8 | None = None
        self._patches: tuple[Box, ...] = ()
        self._patch_tmpl: list[U8] = []
        self._patch_centers = np.zeros((0, 2), np.float64)
        self._features_pending = self._use_features and self._use_markers
        self._half_ref = half
        if self._use_features and not self._features_pending:
            self._prepare_features()

    def _prepare_features(self) -> None:
        """ORB features of the reference and the patches of the full-resolution refinement."""
        ref, half = self._ref, self._half_ref
        assert ref is not None
        h, w = ref.shape
        mask = np.full((h, w), 255, np.uint8)
        c = self._counter
        pad = max(16, c.h // 3)
        mask[max(0, c.y - pad) : c.y2 + pad, max(0, c.x - pad) : c.x2 + pad] = 0
        mask_half = cv2.resize(mask, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
        kps, des = _orb(_N_FEATURES_REF).detectAndCompute(half, mask_half)
        if des is None or len(kps) < 2 * _MIN_MATCHES:
            if self.method == "features" or not self._use_markers:
                raise ComputationError(
                    f"the reference image has only {0 if des is None else len(kps)} "
                    f"distinctive features outside the counter (need {2 * _MIN_MATCHES}); "
                    "use a sharper, well-lit reference photo or add marker boxes"
                )
            self._use_features = False
        else:
            self._kp_ref = np.array([k.pt for k in kps], dtype=np.float32) * 2.0 + 0.5
            self._des_ref = _u8(des)
            self._patches = _auto_patches(ref, mask)
            self._patch_tmpl = [ref[b.y : b.y2, b.x : b.x2].copy() for b in self._patches]
            self._patch_centers = np.array(
                [b.center for b in self._patches], dtype=np.float64
            ).reshape(-1, 2)
        # last: a thread that sees it False finds every attribute set (two threads racing
        # here compute the same values twice, which is harmless)
        self._features_pending = False

    @classmethod
    def from_roi(cls, roi: MeterROI, *, method: Method = "auto", min_score: float = 0.5) -> Aligner:
        """Build an aligner from an ROI, loading ``roi.reference.image_path``.

        Without a reference (or without a reference image path) the aligner does no
        alignment (method ``"identity"``).

        Raises
        ------
        NotFoundError
            The reference image file does not exist.
        DataFormatError
            The reference image cannot be decoded.
        """
        ref = roi.reference
        if ref is None or ref.image_path is None:
            return cls(None, roi, method=method, min_score=min_score)
        return cls(decode_image(ref.image_path), roi, method=method, min_score=min_score)

    @property
    def has_reference(self) -> bool:
        """Whether photos are aligned (False: the identity is used)."""
        return self._ref is not None

    def align(self, img: U8) -> Alignment:
        """Map a photo into the reference frame.

        Parameters
        ----------
        img : numpy.ndarray
            BGR (H, W, 3) or grayscale (H, W) ``uint8`` photo. A photo of another size than
            the reference is first scaled to the reference width.

        Returns
        -------
        Alignment
            The warped photo, the transform and quality numbers.

        Raises
        ------
        ComputationError
            The photo cannot be aligned (too few markers or matches, an implausible
            transform, a low score).
        ParameterError
            ``img`` is not an image array, or (without a reference) an ROI box lies outside
            it.
        """
        gray = _to_gray(img, "the photo")
        if self._ref is None:
            h, w = gray.shape
            self.roi.check_inside(w, h)
            return Alignment(
                matrix=np.eye(3),
                method="identity",
                shift_px=0.0,
                rotation_deg=0.0,
                inliers=0,
                score=1.0,
                photo=img,
            )
        rw, rh = self.size
        ih, iw = gray.shape
        s = rw / iw
        if abs(s - 1.0) > 0.02 or abs(rh / ih - 1.0) > 0.02:
            ww, wh = max(16, round(iw * s)), max(16, round(ih * s))
            work = _u8(cv2.resize(gray, (ww, wh), interpolation=cv2.INTER_AREA))
            kx, ky = iw / ww, ih / wh  # work pixel centre u -> photo (u + 0.5) * k - 0.5
            to_img = np.array([[kx, 0, 0.5 * kx - 0.5], [0, ky, 0.5 * ky - 0.5], [0, 0, 1.0]])
        else:
            work, to_img = gray, np.eye(3)

        half = _u8(
            cv2.resize(work, (work.shape[1] // 2, work.shape[0] // 2), interpolation=cv2.INTER_AREA)
        )
        methods = []
        if self._use_markers:
            methods.append(("markers", self._align_markers))
        if self._use_features:
            methods.append(("features", self._align_features_lazily))
        failures: list[_Failure] = []
        for method, run in methods:
            try:
                hw, inliers = run(work, half)
                scale, rot, shift = self._check_plausible(hw)
                score = self._score(half, hw)
                if score < self.min_score:
                    raise _Failure(
                        f"the aligned image matches the reference poorly (score {score:.2f}, "
                        f"need {self.min_score:.2f})",
                        _HINT_MOVED,
                    )
                break
            except _Failure as exc:
                exc.method = method
                failures.append(exc)
        else:
            if not failures:  # pragma: no cover - __init__ always enables one method
                raise ComputationError("could not align the image: no alignment method is set")
            raise ComputationError(_failure_message(failures))
        matrix = to_img @ hw
        matrix /= matrix[2, 2]
        return Alignment(
            matrix=matrix,
            method=method,
            shift_px=shift,
            rotation_deg=rot,
            inliers=inliers,
            score=score,
            scale=scale,
            photo=img,
            size=self.size,
        )

    # -----------------------------------------------------------------------------------------

    def _align_features_lazily(self, gray: U8, half: U8) -> tuple[F64, int]:
        if self._features_pending:
            self._prepare_features()
            if not self._use_features:  # the reference has too few features
                raise _Failure(
                    "the reference image has too few distinctive features outside the counter",
                    "use a sharper, well-lit reference photo",
                )
        return self._align_features(gray, half)

    def _align_markers(self, gray: U8, half: U8) -> tuple[F64, int]:
        rw, rh = self.size
        mx, my = round(_SEARCH_FRAC * rw), round(_SEARCH_FRAC * rh)
        n = len(self._markers)
        idx: list[int] = []
        pts: list[tuple[float, float]] = []
        for i, (b, th) in enumerate(zip(self._markers, self._tmpl_half, strict=True)):
            x0, y0 = max(0, (b.x - mx) // 2), max(0, (b.y - my) // 2)
            x1, y1 = min(half.shape[1], (b.x2 + mx) // 2), min(half.shape[0], (b.y2 + my) // 2)
            if x1 - x0 < th.shape[1] + 2 or y1 - y0 < th.shape[0] + 2:
                continue
            res = cv2.matchTemplate(half[y0:y1, x0:x1], th, cv2.TM_CCOEFF_NORMED)
            _, best, _, loc = cv2.minMaxLoc(res)
            if best < _COARSE_MIN_NCC:
                continue
            # Displacement of the template at half resolution, doubled.
            dx, dy = _subpixel(res, loc)
            cx, cy = self._marker_centers[i]
            pts.append((cx + 2.0 * (x0 + dx - b.x // 2), cy + 2.0 * (y0 + dy - b.y // 2)))
            idx.append(i)
        if len(idx) < 2:
            raise _Failure(f"found {len(idx)} of {n} markers (need 2)", _HINT_MARKERS)
        src = self._marker_centers[idx]
        dst = np.array(pts, dtype=np.float64)
        keep = _drop_outlier(src, dst, 0.06 * float(np.ptp(src, axis=0).max()) + 4.0, "similarity")
        hmat = _fit(src[keep], dst[keep], similarity_only=True)
        for margin in _FINE_MARGIN:
            src, dst = _refine(
                gray, hmat, self._markers, self._tmpl, self._marker_centers, margin, _FINE_MIN_NCC
            )
            if len(src) < 2:
                raise _Failure(f"only {len(src)} of {n} markers match well (need 2)", _HINT_MARKERS)
            keep = _drop_outlier(src, dst, 0.03 * float(np.ptp(src, axis=0).max()) + 3.0, "affine")
            src, dst = src[keep], dst[keep]
            hmat = _fit(src, dst, similarity_only=False)
        return hmat, len(src)

    def _align_features(self, gray: U8, half: U8) -> tuple[F64, int]:
        assert self._des_ref is not None
        kps, des = _orb(_N_FEATURES_IMG).detectAndCompute(half, None)
        if des is None or len(kps) < _MIN_MATCHES:
            raise _Failure(
                f"only {0 if des is None else len(kps)} features in the image (need {_MIN_MATCHES})"
            )
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des, self._des_ref, k=2)
        qi: list[int] = []
        ti: list[int] = []
        for pr in pairs:
            if len(pr) == 2 and pr[0].distance < _RATIO * pr[1].distance:
                qi.append(pr[0].queryIdx)
                ti.append(pr[0].trainIdx)
        if len(qi) < _MIN_MATCHES:
            raise _Failure(f"only {len(qi)} feature matches (need {_MIN_MATCHES})")
        img_pts = np.array([kps[i].pt for i in qi], dtype=np.float32) * 2.0 + 0.5
        ref_pts = self._kp_ref[ti]
        rw, rh = self.size
        loose = 0.02 * max(rw, rh) + 4.0  # tolerates mild perspective
        sim, mask = cv2.estimateAffinePartial2D(
            ref_pts, img_pts, method=cv2.RANSAC, ransacReprojThreshold=loose, maxIters=2000
        )
        if sim is None or mask is None or int(mask.sum()) < _MIN_MATCHES:
            good = 0 if mask is None else int(mask.sum())
            raise _Failure(f"only {good} of {len(qi)} feature matches agree (need {_MIN_MATCHES})")
        sel = mask.ravel().astype(bool)
        hmat_cv, hmask = cv2.findHomography(ref_pts[sel], img_pts[sel], cv2.RANSAC, 4.0)
        if hmat_cv is None or hmask is None or int(hmask.sum()) < _MIN_MATCHES:
            good = 0 if hmask is None else int(hmask.sum())
            raise _Failure(
                f"only {good} feature matches fit one perspective transform (need {_MIN_MATCHES})"
            )
        inliers = int(hmask.sum())
        hmat: F64 = hmat_cv.astype(np.float64) / hmat_cv[2, 2]
        # Full-resolution refinement on the reference's own distinctive patches.
        for margin in _FINE_MARGIN:
            src, dst = _refine(
                gray, hmat, self._patches, self._patch_tmpl, self._patch_centers, margin, 0.6
            )
            if len(src) < _MIN_PATCHES:
                break
            href, rmask = cv2.findHomography(
                src.astype(np.float32), dst.astype(np.float32), cv2.RANSAC, 1.5
            )
            if href is None or rmask is None or int(rmask.sum()) < _MIN_PATCHES:
                break
            hmat = href.astype(np.float64) / href[2, 2]
        return hmat, inliers

    def _check_plausible(self, hmat: F64) -> tuple[float, float, float]:
        """Local scale, rotation [deg] and shift [px] at the counter; raise if implausible."""
        c = self._center
        jac = _jacobian(hmat, c)
        det = float(np.linalg.det(jac))
        sv = np.linalg.svd(jac, compute_uv=False)
        a, b = (jac[0, 0] + jac[1, 1]) / 2.0, (jac[1, 0] - jac[0, 1]) / 2.0
        scale = math.hypot(a, b)
        rot = math.degrees(math.atan2(b, a))
        p = hmat @ np.array([c[0], c[1], 1.0])
        shift = float(np.hypot(*(p[:2] / p[2] - c))) if abs(p[2]) > 1e-12 else math.inf
        problem = None
        if not np.all(np.isfinite(jac)) or det <= 0:
            problem = "the transform mirrors or collapses the image"
        elif not _SCALE_RANGE[0] <= scale <= _SCALE_RANGE[1]:
            problem = (
                f"the meter appears {scale:.2f} times its size in the reference "
                f"(allowed {_SCALE_RANGE[0]}-{_SCALE_RANGE[1]})"
            )
        elif abs(rot) > _MAX_ROTATION_DEG:
            problem = f"the meter appears rotated by {rot:.0f} degrees (allowed +-15)"
        elif sv[0] / sv[1] > _MAX_ANISOTROPY:
            problem = f"the meter appears stretched {sv[0] / sv[1]:.2f} times along one axis"
        if problem is not None:
            raise _Failure(problem, _HINT_MOVED)
        return scale, rot, shift

    def _score(self, half: U8, hmat: F64) -> float:
        """:attr:`Alignment.score` of ``hmat`` for a photo given at half resolution."""
        k = _SCORE_SCALE
        sh, sw = self._score_mask.shape
        small_img = _quarter(half)
        # Pixel centres: small pixel i covers full pixels k*i .. k*i + k - 1.
        up = np.array([[k, 0.0, (k - 1) / 2.0], [0.0, k, (k - 1) / 2.0], [0.0, 0.0, 1.0]])
        small = cv2.warpPerspective(
            small_img,
            np.linalg.inv(up) @ hmat @ up,
            (sw, sh),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        m = self._score_mask
        v = _highpass(small)[m]
        v -= v.mean()
        nv = float(np.sqrt(np.dot(v, v)))
        if nv < 1e-6:
            return 0.0
        return float(np.dot(v, self._score_ref) / nv)


def crop_digits(warped: U8, roi: MeterROI) -> list[U8]:
    """Cut each digit box out of an aligned image.

    Parameters
    ----------
    warped : numpy.ndarray
        The photo in the reference frame (:attr:`Alignment.warped`).
    roi : MeterROI
        The digit boxes.

    Returns
    -------
    list of numpy.ndarray
        One crop per digit box, left to right, exactly the box content (copies; BGR when the
        image is BGR). Resizing is left to the caller.

    Raises
    ------
    ParameterError
        A digit box lies outside the image.
    """
    arr = np.asarray(warped)
    check_param(
        arr.dtype == np.uint8 and arr.ndim in (2, 3),
        "warped",
        "crop_digits",
        "a uint8 image array",
        f"{arr.dtype} array of shape {arr.shape}",
    )
    h, w = arr.shape[:2]
    roi.check_inside(w, h)
    return [arr[b.y : b.y2, b.x : b.x2].copy() for b in roi.digits]


# ---------------------------------------------------------------------------------------------


def _refine(
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
        dx, dy = _subpixel(res, loc)
        p = hmat @ np.array([c[0] + dx - margin, c[1] + dy - margin, 1.0])
        src.append(c)
        dst.append(p[:2] / p[2])
    return np.array(src, dtype=np.float64).reshape(-1, 2), np.array(dst).reshape(-1, 2)


def _auto_patches(ref: U8, mask: U8) -> tuple[Box, ...]:
    """Choose up to 12 distinctive, well-spread reference patches outside ``mask == 0``.

    The reference is divided into a 4x3 grid. In each cell the candidates are ranked by the
    smaller eigenvalue of the structure tensor (corner strength). The first one that is
    unique within one patch width of itself is taken: its normalised correlation with every
    shift of more than 2 px must stay below 0.8.
    """
    h, w = ref.shape
    p = int(np.clip(round(0.04 * max(w, h)), 16, 48))
    half = p // 2
    eig = cv2.cornerMinEigenVal(ref, blockSize=max(3, half | 1), ksize=3)
    ok = cv2.erode(mask, np.ones((2 * p + 1, 2 * p + 1), np.uint8)) > 0
    ok[: 2 * p, :] = False
    ok[-2 * p :, :] = False
    ok[:, : 2 * p] = False
    ok[:, -2 * p :] = False
    score = np.where(ok, eig, 0.0)
    top = float(score.max())
    if top <= 0:
        return ()
    boxes: list[Box] = []
    step = max(2, half // 2)
    for gy in range(3):
        for gx in range(4):
            y0, y1 = gy * h // 3, (gy + 1) * h // 3
            x0, x1 = gx * w // 4, (gx + 1) * w // 4
            cell = score[y0:y1:step, x0:x1:step]
            order = np.argsort(cell, axis=None)[::-1][:8]
            for flat in order:
                if cell.flat[flat] < 0.05 * top:
                    break
                cy, cx = np.unravel_index(flat, cell.shape)
                x, y = x0 + int(cx) * step - half, y0 + int(cy) * step - half
                b = Box(x, y, p, p)
                if _unique(ref, b):
                    boxes.append(b)
                    break
    return tuple(boxes)


def _unique(ref: U8, b: Box) -> bool:
    h, w = ref.shape
    x0, y0 = max(0, b.x - b.w), max(0, b.y - b.h)
    x1, y1 = min(w, b.x2 + b.w), min(h, b.y2 + b.h)
    res = cv2.matchTemplate(ref[y0:y1, x0:x1], ref[b.y : b.y2, b.x : b.x2], cv2.TM_CCOEFF_NORMED)
    cx, cy = b.x - x0, b.y - y0
    res[max(0, cy - 2) : cy + 3, max(0, cx - 2) : cx + 3] = -1.0
    return float(res.max()) < 0.8


def _u8(a: object) -> U8:
    """View an OpenCV result (typed as a generic array) as uint8; no copy."""
    return np.asarray(a, dtype=np.uint8)


def _to_gray(img: U8, what: str) -> U8:
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
    return _u8(cv2.cvtColor(arr, code))


def _orb(n: int) -> cv2.ORB:
    return cv2.ORB.create(nfeatures=n, scaleFactor=1.2, nlevels=4, edgeThreshold=15, patchSize=31)


def _counter_box(roi: MeterROI) -> Box:
    x0 = min(b.x for b in roi.digits)
    y0 = min(b.y for b in roi.digits)
    x1 = max(b.x2 for b in roi.digits)
    y1 = max(b.y2 for b in roi.digits)
    return Box(x0, y0, x1 - x0, y1 - y0)


def _quarter(half: U8) -> U8:
    """Quarter resolution from half resolution (INTER_AREA: 2x2 means, OpenCV's fast path;
    the direct 4x4 means of the full image would cost ten times as much)."""
    h, w = half.shape
    return _u8(cv2.resize(half, (w // 2, h // 2), interpolation=cv2.INTER_AREA))


def _score_template(half: U8, roi: MeterROI) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Zero-mean, unit-norm quarter-resolution reference values and their mask, from the
    half-resolution reference (as photos are scored)."""
    k = _SCORE_SCALE
    small = _highpass(_quarter(half))
    sh, sw = small.shape
    boxes = [_counter_box(roi), *roi.markers]
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
    v = small[mask]
    v -= v.mean()
    nv = float(np.sqrt(np.dot(v, v)))
    if nv < 1e-6:
        nv = 1.0
    return (v / nv).astype(np.float32), mask


def _highpass(img: npt.ArrayLike) -> F32:
    """Image minus its Gaussian blur (sigma 2 px): structure without shading or glare."""
    f = np.asarray(img, dtype=np.float32)
    return f - np.asarray(cv2.GaussianBlur(f, (0, 0), 2.0), dtype=np.float32)


def _subpixel(res: npt.ArrayLike, loc: Sequence[int]) -> tuple[float, float]:
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


def _fit(src: F64, dst: F64, *, similarity_only: bool) -> F64:
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
        a = _similarity_lstsq(src, dst)
    if a is None:
        raise _Failure(
            "the matched markers are too close together",
            "put marker boxes near the corners of the meter face",
        )
    return np.vstack([np.asarray(a, dtype=np.float64), [0.0, 0.0, 1.0]])


def _similarity_lstsq(src: F64, dst: F64) -> F64 | None:
    """Least-squares similarity (Umeyama without reflection) as a 2x3 matrix."""
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


def _affine_lstsq(src: F64, dst: F64) -> F64 | None:
    """Least-squares affine map as a 2x3 matrix (None when degenerate)."""
    a = np.hstack([src, np.ones((len(src), 1))])
    sol, _, rank, _ = np.linalg.lstsq(a, dst, rcond=None)
    if rank < 3:
        return None
    return np.asarray(sol.T, dtype=np.float64)


def _drop_outlier(
    src: F64, dst: F64, tol: float, model: Literal["similarity", "affine"]
) -> npt.NDArray[np.bool_]:
    """Keep mask: drop the single worst point if the model misfits it and fits the rest.

    Needs one point more than the model's minimum (3 for a similarity, 4 for an affine map);
    with fewer points nothing can be checked and all are kept.
    """
    fit = _similarity_lstsq if model == "similarity" else _affine_lstsq
    keep = np.ones(len(src), bool)
    if len(src) < (3 if model == "similarity" else 4):
        return keep

    def max_err(m: npt.NDArray[np.bool_]) -> float:
        a = fit(src[m], dst[m])
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


def _jacobian(hmat: F64, c: F64) -> F64:
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
