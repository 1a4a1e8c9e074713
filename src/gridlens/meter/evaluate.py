"""Whole-meter accuracy on real data, with no forgiveness: what tests and benchmarks report.

Three measurements, each against what a careful person reads off the register
(:func:`gridlens.meter.carry.register_value`, the convention in :mod:`gridlens.meter.carry`):

* :func:`evaluate_series` reads a folder of real photos of one meter (``meter-photos/``
  layout: ``roi.json``, ``reference.jpg``, ``labels.csv`` whose ``digits`` column is the
  wheels as a person reads them) one by one and in sequence with memory, and counts exact
  readings and accepted decreases.
* :func:`box_robustness` draws the boxes off-centre (+-15 % of their height, each way),
  20 % too big or too small, or each one jittered, and counts the photos whose reading is
  unchanged once the boxes are refined against the reference.
* :func:`composed_meters` builds counters from real wheel crops of the digit model's
  held-out meter families (a true count, odometer positions to a tenth, one real crop per
  wheel with that label) and counts the exact readings.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gridlens.errors import NotFoundError
from gridlens.meter.carry import register_value, resolve_wheels
from gridlens.meter.data import data_root
from gridlens.meter.image import decode_image
from gridlens.meter.model import DigitReader, load_reader
from gridlens.meter.reading import MeterReader, MeterSession
from gridlens.meter.roi import Box, MeterROI, load_roi
from gridlens.meter.synth import wheel_positions

__all__ = [
    "DISPLACEMENTS",
    "DialSetResult",
    "PhotoSet",
    "box_robustness",
    "composed_meters",
    "displace",
    "evaluate_dial_meter",
    "evaluate_series",
    "load_dial_set",
    "load_photo_set",
    "series_folders",
]

#: Box displacements of the robustness table: name -> (dx, dy [box heights], scale, jitter).
DISPLACEMENTS: dict[str, tuple[float, float, float, float]] = {
    "down 15 %": (0.0, 0.15, 1.0, 0.0),
    "up 15 %": (0.0, -0.15, 1.0, 0.0),
    "right 15 %": (0.15, 0.0, 1.0, 0.0),
    "left 15 %": (-0.15, 0.0, 1.0, 0.0),
    "20 % too big": (0.0, 0.0, 1.2, 0.0),
    "20 % too small": (0.0, 0.0, 0.8, 0.0),
    "each +-15 % (random)": (0.0, 0.0, 1.0, 0.15),
    "down 15 %, too big": (0.0, 0.15, 1.2, 0.0),
    "up 15 %, too small": (0.0, -0.15, 0.8, 0.0),
}


@dataclass(frozen=True)
class PhotoSet:
    """A folder of real photos of one meter with the values a person reads."""

    folder: Path
    roi: MeterROI
    files: tuple[str, ...]
    truth: tuple[float, ...]  # the ``digits`` column as a value

    @property
    def name(self) -> str:
        return self.folder.name


def load_photo_set(folder: Path | str) -> PhotoSet:
    """Read ``roi.json`` and ``labels.csv`` of a ``meter-photos`` folder."""
    folder = Path(folder)
    if not (folder / "labels.csv").is_file():
        raise NotFoundError(f"{folder}: no labels.csv (a meter-photos folder is expected)")
    roi = load_roi(folder / "roi.json")
    files, truth = [], []
    with open(folder / "labels.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            files.append(row["file"])
            truth.append(int(row["digits"]) / 10**roi.decimals)
    return PhotoSet(folder, roi, tuple(files), tuple(truth))


@dataclass
class SeriesResult:
    """Counts of :func:`evaluate_series` (single = each photo alone; sequence = with memory)."""

    n: int
    exact_single: int
    rejected_single: int
    exact_sequence: int
    accepted_decreases: int
    values: list[float | None] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "values"}


def _same(value: float | None, truth: float, decimals: int) -> bool:
    return value is not None and round(value * 10**decimals) == round(truth * 10**decimals)


def evaluate_series(
    ps: PhotoSet, roi: MeterROI | None = None, *, model: DigitReader | None = None
) -> SeriesResult:
    """Read every photo of ``ps`` alone and in sequence (files by name, i.e. by time)."""
    roi = roi or ps.roi
    reader = MeterReader(roi, model=model)
    dec = roi.decimals
    res = SeriesResult(len(ps.files), 0, 0, 0, 0)
    photos = {f: decode_image(ps.folder / f) for f in ps.files}  # decoded once for both passes
    for f, t in zip(ps.files, ps.truth, strict=True):
        r = reader.read(photos[f])
        res.values.append(r.value)
        res.rejected_single += r.status != "ok"
        if _same(r.value, t, dec):
            res.exact_single += 1
        else:
            res.misses.append(f"{f}: read {r.value} ({r.reason or r.raw}), person reads {t}")
    truth = dict(zip(ps.files, ps.truth, strict=True))
    accepted, res.accepted_decreases = _in_sequence(reader, photos)
    res.exact_sequence = sum(_same(v, truth[f], dec) for f, v in accepted)
    return res


def _in_sequence(
    reader: MeterReader, photos: dict[str, Any]
) -> tuple[list[tuple[str, float]], int]:
    """Read ``photos`` by file name (i.e. by time) with one meter's memory: the accepted
    ``(file, value)`` in order, and how many of them were below the one before."""
    session = MeterSession(reader)
    last = -math.inf
    accepted: list[tuple[str, float]] = []
    decreases = 0
    for f in sorted(photos):
        r = session.feed(photos[f])
        if r.status == "ok" and r.value is not None:
            decreases += r.value < last - 1e-9
            last = r.value
            accepted.append((f, r.value))
    return accepted, decreases


def displace(
    roi: MeterROI, dx: float, dy: float, scale: float, jitter: float, seed: int = 0
) -> MeterROI:
    """``roi`` with its digit boxes moved by ``dx``, ``dy`` box heights, scaled about their
    centres, and each moved up or down by up to ``jitter`` box heights (not yet refined)."""
    rng = np.random.default_rng(seed)
    out: list[Box] = []
    for b in roi.digits:
        cx = b.x + b.w / 2 + dx * b.h
        cy = b.y + b.h / 2 + dy * b.h + float(rng.uniform(-jitter, jitter)) * b.h
        w, h = b.w * scale, b.h * scale
        out.append(Box(max(0, round(cx - w / 2)), max(0, round(cy - h / 2)), round(w), round(h)))
    for i in range(1, len(out)):  # boxes grown into their neighbours are trimmed
        if out[i].x < out[i - 1].x2:
            a = out[i - 1]
            out[i - 1] = Box(a.x, a.y, out[i].x - a.x, a.h)
    return replace(roi, digits=tuple(out), refined=False)


def box_robustness(
    ps: PhotoSet,
    cases: dict[str, tuple[float, float, float, float]] | None = None,
    *,
    model: DigitReader | None = None,
) -> dict[str, dict[str, int]]:
    """Per displacement: photos read exactly as with the boxes as drawn (both refined), and
    photos read exactly as a person reads them."""
    model = model or load_reader()
    photos = [decode_image(ps.folder / f) for f in ps.files]
    dec = ps.roi.decimals

    def values(roi: MeterROI) -> list[float | None]:
        reader = MeterReader(roi, model=model)
        return [reader.read(p).value for p in photos]

    base = values(replace(ps.roi, refined=False))
    out: dict[str, dict[str, int]] = {}
    for name, (dx, dy, s, j) in (cases or DISPLACEMENTS).items():
        vals = values(displace(ps.roi, dx, dy, s, j))
        out[name] = {
            "n": len(vals),
            "same": sum(a == b for a, b in zip(vals, base, strict=True)),
            "exact": sum(_same(v, t, dec) for v, t in zip(vals, ps.truth, strict=True)),
        }
    return out


def composed_meters(
    n: int,
    *,
    n_digits: int = 6,
    decimals: int = 1,
    seed: int = 0,
    model: DigitReader | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """Counters composed from real crops of the meter families the model never saw.

    Half the counts sit in a carry (the lower wheels past 9). Every wheel position is a
    tenth, so each wheel gets a real crop labelled exactly that position, from the model
    card's held-out fold (its seven-segment LCD crops left out: they are not wheels, and a
    blank leading LCD digit is labelled 0). The truth is :func:`register_value` of the count.
    """
    from gridlens.meter.data import load_digit_set

    model = model or load_reader()
    fold = int(model.card["folds"][0]["fold"]) if model.card.get("folds") else 0
    _, test = load_digit_set(root).split(fold)
    test = test.subset(test.kinds != "lcd")  # seven-segment displays are not wheels
    by_label: dict[int, np.ndarray] = {}
    lab = np.round(np.asarray(test.labels, float) * 10).astype(int) % 100
    for k in range(100):
        by_label[k] = np.flatnonzero(lab == k)
    rng = np.random.default_rng(seed)
    right = tried = 0
    misses: list[str] = []
    crops, truths = [], []
    while tried < n:
        count = int(rng.integers(0, 10 ** (n_digits + 1)))  # in tenths of the last wheel
        if tried % 2:
            k = int(rng.integers(1, n_digits))
            unit = 10 ** (k + 1)
            count = (count // unit) * unit + unit - int(rng.integers(1, 10))  # lower wheels 9.x
        v = count / 10.0  # in units of the last wheel
        pos = wheel_positions(v / 10**decimals, n_digits, decimals)
        idx = []
        for p in pos:
            pool = by_label[round(p * 10) % 100]
            if pool.size == 0:
                break
            idx.append(int(rng.choice(pool)))
        if len(idx) < n_digits:
            continue
        tried += 1
        crops.append(test.images[idx])
        wrap = 10.0 ** (n_digits - decimals)  # the counter turns over to 0
        truths.append(round(register_value(v / 10**decimals, decimals) % wrap, decimals))
    probs = model.probabilities(np.concatenate(crops))
    cont = model.continuous(probs).reshape(n, n_digits)
    _, conf = model.decode(probs)
    conf = conf.reshape(n, n_digits)
    for i in range(n):
        value = resolve_wheels(cont[i], conf[i], decimals).primary.value
        if _same(value, truths[i], decimals):
            right += 1
        elif len(misses) < 10:
            misses.append(f"truth {truths[i]} read {value} wheels {np.round(cont[i], 2)}")
    return {"n": n, "exact": right, "families": list(np.unique(test.families)), "misses": misses}


def series_folders(root: Path | None = None) -> Sequence[Path]:
    """The ``meter-photos`` folders with labels under ``root`` (default :func:`data_root`)."""
    base = (root or data_root()) / "meter-photos"
    return sorted(p.parent for p in base.glob("*/labels.csv"))


@dataclass
class DialSetResult:
    """:func:`evaluate_dial_meter`: whole photos (wheels + dials) and the dial crops alone."""

    n: int
    within: int  # photos read within ``tol`` of the labelled reading
    rejected: int
    accepted_decreases: int  # read in time order with memory
    crops: int
    crops_within_02: int  # dial crops within ±0.2 of a division (circular)
    crops_within_05: int
    misses: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_dial_set(folder: Path | str) -> tuple[MeterROI, list[str], list[float], list[list[float]]]:
    """A ``meter-photos`` folder with ``dials.json``: the ROI with its ``dials``, the files,
    the labelled readings and the labelled dial values (largest factor first)."""
    import json

    folder = Path(folder)
    doc = json.loads((folder / "roi.json").read_text(encoding="utf-8"))
    dials = json.loads((folder / "dials.json").read_text(encoding="utf-8"))["dial_boxes"]
    doc["dials"] = [{k: b[k] for k in ("x", "y", "w", "h", "factor")} for b in dials]
    roi = MeterROI.from_dict(doc, base_dir=folder)
    order = np.argsort([-b["factor"] for b in dials])
    files, readings, values = [], [], []
    with open(folder / "labels.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            files.append(row["file"])
            readings.append(float(row["reading"]))
            v = [float(x) for x in row["dials"].split(";")]
            values.append([v[i] for i in order])
    return roi, files, readings, values


def evaluate_dial_meter(
    folder: Path | str, *, tol: float = 0.002, model: DigitReader | None = None
) -> DialSetResult:
    """Read every photo of a folder with dials alone (within ``tol`` of the labelled
    reading, no forgiveness otherwise) and in time order (accepted decreases)."""
    folder = Path(folder)
    roi, files, readings, labels = load_dial_set(folder)
    reader = MeterReader(roi, model=model)
    res = DialSetResult(len(files), 0, 0, 0, 0, 0, 0)
    photos = {f: decode_image(folder / f) for f in files}
    for f, truth, lab in zip(files, readings, labels, strict=True):
        r = reader.read(photos[f])
        res.rejected += r.status != "ok"
        if r.value is not None and abs(r.value - truth) <= tol + 1e-9:
            res.within += 1
        else:
            res.misses.append(f"{f}: read {r.value} ({r.reason or r.raw}), labelled {truth}")
        for d, t in zip(r.dials, lab, strict=False):
            err = abs((d["value"] - t + 5.0) % 10.0 - 5.0)
            res.crops += 1
            res.crops_within_02 += err <= 0.2 + 1e-9
            res.crops_within_05 += err <= 0.5 + 1e-9
    _, res.accepted_decreases = _in_sequence(reader, photos)
    return res
