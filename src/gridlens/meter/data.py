"""The digit-crop data set: loading, preprocessing and leave-meter-out splits.

The training data is the "Tenth-of-step-of-a-meter-digit" collection (haverland, Apache-2.0):
23,800 crops of single digit wheels from real meters, each labelled with the wheel position
to a tenth (``3.7`` = 70 % of the way from 3 to 4).  ``labels.csv`` gives ``path, label,
group, meter_kind``; ``group`` is the source folder, which for most crops names one meter
model or one installation, sometimes split over several dated folders.

:func:`meter_family` folds those folders into one *family* per meter model (dates,
``labeled_*`` and ``manual`` suffixes removed).  Families of the mixed collections
(``collected_new``, ``jomjol_*``, ``neural-network-autotrain-*``, ...) hold crops of many
unnamed meters: they are always used for training and never held out, because nothing says
which meter a crop came from.  Every *named* family is assigned to one of
:data:`N_FOLDS` folds by a hash of its name, so a leave-meter-out split is reproducible and
chosen without looking at the results: fold ``k`` is held out, the model never sees a crop
of those meter models.

Every crop goes through :func:`preprocess`: grayscale, resized to :data:`INPUT_HW` with area
interpolation.  Intensity standardisation happens inside the network, so ONNX and PyTorch
see the same uint8 pixels.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import DataFormatError, NotFoundError, ParameterError

__all__ = [
    "INPUT_HW",
    "MIXED_FAMILIES",
    "N_FOLDS",
    "DigitSet",
    "circular_error",
    "data_root",
    "load_digit_set",
    "meter_family",
    "preprocess",
]

#: Network input (height, width), grayscale.
INPUT_HW: tuple[int, int] = (48, 32)
#: Number of leave-meter-out folds over the named meter families.
N_FOLDS = 5
#: Collections that mix many unnamed meters; never held out.
MIXED_FAMILIES = frozenset(
    {
        "collected_new",
        "jomjol_update",
        "jomjol_images",
        "neural-network-autotrain-digital-counter",
        "neural-network-autotrain-digital-counter_ziffer_raw",
        "ziffer_raw",
        "single-image-crops",
    }
)


def data_root() -> Path:
    """Where the shared data lives: ``$GRIDLENS_DATA`` or ``../shared/data`` of the repo."""
    env = os.environ.get("GRIDLENS_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def meter_family(group: str) -> str:
    """Fold a ``labels.csv`` group (source folder) into its meter-model family.

    >>> meter_family("collected_powermeter_ISKRA.T3F-01S1_20250630_20250527")
    'collected_powermeter_iskra_t3f-01s1'
    >>> meter_family("collected_gasmeter_GMT_iotson_20220516_04")
    'collected_gasmeter_gmt_iotson'
    """
    if re.match(r"^\d\.\d_", group):
        # folders named after one source photo: a handful of crops each, meters unknown
        return "single-image-crops"
    g = group.lower().replace(".", "_")
    g = re.sub(r"_manual$", "", g)
    g = re.sub(r"_labeled.*$", "", g)
    g = re.sub(r"(_\d{8}(-\d+)?)+(_\d+)?$", "", g)
    return g


def family_fold(family: str) -> int | None:
    """The leave-meter-out fold of a family (``None`` for the mixed collections)."""
    if family in MIXED_FAMILIES:
        return None
    return int(hashlib.sha1(family.encode()).hexdigest(), 16) % N_FOLDS


def preprocess(crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """One digit crop (BGR, BGRA or gray, any size) → uint8 array of shape :data:`INPUT_HW`."""
    if crop.ndim == 3:
        if crop.shape[2] == 4:
            crop = np.asarray(cv2.cvtColor(crop, cv2.COLOR_BGRA2GRAY), np.uint8)
        elif crop.shape[2] == 3:
            crop = np.asarray(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), np.uint8)
        else:
            crop = crop[:, :, 0]
    if crop.ndim != 2 or crop.shape[0] < 4 or crop.shape[1] < 4:
        raise DataFormatError(f"a digit crop must be at least 4x4 pixels, got shape {crop.shape}")
    h, w = INPUT_HW
    out = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out, dtype=np.uint8)


def circular_error(pred: npt.ArrayLike, label: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Absolute wheel-position error on the circle of 10 (9.9 and 0.0 are 0.1 apart)."""
    d = np.abs(np.asarray(pred, np.float64) - np.asarray(label, np.float64)) % 10.0
    return np.asarray(np.minimum(d, 10.0 - d), np.float64)


@dataclass(frozen=True)
class DigitSet:
    """Preprocessed crops with their labels and provenance (parallel arrays)."""

    images: npt.NDArray[np.uint8]  # (n, H, W)
    labels: npt.NDArray[np.float32]  # wheel position in [0, 10)
    families: npt.NDArray[np.str_]
    kinds: npt.NDArray[np.str_]
    paths: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def folds(self) -> npt.NDArray[np.int64]:
        """Fold per crop, -1 for the mixed collections."""
        lut = {f: family_fold(f) for f in set(self.families.tolist())}
        return np.array([-1 if lut[f] is None else lut[f] for f in self.families], np.int64)

    def subset(self, mask: npt.NDArray[np.bool_]) -> DigitSet:
        return DigitSet(
            self.images[mask],
            self.labels[mask],
            self.families[mask],
            self.kinds[mask],
            self.paths[mask],
        )

    def split(self, holdout_fold: int | None) -> tuple[DigitSet, DigitSet]:
        """(train, held-out) for one leave-meter-out fold; ``None`` trains on everything."""
        if holdout_fold is None:
            empty = np.zeros(len(self), bool)
            return self, self.subset(empty)
        if not 0 <= holdout_fold < N_FOLDS:
            raise ParameterError(
                f"The 'holdout_fold' must be in [0, {N_FOLDS - 1}]. Got {holdout_fold!r} instead."
            )
        test = self.folds == holdout_fold
        return self.subset(~test), self.subset(test)


def _read_crop(path: Path) -> npt.NDArray[np.uint8]:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataFormatError(f"cannot decode the digit crop {path}")
    return np.asarray(img, np.uint8)


def load_digit_set(
    root: Path | str | None = None,
    *,
    cache: bool = True,
    limit: int | None = None,
    families: Sequence[str] | None = None,
) -> DigitSet:
    """Load ``meter-digits/labels.csv`` and every crop, preprocessed.

    The first full load decodes 23,800 JPEGs (~15 s); the result is cached next to the user's
    cache (``$XDG_CACHE_HOME/gridlens``) keyed by the labels file's size and mtime.
    ``limit`` keeps every n-th crop so that about ``limit`` remain (for tests); ``families``
    keeps only those meter families.
    """
    folder = Path(root) if root is not None else data_root() / "meter-digits"
    labels_csv = folder / "labels.csv"
    if not labels_csv.is_file():
        raise NotFoundError(
            f"{labels_csv} not found: point GRIDLENS_DATA at the folder holding meter-digits/"
        )
    st = labels_csv.stat()
    h, w = INPUT_HW
    key = f"{st.st_size}-{int(st.st_mtime)}-{h}x{w}"
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gridlens"
    cache_file = cache_dir / f"meter-digits-{key}.npz"
    if cache and cache_file.is_file():
        z = np.load(cache_file, allow_pickle=False)
        full = DigitSet(z["images"], z["labels"], z["families"], z["kinds"], z["paths"])
    else:
        full = _load_uncached(folder, labels_csv)
        if cache:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp.npz")
            np.savez(
                tmp,
                images=full.images,
                labels=full.labels,
                families=full.families,
                kinds=full.kinds,
                paths=full.paths,
            )
            tmp.replace(cache_file)
    mask = np.ones(len(full), bool)
    if families is not None:
        mask &= np.isin(full.families, np.asarray(list(families)))
    if limit is not None and limit < int(mask.sum()):
        idx = np.flatnonzero(mask)
        keep = idx[np.linspace(0, idx.size - 1, limit).round().astype(int)]
        mask = np.zeros(len(full), bool)
        mask[keep] = True
    return full.subset(mask) if not mask.all() else full


def _load_uncached(folder: Path, labels_csv: Path) -> DigitSet:
    with labels_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"path", "label", "group"} <= set(rows[0]):
        raise DataFormatError(f"{labels_csv} must have the columns path,label,group,meter_kind")
    h, w = INPUT_HW
    images = np.empty((len(rows), h, w), np.uint8)
    for i, row in enumerate(rows):
        images[i] = preprocess(_read_crop(folder / row["path"]))
    labels = np.array([float(r["label"]) for r in rows], np.float32)
    if labels.min() < 0 or labels.max() >= 10:
        raise DataFormatError(f"{labels_csv}: labels must lie in [0, 10)")
    return DigitSet(
        images,
        labels,
        np.array([meter_family(r["group"]) for r in rows]),
        np.array([r.get("meter_kind", "") for r in rows]),
        np.array([r["path"] for r in rows]),
    )
