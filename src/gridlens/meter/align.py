"""Align a meter photo to its reference image, then cut out the digit boxes.

The ROI boxes are drawn once, on a reference photo. The camera, or the meter in its
cabinet, moves between photos, so each photo is mapped into the reference frame by a
homography H (reference pixel -> photo pixel) before the boxes are cut. Photos may be
turned by any angle (a camera mounted at 35 degrees, or upside down), shifted, scaled by
+-25 % and lit differently.

**Stages.** A *coarse* stage gives a first H; a *fine* stage rectifies the neighbourhood
of each marker (or patch) with the current H and measures the remaining offset at full
resolution. Rectifying first means that rotation, scale and perspective no longer blur the
correlation peak, so the fine stages work at any angle. With ``"auto"`` they run in this
order, and the first accepted H is kept:

1. *Markers at the expected angle* (ROI with markers). The half-resolution photo is turned
   by ``roi.rotate`` (degrees counter-clockwise; 0 by default) about its centre, and each
   marker template is searched by zero-mean normalised cross-correlation
   (``TM_CCOEFF_NORMED``) within +-15 % of the image size around its reference position.
   A similarity fitted to the found positions (least squares [1]_; with 3+ markers the
   worst one is dropped if it disagrees) is refined twice at full resolution: with 4+
   markers a homography is fitted, with 3 an affine map, with 2 a similarity. This stage
   costs about 2.5 ms.
2. *ORB features* [2]_, when stage 1 fails (the photo is turned otherwise than expected,
   scaled, or markers are hidden), or when it rests on only 2 of 3+ markers (then the best
   score wins). ORB keypoints of the reference outside the counter window (the digits
   change) are matched to 800 keypoints of the photo at half resolution (Hamming distance,
   Lowe's ratio test 0.8). ORB is invariant to rotation and, through its 4-level pyramid,
   to scale. A RANSAC similarity with a loose threshold rejects gross outliers; a RANSAC
   homography (4 px) on its inliers replaces it if the two agree. From this pose the
   markers are searched again (+-8 %, in the photo rectified by it) and refined as in
   stage 1; without markers, or if they fail, up to 12 distinctive reference patches
   (corner-like by the structure tensor [3]_ and unique within their own width) are
   refined in three passes (12, 6, 3 px) and a RANSAC homography (1.5 px) through them
   replaces H when at least 6 agree. About 4-8 ms more.

The ORB keypoints and the patches are computed on first need (about 8 ms), so a reader
whose markers are found at the expected angle is built in about 2 ms. A known
``roi.rotate`` therefore saves the ORB stage on every photo of a turned camera.

ECC refinement was not needed: both fine stages recover the renderer's camera homography
to about 0.1 px on synthetic photos, and the real photos of ``meter-photos`` turned by any
angle map the digit boxes to within about 0.1 px of the unturned photo's alignment (1.5 px
for the frames of the old camera position, whose alignment rests on 2-3 markers).

**Checks.** A transform is refused (:class:`~gridlens.errors.ComputationError`) when its
local scale at the counter is outside 0.7-1.43, it stretches one axis more than 1.25 times
the other, it mirrors the image, or the counter does not lie inside the photo. Any rotation
is accepted, so the score decides whether the pose is right. It is the zero-mean
normalised correlation of high-passed images (minus a 2 px Gaussian blur) at quarter
resolution, over the part of the area around the counter and markers that the photo shows
(at least half of it), digit boxes left out. High-passing makes it measure structure rather
than large uniform areas or lighting: a correct alignment scores about 0.9, the reference
turned upside down and taken as upright about 0.4, so it is refused below ``min_score``
(0.5), while the same photo aligned with its 180-degree turn scores 1.

All reference-side work is done once in :class:`Aligner` (ORB and patches lazily, see
above). :meth:`Aligner.align` warps nothing but small neighbourhoods and a quarter-resolution
image. :attr:`Alignment.warped` warps the whole photo on first use (about 3 ms for 640x480
colour), :meth:`Alignment.crop_digits` only the counter's rectangle (about 0.2 ms).
``Aligner`` holds no per-call state and can be shared between threads.

References
----------
.. [1] S. Umeyama, "Least-squares estimation of transformation parameters between two
   point patterns", IEEE Trans. Pattern Anal. Mach. Intell. 13(4), 376-380, 1991.
   doi:10.1109/34.88573
.. [2] E. Rublee, V. Rabaud, K. Konolige and G. Bradski, "ORB: an efficient alternative to
   SIFT or SURF", Proc. IEEE ICCV 2011, 2564-2571. doi:10.1109/ICCV.2011.6126544
.. [3] J. Shi and C. Tomasi, "Good features to track", Proc. IEEE CVPR 1994, 593-600.
   doi:10.1109/CVPR.1994.323794
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import cv2
import numpy as np

from gridlens.errors import ComputationError, ParameterError, check_param
from gridlens.meter._align_geom import (
    F64,
    Failure,
    drop_outlier,
    fit,
    local_pose,
    rotation_about,
    subpixel,
)
from gridlens.meter._align_match import (
    U8,
    auto_patches,
    counter_box,
    halve,
    orb,
    refine,
    score,
    score_template,
    to_gray,
    u8,
)
from gridlens.meter.image import decode_image
from gridlens.meter.roi import Box, MeterROI

__all__ = ["Aligner", "Alignment", "crop_digits"]

_auto_patches = auto_patches  # its name before the split (gridlens.meter.suggest uses it)

Method = Literal["auto", "markers", "features"]

_SEARCH_FRAC = 0.15  # marker search window: +- this fraction of the image size
_SEEDED_FRAC = 0.08  # the same around a pose found by features
_COARSE_MIN_NCC = 0.35
_FINE_MIN_NCC = 0.5
_FINE_MARGIN = (6, 3)  # px around each marker in the two fine passes
_PATCH_MARGIN = (12, 6, 3)  # the same for the patches, after a less exact start
_MIN_MATCHES = 8
_RATIO = 0.8
_SCALE_RANGE = (0.7, 1.43)  # +-25 % and some room, symmetric in log scale
_MAX_ANISOTROPY = 1.25
_MIN_COVERED = 0.5  # share of the scored area that the photo must show
_N_FEATURES_REF = 500  # ORB runs at half resolution
_N_FEATURES_IMG = 800  # 400 left too few matches on photos at 0.75 scale
_MIN_PATCHES = 6  # refined patches needed to replace the ORB homography
_HINT_MARKERS = (
    "check that the camera still sees the meter face and that no glare or dirt covers the "
    "marked features"
)
_HINT_MOVED = (
    "check that the camera still sees the same meter face; if the camera was moved on "
    "purpose, take a new reference photo"
)


class _Found(NamedTuple):
    """An accepted transform (reference -> working image) and its numbers."""

    hmat: F64
    method: str
    coarse: str
    inliers: int
    scale: float
    rotation: float
    shift: float
    score: float


def _failure_message(failures: list[Failure]) -> str:
    """One line: every stage's reason, then the hint of the last stage tried."""
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
        ``[[cos, -sin], [sin, cos]]`` in pixel coordinates; in (-180, 180]. A camera
        turned as ``roi.rotate`` says gives about ``-roi.rotate`` (mod 360).
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
    coarse : str
        What gave the first estimate that :attr:`method` refined: ``"markers"`` (template
        search at the expected angle) or ``"features"`` (ORB matching); ``""`` for
        ``"identity"``.
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
    coarse: str = ""

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

    def crop_boxes(self, boxes: Sequence[Box]) -> list[U8]:
        """Each reference-frame box of the aligned photo (e.g. the dials), warped one by one."""
        if "warped" in self.__dict__ or self.size is None:
            arr = self.warped
            return [arr[b.y : b.y2, b.x : b.x2].copy() for b in boxes]
        return [self._warp(b.x, b.y, b.w, b.h) for b in boxes]

    def _warp(self, x: int, y: int, w: int, h: int) -> U8:
        """The reference-frame rectangle (x, y, w, h) of the aligned photo."""
        m = self.matrix
        if x or y:
            m = m @ np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])
        return u8(
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
        Digit boxes, optionally marker boxes (``roi.reference.markers``) and the expected
        turn of the photos (``roi.rotate``, degrees counter-clockwise; a hint only).
    method : {"auto", "markers", "features"}
        How the final transform is measured. ``"auto"`` uses markers when the ROI has them
        and falls back to features if they fail. ``"markers"`` uses only the markers for
        the final transform (features may still give the first estimate when the markers
        are not found at the expected angle); ``"features"`` never uses the markers.
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
        ref = to_gray(reference_img, "the reference image")
        self._ref = ref
        h, w = ref.shape
        self.size = (w, h)
        roi.check_inside(w, h)
        self._counter = counter_box(roi)
        cx, cy = self._counter.center
        self._center = np.array([cx, cy], dtype=np.float64)
        self._counter_corners = np.array([self._counter.corners()], np.float64)
        self._rotate = float(roi.rotate) % 360.0

        # Markers: full- and half-resolution templates.
        self._markers = roi.markers
        self._use_markers = bool(self._markers) and method in ("auto", "markers")
        if method == "markers" and not self._markers:
            raise ParameterError(
                "method 'markers' needs marker boxes in the ROI file "
                '("reference": {"markers": [...]}); add 2-4 boxes around printed features '
                "or use method 'features'"
            )
        half = halve(ref)
        # Score: quarter-resolution reference around counter and markers, digits masked out.
        self._score_ref, self._score_mask = score_template(half, roi)
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
        # photos) for the first estimate, and automatically chosen patches for the
        # full-resolution refinement without markers. With markers, both are needed only
        # when the markers are not found at the expected angle, and are computed then (about
        # 8 ms of a 10 ms build; a server builds one reader per meter and process, so a
        # restart with thousands of meters would pay it for each).
        self._half_ref = half
        self._use_orb = True
        self._use_patches = method in ("auto", "features")
        self._kp_ref = np.zeros((0, 2), np.float32)
        self._des_ref: U8 | None = None
        self._patches: tuple[Box, ...] = ()
        self._patch_tmpl: list[U8] = []
        self._patch_centers = np.zeros((0, 2), np.float64)
        self._orb_pending = True
        self._patches_pending = self._use_patches
        if not self._use_markers:
            self._prepare_orb()
            self._prepare_patches()

    def _feature_mask(self) -> U8:
        """255 outside the counter window (with a margin), 0 inside."""
        assert self._ref is not None
        h, w = self._ref.shape
        mask = np.full((h, w), 255, np.uint8)
        c = self._counter
        pad = max(16, c.h // 3)
        mask[max(0, c.y - pad) : c.y2 + pad, max(0, c.x - pad) : c.x2 + pad] = 0
        return mask

    def _prepare_orb(self) -> None:
        """ORB keypoints and descriptors of the reference outside the counter."""
        if not self._orb_pending:
            return
        half = self._half_ref
        mask_half = cv2.resize(
            self._feature_mask(), (half.shape[1], half.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        kps, des = orb(_N_FEATURES_REF).detectAndCompute(half, mask_half)
        if des is None or len(kps) < 2 * _MIN_MATCHES:
            if not self._use_markers:
                raise ComputationError(
                    f"the reference image has only {0 if des is None else len(kps)} "
                    f"distinctive features outside the counter (need {2 * _MIN_MATCHES}); "
                    "use a sharper, well-lit reference photo or add marker boxes"
                )
            self._use_orb = False
            self._use_patches = False
        else:
            self._kp_ref = np.array([k.pt for k in kps], dtype=np.float32) * 2.0 + 0.5
            self._des_ref = u8(des)
        # last: a thread that sees it False finds every attribute set (two threads racing
        # here compute the same values twice, which is harmless)
        self._orb_pending = False

    def _prepare_patches(self) -> None:
        """The reference patches of the full-resolution refinement without markers."""
        if not self._patches_pending:
            return
        ref = self._ref
        assert ref is not None
        self._patches = auto_patches(ref, self._feature_mask())
        self._patch_tmpl = [ref[b.y : b.y2, b.x : b.x2].copy() for b in self._patches]
        self._patch_centers = np.array([b.center for b in self._patches], dtype=np.float64)
        self._patch_centers = self._patch_centers.reshape(-1, 2)
        self._patches_pending = False

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
            the reference is first scaled so that its long side (for a photo of the other
            orientation) or its width matches the reference.

        Returns
        -------
        Alignment
            The transform and quality numbers; the warped photo on demand.

        Raises
        ------
        ComputationError
            The photo cannot be aligned (too few markers or matches, an implausible
            transform, a low score).
        ParameterError
            ``img`` is not an image array, or (without a reference) an ROI box lies outside
            it.
        """
        gray = to_gray(img, "the photo")
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
        work, to_img = self._rescale(gray)
        half = halve(work)
        failures: list[Failure] = []
        found = self._search(work, half, failures)
        if found is None:
            if not failures:  # pragma: no cover - __init__ always enables one method
                raise ComputationError("could not align the image: no alignment method is set")
            raise ComputationError(_failure_message(failures))
        matrix = to_img @ found.hmat
        matrix /= matrix[2, 2]
        return Alignment(
            matrix=matrix,
            method=found.method,
            shift_px=found.shift,
            rotation_deg=found.rotation,
            inliers=found.inliers,
            score=found.score,
            scale=found.scale,
            photo=img,
            size=self.size,
            coarse=found.coarse,
        )

    # -----------------------------------------------------------------------------------------

    def _rescale(self, gray: U8) -> tuple[U8, F64]:
        """The photo at the reference's scale, and the map from its pixels to the photo's."""
        rw, rh = self.size
        ih, iw = gray.shape
        turned = (iw > ih) != (rw > rh) and iw != ih and rw != rh
        s = max(rw, rh) / max(iw, ih) if turned else rw / iw
        if abs(s - 1.0) <= 0.02:
            return gray, np.eye(3)
        ww, wh = max(16, round(iw * s)), max(16, round(ih * s))
        work = u8(cv2.resize(gray, (ww, wh), interpolation=cv2.INTER_AREA))
        kx, ky = iw / ww, ih / wh  # work pixel centre u -> photo (u + 0.5) * k - 0.5
        to_img = np.array([[kx, 0, 0.5 * kx - 0.5], [0, ky, 0.5 * ky - 0.5], [0, 0, 1.0]])
        return work, to_img

    def _seed(self, shape: tuple[int, ...]) -> F64:
        """The expected pose: the photo's centre shows the reference's centre, turned by
        ``roi.rotate``. The identity for an unturned photo of the reference's size."""
        rw, rh = self.size
        wh, ww = shape[:2]
        if self._rotate == 0.0 and (ww, wh) == (rw, rh):
            return np.eye(3)
        return rotation_about(
            self._rotate, ((rw - 1) / 2.0, (rh - 1) / 2.0), ((ww - 1) / 2.0, (wh - 1) / 2.0)
        )

    def _search(self, work: U8, half: U8, failures: list[Failure]) -> _Found | None:
        """Try the stages in turn: the best accepted transform, or None (``failures`` then
        says why each stage failed).

        A marker fit that rests on fewer than 3 markers (of 3 or more) is accepted only if
        no later stage scores higher.
        """
        best: _Found | None = None
        strong = min(3, len(self._markers))
        if self._use_markers:
            seed = self._seed(work.shape)
            best = self._attempt(
                ("markers", "markers"),
                failures,
                work,
                half,
                lambda: self._fine_markers(work, self._coarse_markers(half, seed, _SEARCH_FRAC)),
            )
            if best is not None and best.inliers >= strong:
                return best
        if self._orb_pending:
            self._prepare_orb()
        if not self._use_orb:
            if not failures and best is None:  # pragma: no cover - __init__ raised instead
                failures.append(Failure("the reference image has too few distinctive features"))
            return best
        try:
            hc, n_matches = self._coarse_features(half)
        except Failure as exc:
            exc.method = "features"
            failures.append(exc)
            return best
        if self._use_markers:
            got = self._attempt(
                ("markers", "features"),
                failures,
                work,
                half,
                lambda: self._fine_markers(work, self._coarse_markers(half, hc, _SEEDED_FRAC)),
            )
            if got is not None and (best is None or got.score > best.score):
                best = got
            if best is not None and best.inliers >= strong:
                return best
        if self._patches_pending:
            self._prepare_patches()
        if self._use_patches:
            got = self._attempt(
                ("features", "features"),
                failures,
                work,
                half,
                lambda: (self._fine_patches(work, hc), n_matches),
            )
            if got is not None and (best is None or got.score > best.score):
                best = got
        return best

    def _attempt(
        self,
        stage: tuple[str, str],
        failures: list[Failure],
        work: U8,
        half: U8,
        run: Callable[[], tuple[F64, int]],
    ) -> _Found | None:
        """Run one stage and check its transform; None (and a recorded reason) if refused.

        ``stage`` is (fine method, coarse method).
        """
        try:
            hmat, inliers = run()
            scale, rot, shift = self._check_plausible(hmat)
            h, w = work.shape
            corners = cv2.perspectiveTransform(self._counter_corners, hmat)[0]
            if not (
                np.all(corners >= -1.0)
                and np.all(corners[:, 0] <= w)
                and np.all(corners[:, 1] <= h)
            ):
                raise Failure("the counter is partly outside the photo", _HINT_MOVED)
            sc, covered = score(self._score_ref, self._score_mask, half, hmat)
            if covered < _MIN_COVERED:
                raise Failure(
                    f"the photo shows only {100 * covered:.0f} % of the meter face around "
                    f"the counter (need {100 * _MIN_COVERED:.0f} %)",
                    _HINT_MOVED,
                )
            if sc < self.min_score:
                raise Failure(
                    f"the aligned image matches the reference poorly (score {sc:.2f}, "
                    f"need {self.min_score:.2f})",
                    _HINT_MOVED,
                )
        except Failure as exc:
            exc.method = stage[0] if stage[0] == stage[1] else f"{stage[0]} at the {stage[1]} pose"
            failures.append(exc)
            return None
        return _Found(hmat, stage[0], stage[1], inliers, scale, rot, shift, sc)

    def _coarse_markers(self, half: U8, seed: F64, frac: float) -> F64:
        """A similarity from the markers found near their expected place.

        The half-resolution photo is first rectified by ``seed`` (unless it is the
        identity), so that the templates are searched upright and at their own scale.
        """
        rw, rh = self.size
        if np.array_equal(seed, np.eye(3)):
            rect = half
        else:
            d = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])  # half -> full
            rect = u8(
                cv2.warpPerspective(
                    half,
                    np.linalg.inv(d) @ seed @ d,
                    (rw // 2, rh // 2),
                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0,
                )
            )
        mx, my = round(frac * rw), round(frac * rh)
        n = len(self._markers)
        idx: list[int] = []
        pts: list[tuple[float, float]] = []
        for i, (b, th) in enumerate(zip(self._markers, self._tmpl_half, strict=True)):
            x0, y0 = max(0, (b.x - mx) // 2), max(0, (b.y - my) // 2)
            x1, y1 = min(rect.shape[1], (b.x2 + mx) // 2), min(rect.shape[0], (b.y2 + my) // 2)
            if x1 - x0 < th.shape[1] + 2 or y1 - y0 < th.shape[0] + 2:
                continue
            res = cv2.matchTemplate(rect[y0:y1, x0:x1], th, cv2.TM_CCOEFF_NORMED)
            _, best, _, loc = cv2.minMaxLoc(res)
            if best < _COARSE_MIN_NCC:
                continue
            # Displacement of the template at half resolution, doubled.
            dx, dy = subpixel(res, loc)
            cx, cy = self._marker_centers[i]
            pts.append((cx + 2.0 * (x0 + dx - b.x // 2), cy + 2.0 * (y0 + dy - b.y // 2)))
            idx.append(i)
        if len(idx) < 2:
            raise Failure(f"found {len(idx)} of {n} markers (need 2)", _HINT_MARKERS)
        src = self._marker_centers[idx]
        dst = np.array(pts, dtype=np.float64)
        keep = drop_outlier(src, dst, 0.06 * float(np.ptp(src, axis=0).max()) + 4.0, "similarity")
        out: F64 = seed @ fit(src[keep], dst[keep], similarity_only=True)
        return out

    def _fine_markers(self, gray: U8, hmat: F64) -> tuple[F64, int]:
        """Two full-resolution passes over the markers, rectified by the current transform."""
        n = len(self._markers)
        src = self._marker_centers
        for margin in _FINE_MARGIN:
            src, dst = refine(
                gray, hmat, self._markers, self._tmpl, self._marker_centers, margin, _FINE_MIN_NCC
            )
            if len(src) < 2:
                raise Failure(f"only {len(src)} of {n} markers match well (need 2)", _HINT_MARKERS)
            keep = drop_outlier(src, dst, 0.03 * float(np.ptp(src, axis=0).max()) + 3.0, "affine")
            src, dst = src[keep], dst[keep]
            hmat = fit(src, dst, similarity_only=False)
        return hmat, len(src)

    def _coarse_features(self, half: U8) -> tuple[F64, int]:
        """A first transform from ORB matches (any rotation, scale within ORB's pyramid).

        A RANSAC similarity with a loose threshold rejects gross outliers; a RANSAC
        homography (4 px) on its inliers replaces it when it agrees with it.
        """
        assert self._des_ref is not None
        kps, des = orb(_N_FEATURES_IMG).detectAndCompute(half, None)
        if des is None or len(kps) < _MIN_MATCHES:
            raise Failure(
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
            raise Failure(f"only {len(qi)} feature matches (need {_MIN_MATCHES})")
        img_pts = np.array([kps[i].pt for i in qi], dtype=np.float32) * 2.0 + 0.5
        ref_pts = self._kp_ref[ti]
        rw, rh = self.size
        loose = 0.02 * max(rw, rh) + 4.0  # tolerates mild perspective
        sim, mask = cv2.estimateAffinePartial2D(
            ref_pts, img_pts, method=cv2.RANSAC, ransacReprojThreshold=loose, maxIters=2000
        )
        if sim is None or mask is None or int(mask.sum()) < _MIN_MATCHES:
            good = 0 if mask is None else int(mask.sum())
            raise Failure(f"only {good} of {len(qi)} feature matches agree (need {_MIN_MATCHES})")
        sel = mask.ravel().astype(bool)
        n_sim = int(sel.sum())
        sim_h: F64 = np.vstack([np.asarray(sim, dtype=np.float64), [0.0, 0.0, 1.0]])
        hmat_cv, hmask = cv2.findHomography(ref_pts[sel], img_pts[sel], cv2.RANSAC, 4.0)
        if hmat_cv is None or hmask is None or int(hmask.sum()) < _MIN_MATCHES:
            return sim_h, n_sim
        hmat: F64 = hmat_cv.astype(np.float64) / hmat_cv[2, 2]
        # A homography from few or clustered matches can tilt wildly away from them; then
        # the similarity is the better start for the rectified searches.
        s1, r1, a1, d1, _ = local_pose(hmat, self._center)
        s0, r0, _, _, _ = local_pose(sim_h, self._center)
        turn = abs((r1 - r0 + 180.0) % 360.0 - 180.0)
        if d1 <= 0 or a1 > _MAX_ANISOTROPY or abs(math.log(s1 / s0)) > 0.1 or turn > 5.0:
            return sim_h, n_sim
        return hmat, int(hmask.sum())

    def _fine_patches(self, gray: U8, hmat: F64) -> F64:
        """Full-resolution refinement on the reference's own distinctive patches."""
        for margin in _PATCH_MARGIN:
            src, dst = refine(
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
        return hmat

    def _check_plausible(self, hmat: F64) -> tuple[float, float, float]:
        """Local scale, rotation [deg] and shift [px] at the counter; raise if implausible.

        Any rotation is accepted; a mirror image, a scale outside ``_SCALE_RANGE`` and a
        stretch of one axis against the other are not.
        """
        scale, rot, aniso, det, shift = local_pose(hmat, self._center)
        problem = None
        if not math.isfinite(scale) or det <= 0:
            problem = "the transform mirrors or collapses the image"
        elif not _SCALE_RANGE[0] <= scale <= _SCALE_RANGE[1]:
            problem = (
                f"the meter appears {scale:.2f} times its size in the reference "
                f"(allowed {_SCALE_RANGE[0]}-{_SCALE_RANGE[1]})"
            )
        elif aniso > _MAX_ANISOTROPY:
            problem = f"the meter appears stretched {aniso:.2f} times along one axis"
        if problem is not None:
            raise Failure(problem, _HINT_MOVED)
        return scale, rot, shift


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
