"""``gridlens roi suggest PHOTO``: propose an ROI file from one photo of a meter."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridlens.errors import ParameterError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from gridlens.meter.suggest import Suggestion


def add_roi_commands(sub: Any) -> None:
    """Add ``gridlens roi suggest`` to the subcommand parsers ``sub``."""
    r = sub.add_parser(
        "roi",
        help="propose digit and marker boxes of a meter",
        description="Work with ROI files (digit boxes, decimals, alignment markers).",
    )
    rsub = r.add_subparsers(dest="roi_command", metavar="{suggest}")
    s = rsub.add_parser(
        "suggest",
        help="propose an ROI from one photo",
        description="Find the counter in PHOTO and propose one digit box per wheel, the "
        "number of decimal wheels (red wheels) and 2-4 marker boxes, in PHOTO's pixels. "
        "Check the proposal (--plot) before using it. Without -o the ROI JSON is printed.",
    )
    s.add_argument("photo", type=Path, metavar="PHOTO")
    s.add_argument("-o", "--out", type=Path, help="write the ROI JSON here")
    s.add_argument("--plot", type=Path, help="write PHOTO with the suggested boxes (PNG/JPEG)")
    s.add_argument("--model", type=Path, help="ONNX digit model (default: the shipped one)")
    s.add_argument(
        "--json", action="store_true", help="print boxes with confidences and diagnostics"
    )
    s.set_defaults(func=_cmd_suggest)

    def _roi_help(a: argparse.Namespace) -> int:
        r.print_help(sys.stderr)
        return 2

    r.set_defaults(func=_roi_help)


def _cmd_suggest(args: argparse.Namespace) -> int:
    from gridlens.meter.image import decode_image
    from gridlens.meter.model import load_reader
    from gridlens.meter.suggest import suggest_roi

    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ParameterError(f"{args.plot}: --plot must end in .png, .jpg or .jpeg")
    image = decode_image(args.photo)
    model = load_reader(None if args.model is None else str(args.model))
    sug = suggest_roi(image, model=model)
    roi = sug.to_roi_dict()
    if args.out is not None:
        args.out.write_text(json.dumps(roi, indent=2) + "\n", encoding="utf-8")
    if args.plot is not None:
        _plot(image, sug, args.plot)
    if args.json:
        doc = {**sug.to_dict(), "roi": roi, "details": sug.details}
        print(json.dumps(doc, indent=2))
        return 0
    if args.out is None:
        print(json.dumps(roi, indent=2))
    wheels = " ".join(f"{d.confidence:.2f}" for d in sug.digits)
    print(
        f"{len(sug.digits)} wheels (confidence {wheels}), decimals {sug.decimals}, "
        f"{len(sug.markers)} markers; overall confidence {sug.confidence:.2f}",
        file=sys.stderr,
    )
    if args.out is not None:
        print(
            f'wrote {args.out}; add "image": "{args.photo.name}" to its "reference" to '
            "align later photos to this one",
            file=sys.stderr,
        )
    return 0


def _plot(image: npt.NDArray[np.uint8], sug: Suggestion, path: Path) -> None:
    import cv2

    from gridlens.meter.image import encode_jpeg

    vis = image.copy()
    c = sug.counter
    cv2.rectangle(vis, (c.x - 3, c.y - 3), (c.x2 + 2, c.y2 + 2), (255, 160, 0), 1)
    n = len(sug.digits)
    for i, d in enumerate(sug.digits):
        b = d.box
        colour = (0, 0, 255) if i >= n - sug.decimals else (0, 200, 0)
        cv2.rectangle(vis, (b.x, b.y), (b.x2 - 1, b.y2 - 1), colour, 2)
        cv2.putText(
            vis, f"{d.confidence:.2f}", (b.x, b.y2 + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1
        )
    for i, m in enumerate(sug.markers, start=1):
        b = m.box
        cv2.rectangle(vis, (b.x, b.y), (b.x2 - 1, b.y2 - 1), (255, 0, 255), 2)
        cv2.putText(
            vis, f"M{i}", (b.x + 2, b.y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 0, 255), 1
        )
    if path.suffix.lower() == ".png":
        ok, buf = cv2.imencode(".png", vis)
        if not ok:
            raise ParameterError(f"{path}: could not encode the plot")
        path.write_bytes(buf.tobytes())
    else:
        path.write_bytes(encode_jpeg(vis, 92))
