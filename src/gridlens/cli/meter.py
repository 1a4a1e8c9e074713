"""``gridlens meter train|eval``, ``gridlens read``, ``gridlens read-digits`` and
``gridlens read-dials``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridlens.errors import InputError, NotFoundError, ParameterError

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _fold(text: str) -> int | str:
    if text in ("all", "none"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a fold number 0-4, 'all' or 'none'") from None


def add_meter_commands(sub: Any, emit_json: Any) -> None:
    m = sub.add_parser(
        "meter",
        help="train and evaluate the digit-wheel model",
        description="Train the digit-wheel CNN on meter-digits (leave-meter-out) and measure it.",
    )
    msub = m.add_subparsers(dest="meter_command", metavar="{train,eval,synth}")
    t = msub.add_parser(
        "train",
        help="train (PyTorch) and export ONNX",
        description="Train the digit CNN. --holdout-fold K holds out the meter families of fold "
        "K and reports on them; 'all' runs the 5-fold leave-meter-out study; 'none' trains on "
        "every crop. With --out, a final model is trained on every crop and exported with its "
        "model card (the held-out metrics of the folds run in the same command).",
    )
    t.add_argument("--data", type=Path, help="meter-digits folder (default $GRIDLENS_DATA/...)")
    t.add_argument("--holdout-fold", type=_fold, default=0, help="0-4, all or none (default 0)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--width", type=int, default=16, help="channels of the first conv stage")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, help="use about this many crops (quick runs)")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--out", type=Path, help="write the ONNX model (and .json card) here")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=lambda a: _cmd_train(a, emit_json))

    e = msub.add_parser(
        "eval",
        help="measure an ONNX digit model on held-out meter families",
        description="Accuracy of an ONNX digit model on the crops of one leave-meter-out fold "
        "(or all crops), overall and per meter family.",
    )
    e.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    e.add_argument("--data", type=Path)
    e.add_argument("--holdout-fold", type=_fold, default="all", help="0-4 or all (default all)")
    e.add_argument("--limit", type=int)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=lambda a: _cmd_eval(a, emit_json))

    y = msub.add_parser(
        "synth",
        help="render a synthetic meter photo with its reference and ROI",
        description="Write reference.jpg, roi.json and meter.jpg (a camera photo of a meter "
        "showing --reading, wheels mid-roll, perspective, glare, noise) into DIR, ready for "
        "`gridlens read DIR/meter.jpg --roi DIR/roi.json`.",
    )
    y.add_argument("folder", type=Path, metavar="DIR")
    y.add_argument("--reading", type=float, default=12345.6)
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--digits", type=int, default=6, help="number of wheels (default 6)")
    y.add_argument("--decimals", type=int, default=1, help="wheels after the point (default 1)")
    y.add_argument("--json", action="store_true")
    y.set_defaults(func=lambda a: _cmd_synth(a, emit_json))

    def _meter_help(a: argparse.Namespace) -> int:
        m.print_help(sys.stderr)
        return 2

    m.set_defaults(func=_meter_help)

    d = sub.add_parser(
        "read-digits",
        help="read single digit-wheel crops",
        description="Read single digit-wheel crops (files or folders of images) with the digit "
        "model: wheel position in [0, 10) to a tenth, and the model's confidence.",
    )
    d.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    d.add_argument("--model", type=Path)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=lambda a: _cmd_read_digits(a, emit_json))

    dl = sub.add_parser(
        "read-dials",
        help="read single pointer-dial crops",
        description="Read pointer-dial crops (files or folders of images, each the box around "
        "one dial ring): the pointer's position in [0, 10) divisions and a confidence. "
        "Numbers increase clockwise from 12 o'clock unless --ccw / --zero-deg say otherwise.",
    )
    dl.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    dl.add_argument("--ccw", action="store_true", help="the numbers increase anticlockwise")
    dl.add_argument(
        "--zero-deg", type=float, default=0.0, help="where the 0 is, degrees clockwise from 12"
    )
    dl.add_argument(
        "--method",
        choices=("auto", "cnn", "geometric"),
        default="auto",
        help="the shipped pointer CNN (auto, when installed) or the model-free reader",
    )
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=lambda a: _cmd_read_dials(a, emit_json))

    r = sub.add_parser(
        "read",
        help="read a whole meter photo",
        description="Align a meter photo to the reference, crop the digit wheels, read them, "
        "resolve carries and check plausibility against the previous reading.",
    )
    r.add_argument(
        "image",
        type=Path,
        nargs="+",
        metavar="FILE_OR_DIR",
        help="one photo, or several (folders: their images by name) read in sequence with "
        "memory, as the server does",
    )
    r.add_argument("--roi", type=Path, required=True, help="ROI.json (digit boxes, reference)")
    r.add_argument(
        "--no-refine",
        action="store_true",
        help="use the digit boxes exactly as written (default: refine them against the "
        'reference first, unless the ROI says "refined": true)',
    )
    r.add_argument(
        "--save-roi", type=Path, metavar="OUT", help="write the ROI with the refined boxes here"
    )
    r.add_argument("--previous", type=float, help="the last accepted reading")
    r.add_argument("--elapsed-s", type=float, help="seconds since the last accepted reading")
    r.add_argument("--max-rate", type=float, help="largest plausible rate, units per hour")
    r.add_argument("--model", type=Path)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=lambda a: _cmd_read(a, emit_json))


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cmd_train(args: argparse.Namespace, emit_json: Any) -> int:
    import numpy as np

    from gridlens.meter.data import N_FOLDS, load_digit_set
    from gridlens.meter.model import digit_metrics
    from gridlens.meter.train import TrainConfig, config_dict, export_onnx, predict_torch
    from gridlens.meter.train import train_digit_model as fit

    cfg = TrainConfig(
        epochs=args.epochs,
        width=args.width,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        augment=not args.no_augment,
    )
    cfg.check()
    ds = load_digit_set(args.data, limit=args.limit)
    folds: list[int] = (
        list(range(N_FOLDS))
        if args.holdout_fold == "all"
        else []
        if args.holdout_fold == "none"
        else [int(args.holdout_fold)]
    )
    if folds and not all(0 <= k < N_FOLDS for k in folds):
        raise ParameterError(f"--holdout-fold must be 0-{N_FOLDS - 1}, all or none")
    per_fold: list[dict[str, Any]] = []
    pooled_pred: list[np.ndarray] = []
    pooled_conf: list[np.ndarray] = []
    pooled_lab: list[np.ndarray] = []
    t0 = time.perf_counter()
    last_model = None
    for k in folds:
        train, test = ds.split(k)
        held = ", ".join(sorted(set(test.families.tolist())))
        _progress(f"fold {k}: training on {len(train)} crops, holding out {len(test)}: {held}")
        model = fit(train, cfg, valid=test)
        pred, conf = predict_torch(model, test.images)
        met: dict[str, Any] = dict(digit_metrics(pred, test.labels, conf))
        met["fold"] = k
        met["families"] = sorted(set(test.families.tolist()))
        per_fold.append(met)
        pooled_pred.append(pred)
        pooled_conf.append(conf)
        pooled_lab.append(test.labels)
        last_model = model
    doc: dict[str, Any] = {"config": config_dict(cfg), "n_crops": len(ds), "folds": per_fold}
    if per_fold:
        doc["held_out"] = digit_metrics(
            np.concatenate(pooled_pred), np.concatenate(pooled_lab), np.concatenate(pooled_conf)
        )
    if args.out is not None:
        if len(folds) != 1:  # 'none' or 'all': the exported model sees every crop
            _progress(f"final model: training on all {len(ds)} crops")
            last_model = fit(ds, cfg)
        assert last_model is not None
        card = {
            "name": "gridlens digit-wheel CNN",
            "input": "grayscale crop resized to 48x32 (h x w), raw 0-255 pixels, NCHW float32",
            "output": "100 class probabilities, class k = wheel position k/10",
            "trained_on": (
                "every crop" if len(folds) != 1 else f"all crops except fold {folds[0]}"
            ),
            "data": "meter-digits (Tenth-of-step-of-a-meter-digit, haverland), Apache-2.0",
            "rebuild": "gridlens meter train " + shlex.join(sys.argv[3:]),
            **doc,
        }
        path = export_onnx(last_model, args.out, card=card)
        doc["model"] = str(path)
        doc["model_bytes"] = path.stat().st_size
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        emit_json(doc)
    else:
        for f in per_fold:
            print(
                f"fold {f['fold']}: {int(f['n'])} held-out crops, within ±0.2 "
                f"{f['within_0.2']:.2%}, within ±0.5 {f['within_0.5']:.2%}, "
                f"MAE {f['mae']:.3f}"
            )
        if "held_out" in doc:
            h = doc["held_out"]
            print(
                f"held out (pooled): {int(h['n'])} crops, within ±0.2 {h['within_0.2']:.2%}, "
                f"within ±0.5 {h['within_0.5']:.2%}"
            )
        if "model" in doc:
            print(f"model: {doc['model']} ({doc['model_bytes'] / 1024:.0f} KiB)")
    return 0


def _cmd_eval(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.meter.data import N_FOLDS, load_digit_set
    from gridlens.meter.model import DigitReader, digit_metrics

    reader = DigitReader(args.model)
    ds = load_digit_set(args.data, limit=args.limit)
    if args.holdout_fold == "none":
        raise ParameterError("--holdout-fold for eval must be 0-4 or all")
    if args.holdout_fold != "all":
        k = int(args.holdout_fold)
        if not 0 <= k < N_FOLDS:
            raise ParameterError(f"--holdout-fold must be 0-{N_FOLDS - 1} or all")
        ds = ds.split(k)[1]
    trained_on = str(reader.card.get("trained_on", ""))
    held = f"all crops except fold {args.holdout_fold}"
    if trained_on and trained_on != held:
        _progress(
            f"note: this model was trained on {trained_on}, so these crops are not all held out"
        )
    t0 = time.perf_counter()
    pred, conf = reader.predict(ds.images)
    dt = time.perf_counter() - t0
    doc: dict[str, Any] = {
        "model": str(reader.path),
        "overall": digit_metrics(pred, ds.labels, conf),
        "crops_per_s": len(ds) / dt if dt > 0 else None,
        "families": {},
    }
    for fam in sorted(set(ds.families.tolist())):
        m = ds.families == fam
        doc["families"][fam] = digit_metrics(pred[m], ds.labels[m], conf[m])
    if args.json:
        emit_json(doc)
    else:
        o = doc["overall"]
        print(
            f"{int(o['n'])} crops: within ±0.2 {o['within_0.2']:.2%}, within ±0.5 "
            f"{o['within_0.5']:.2%}, MAE {o['mae']:.3f} ({doc['crops_per_s']:.0f} crops/s)"
        )
        for fam, f in doc["families"].items():
            print(f"  {fam:55s} {int(f['n']):5d}  ±0.2 {f['within_0.2']:7.2%}")
    return 0


def _cmd_synth(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.meter.synth import write_example

    ex = write_example(
        args.folder,
        reading=args.reading,
        seed=args.seed,
        n_digits=args.digits,
        decimals=args.decimals,
    )
    doc = {
        "reference": str(ex.reference),
        "roi": str(ex.roi),
        "meter": str(ex.meter),
        "reading": round(ex.reading, 6),
    }
    if args.json:
        emit_json(doc)
    else:
        print(f"wrote {ex.meter} (reading {ex.reading:.6g}), {ex.reference} and {ex.roi}")
        print(f"try: gridlens read {ex.meter} --roi {ex.roi}")
    return 0


def _collect_images(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise NotFoundError(f"{p} does not exist")
    if not files:
        raise InputError("no images found (looked for .jpg, .jpeg, .png, .bmp)")
    return files


def _cmd_read_digits(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.meter.image import decode_image
    from gridlens.meter.model import DigitReader

    reader = DigitReader(args.model)
    files = _collect_images(args.paths)
    crops = [decode_image(f) for f in files]
    values, conf = reader.read_crops(crops)
    _print_crops(files, [float(v) for v in values], [float(c) for c in conf], args.json)
    return 0


def _print_crops(files: list[Path], values: list[float], conf: list[float], as_json: bool) -> None:
    """One row per crop (read-digits, read-dials): ``[{file, value, confidence}]`` or text."""
    rows = [
        {"file": str(f), "value": round(v, 1), "confidence": round(c, 4)}
        for f, v, c in zip(files, values, conf, strict=True)
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['value']:4.1f}  {r['confidence']:.2f}  {r['file']}")


def _cmd_read_dials(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.meter.dials import read_dials
    from gridlens.meter.image import decode_image

    files = _collect_images(args.paths)
    n = len(files)
    reads = read_dials(
        [decode_image(f) for f in files],
        ["ccw" if args.ccw else "cw"] * n,
        [args.zero_deg] * n,
        method=args.method,
    )
    _print_crops(files, [r.value for r in reads], [r.confidence for r in reads], args.json)
    return 0


def _cmd_read(args: argparse.Namespace, emit_json: Any) -> int:
    from gridlens.meter.plausibility import History, Limits
    from gridlens.meter.reading import MeterReader, MeterSession

    if args.elapsed_s is not None and args.previous is None:
        raise InputError("--elapsed-s needs --previous")
    files = _collect_images(args.image)
    meter = MeterReader.from_roi_file(
        args.roi, model=args.model, refine=False if args.no_refine else None
    )
    if args.save_roi is not None:
        doc_roi = meter.roi.to_dict(base_dir=args.save_roi.resolve().parent)
        args.save_roi.write_text(json.dumps(doc_roi, indent=1) + "\n", encoding="utf-8")
    limits = Limits(max_rate_per_h=args.max_rate) if args.max_rate is not None else Limits()
    refinement = meter.refinement.to_dict() if meter.refinement is not None else None
    if len(files) == 1 and args.image[0].is_file():
        history = None
        if args.previous is not None:
            history = History.single(args.previous, elapsed_s=args.elapsed_s)
        doc = meter.read_file(files[0], history=history, limits=limits).to_dict()
        doc["refinement"] = refinement
        if args.json:
            emit_json(doc)
        else:
            _print_reading(doc)
        return 0 if doc["status"] == "ok" else 1
    # a series: read in order with memory (no clock: the rate rule needs the server's times)
    session = MeterSession(meter, limits)
    if args.previous is not None:
        session.history = History.single(args.previous)
    docs = []
    for f in files:
        d = {"file": str(f), **session.feed(f).to_dict()}
        docs.append(d)
        if not args.json:
            shown = d["value"] if d["status"] == "ok" else f"rejected: {d['reason']}"
            print(f"{f.name}  {shown}  (raw {d['raw']})")
    if args.json:
        emit_json({"readings": docs, "refinement": refinement})
    else:
        ok = sum(d["status"] == "ok" for d in docs)
        print(f"{ok} of {len(docs)} photos read")
    return 0 if all(d["status"] == "ok" for d in docs) else 1


def _print_reading(doc: dict[str, Any]) -> None:
    digits = " ".join(f"{d['value']:.1f}({d['confidence']:.2f})" for d in doc["digits"])
    if doc["status"] == "ok":
        print(f"{doc['value']}  (raw {doc['raw']})  ok")
    else:
        print(f"rejected: {doc['reason']}  (raw {doc['raw']})")
    print(f"wheels: {digits}")
    if doc.get("dials"):
        dials = " ".join(
            f"x{d['factor']:g}:{d['value']:.1f}({d['confidence']:.2f})" for d in doc["dials"]
        )
        print(f"dials: {dials}")
    if doc.get("note"):
        print(f"note: {doc['note']}")
    if doc.get("refinement"):
        r = doc["refinement"]
        print(f"boxes refined: shift {r['shift_px']} px, scale {r['scale']}")
