"""Training the pointer-dial CNN with PyTorch and exporting it to ONNX.

Only this module imports PyTorch (the ``train`` extra); reading dials needs nothing but ONNX
Runtime (:class:`gridlens.meter.dials.NeedleModel`).

The network sees a 64x64 colour crop of a dial and answers with 101 classes: 100 pointer
directions (3.6 degrees each, clockwise from 12 o'clock in the crop) and "no dial here".
Direction classes are trained with *circular soft labels* (a Gaussian of sigma = 1 class
wrapped around the circle). The training data are synthetic only
(:func:`gridlens.meter.synth_dials.render_dial_crop`: random faces, numerals, rings,
needles red, black or white, arrows, wedges and lines with counterweights, off-centre,
perspective, glare, blur, noise, JPEG) and, for "no dial", random crops of synthetic meter
scenes away from the dials (wheel meters, water meters, dial registers), crops of dials
more than a third off-centre, and textures (grainy rubber or metal with bezel arcs and
edges). Flips and quarter turns of a crop are free augmentation: the
label turns with the pointer. No real photo is used, so every real dial is held out.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from gridlens.meter.dials import N_BINS, NEEDLE_SIZE

__all__ = ["DialNet", "DialTrainConfig", "export_dial_onnx", "make_dial_data", "train_dial_model"]

U8 = npt.NDArray[np.uint8]


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DialNet(nn.Module):
    """Four conv stages (16, 32, 48, 64) with 2x2 pooling and a dense head over the 4x4 map
    (the pointer direction is *where* it is). Input ``(n, 3, 64, 64)`` raw BGR pixels,
    output ``(n, 101)`` probabilities (``logits=True`` in training)."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv(3, 16), nn.MaxPool2d(2),
            _conv(16, 32), nn.MaxPool2d(2),
            _conv(32, 48), _conv(48, 48), nn.MaxPool2d(2),
            _conv(48, 64), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * 16, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, N_BINS + 1),
        )  # fmt: skip
        self.logits = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True) + 8.0
        out: torch.Tensor = self.head(self.features((x - mean) / std))
        return out if self.logits else F.softmax(out, dim=1)


@dataclass
class DialTrainConfig:
    n_dials: int = 40000
    n_negatives: int = 10000
    epochs: int = 10
    batch: int = 128
    lr: float = 3e-3
    sigma: float = 1.0  # soft-label width [classes]
    seed: int = 0
    threads: int = 2


def _texture(rng: np.random.Generator, s: int) -> U8:
    """A crop of what surrounds dials on a meter photo and is no dial: grainy rubber or
    metal (blurred noise at a random scale, any colour), with bezel arcs and edges across it."""
    big = 4 * s
    coarse = rng.normal(0.0, 1.0, (big // int(rng.integers(1, 8)) + 1,) * 2).astype(np.float32)
    grain = np.asarray(cv2.resize(coarse, (big, big), interpolation=cv2.INTER_LINEAR), np.float32)
    base = rng.uniform(10, 230, 3).astype(np.float32)
    img = base[None, None, :] + grain[..., None] * float(rng.uniform(5, 60))
    for _ in range(int(rng.integers(0, 4))):  # arcs of rings and bezels, straight edges
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        thick = int(rng.integers(2, 18))
        if rng.random() < 0.6:
            centre = (int(rng.integers(-2 * big, 3 * big)), int(rng.integers(-2 * big, 3 * big)))
            radius = int(rng.integers(big // 2, 4 * big))
            cv2.circle(img, centre, radius, colour, thick)
        else:
            p0 = (int(rng.integers(0, big)), int(rng.integers(0, big)))
            p1 = (int(rng.integers(0, big)), int(rng.integers(0, big)))
            cv2.line(img, p0, p1, colour, thick)
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 3.0)))
    x0, y0 = (int(v) for v in rng.integers(0, big - s, 2))
    side = int(rng.integers(s, big - max(x0, y0)))
    crop = cv2.resize(img[y0 : y0 + side, x0 : x0 + side], (s, s), interpolation=cv2.INTER_AREA)
    return np.clip(crop, 0, 255).astype(np.uint8)


def _negatives(n: int, rng: np.random.Generator) -> U8:
    """Crops with no centred dial: pieces of synthetic meter scenes and off-centre dials."""
    from gridlens.meter.synth import render_meter
    from gridlens.meter.synth_dial_meters import render_register, render_water_meter
    from gridlens.meter.synth_dials import render_dial_crop

    s = NEEDLE_SIZE
    out = np.zeros((n, s, s, 3), np.uint8)
    k = 0
    while k < n:
        kind = rng.integers(0, 5)
        if kind == 4:  # a texture: rubber, brushed metal, bezels, cables, shadows
            out[k] = _texture(rng, s)
            k += 1
            continue
        if kind == 3:  # a dial, but far off-centre in its crop
            img, _ = render_dial_crop(float(rng.uniform(0, 10)), size=2 * s,
                                      seed=int(rng.integers(1 << 30)))  # fmt: skip
            dx, dy = (int(v) for v in rng.integers(-s // 2, s // 2 + 1, 2))
            if abs(dx) < s // 3 and abs(dy) < s // 3:
                dx = s // 2
            y0, x0 = s // 2 + dy, s // 2 + dx
            crop = img[max(0, y0) : max(0, y0) + s, max(0, x0) : max(0, x0) + s]
            if crop.shape[:2] != (s, s):
                continue
            out[k] = crop
            k += 1
            continue
        seed = int(rng.integers(1 << 30))
        reading = float(rng.uniform(0, 9999))
        if kind == 0:
            scene = render_meter(reading, seed=seed, layout_seed=int(rng.integers(50))).image
            dials: list[dict[str, int]] = []
        elif kind == 1:
            m = render_water_meter(reading, seed=seed, layout_seed=int(rng.integers(50)))
            scene, dials = m.image, m.roi["dials"]
        else:
            m = render_register(reading, seed=seed, layout_seed=int(rng.integers(50)))
            scene, dials = m.image, m.roi["dials"]
        h, w = scene.shape[:2]
        for _ in range(6):
            side = int(rng.integers(s // 2, min(h, w) // 3))
            x0, y0 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
            cx, cy = x0 + side / 2, y0 + side / 2
            # (dial boxes are in reference pixels; the photo is near them, so keep well away)
            if any(math.hypot(cx - d["x"] - d["w"] / 2, cy - d["y"] - d["h"] / 2)
                   < 0.6 * (d["w"] + side) / 2 for d in dials):  # fmt: skip
                continue
            crop = scene[y0 : y0 + side, x0 : x0 + side]
            out[k] = cv2.resize(crop, (s, s), interpolation=cv2.INTER_AREA)
            k += 1
            if k >= n:
                break
    return out


def make_dial_data(
    n_dials: int, n_negatives: int, seed: int
) -> tuple[U8, npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Crops ``(n, 64, 64, 3)``, pointer angles [deg clockwise from up] and "is a dial"."""
    from gridlens.meter.synth_dials import render_dial_crop

    rng = np.random.default_rng(seed)
    s = NEEDLE_SIZE
    pos = np.zeros((n_dials, s, s, 3), np.uint8)
    ang = np.zeros(n_dials + n_negatives, np.float32)
    for i in range(n_dials):
        v = float(rng.uniform(0, 10))
        direction = "ccw" if rng.random() < 0.3 else "cw"
        zero = float(rng.choice([0.0, 0.0, 0.0, 90.0, 180.0, 270.0]))
        pos[i], meta = render_dial_crop(v, size=s, seed=int(rng.integers(1 << 30)),
                                        direction=direction, zero_deg=zero)  # fmt: skip
        (cx, cy), (tx, ty) = meta["center"], meta["tip"]  # the pointer as drawn in the crop
        ang[i] = math.degrees(math.atan2(tx - cx, cy - ty)) % 360.0
        if i % 5000 == 4999:
            print(f"  rendered {i + 1}/{n_dials} dials", file=sys.stderr, flush=True)
    neg = _negatives(n_negatives, rng)
    is_dial = np.concatenate([np.ones(n_dials, bool), np.zeros(n_negatives, bool)])
    return np.concatenate([pos, neg]), ang, is_dial


def _targets(ang: torch.Tensor, is_dial: torch.Tensor, sigma: float) -> torch.Tensor:
    k = torch.arange(N_BINS, dtype=torch.float32)
    pos = ang / (360.0 / N_BINS) - 0.5  # class k covers [3.6k, 3.6(k+1))
    d = torch.remainder(k[None, :] - pos[:, None] + N_BINS / 2, N_BINS) - N_BINS / 2
    soft = torch.exp(-0.5 * (d / sigma) ** 2)
    soft = soft / soft.sum(dim=1, keepdim=True)
    t = torch.zeros(ang.shape[0], N_BINS + 1)
    t[:, :N_BINS] = soft * is_dial[:, None]
    t[:, N_BINS] = (~is_dial).float()
    return t


def _augment(
    x: torch.Tensor, ang: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips and quarter turns (the angle turns with the pointer), gain/offset, colour
    channel shuffles (a red pointer becomes blue or green: the colour is not the cue)."""
    n = x.shape[0]
    x, ang = x.clone(), ang.clone()
    flip = torch.rand(n, generator=gen) < 0.5  # mirror left-right: angle -> -angle
    x[flip] = torch.flip(x[flip], dims=[3])
    ang[flip] = torch.remainder(-ang[flip], 360.0)
    quarter = torch.randint(0, 4, (n,), generator=gen)
    for q in (1, 2, 3):  # rot90 with dims (2, 3) turns the image anticlockwise by 90 deg
        m = quarter == q
        if m.any():
            x[m] = torch.rot90(x[m], k=q, dims=[2, 3])
            ang[m] = torch.remainder(ang[m] - 90.0 * q, 360.0)
    perm = torch.rand(n, generator=gen) < 0.3
    if perm.any():
        order = torch.randperm(3, generator=gen)
        x[perm] = x[perm][:, order]
    gain = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=gen)
    off = -40 + 80 * torch.rand(n, 1, 1, 1, generator=gen)
    x = torch.clamp(x * gain + off, 0, 255)
    return x, ang


def train_dial_model(
    cfg: DialTrainConfig, out: Path | str | None = None
) -> tuple[DialNet, dict[str, Any]]:
    """Train on fresh synthetic data; report held-out synthetic metrics; export to ``out``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    x_np, a_np, d_np = make_dial_data(cfg.n_dials, cfg.n_negatives, cfg.seed)
    xv_np, av_np, dv_np = make_dial_data(2000, 500, cfg.seed + 1000)
    print(f"data: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2).float()
    ang, is_dial = torch.from_numpy(a_np), torch.from_numpy(d_np)
    model = DialNet()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = cfg.epochs * math.ceil(x.shape[0] / cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    for ep in range(cfg.epochs):
        model.train()
        order = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for i in range(0, x.shape[0], cfg.batch):
            idx = order[i : i + cfg.batch]
            xb, ab = _augment(x[idx], ang[idx], gen)
            tb = _targets(ab, is_dial[idx], cfg.sigma)
            loss = -(tb * F.log_softmax(model(xb), dim=1)).sum(dim=1).mean()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            total += float(loss.item()) * idx.shape[0]
        metrics = _evaluate(model, xv_np, av_np, dv_np)
        print(f"epoch {ep + 1}/{cfg.epochs}: loss {total / x.shape[0]:.3f} "
              f"held-out synthetic {metrics}  {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)  # fmt: skip
    metrics = _evaluate(model, xv_np, av_np, dv_np)
    card = {
        "model": "gridlens pointer-dial CNN",
        "config": asdict(cfg),
        "input": {
            "name": "crops",
            "shape": ["n", 3, NEEDLE_SIZE, NEEDLE_SIZE],
            "pixels": "BGR 0-255",
        },
        "output": {"name": "probs", "classes": f"{N_BINS} directions of 3.6 deg + no dial"},
        "held_out_synthetic": metrics,
        "training_data": "synthetic only (gridlens.meter.synth_dials); no real photos",
        "train_seconds": round(time.perf_counter() - t0),
        "torch": torch.__version__,
        "rebuild": "python -m gridlens.meter.train_dials "
        "--out src/gridlens/meter/models/dials.onnx",
    }
    if out is not None:
        export_dial_onnx(model, out, card=card)
    return model, card


def _evaluate(
    model: DialNet, x: U8, ang: npt.NDArray[np.float32], is_dial: npt.NDArray[np.bool_]
) -> dict[str, float]:
    from gridlens.meter.dials import decode_needle

    model.eval()
    with torch.no_grad():
        probs = F.softmax(model(torch.from_numpy(x).permute(0, 3, 1, 2).float()), dim=1).numpy()
    model.train()
    a, _conf, p_dial = decode_needle(probs)
    err = np.abs((a[is_dial] - ang[is_dial] + 180.0) % 360.0 - 180.0) / 36.0  # divisions
    return {
        "within_0.2": round(float(np.mean(err <= 0.2)), 4),
        "within_0.5": round(float(np.mean(err <= 0.5)), 4),
        "dial_recall": round(float(np.mean(p_dial[is_dial] > 0.5)), 4),
        "no_dial_rejected": round(float(np.mean(p_dial[~is_dial] <= 0.5)), 4),
    }


def export_dial_onnx(
    model: DialNet, path: Path | str, *, card: dict[str, Any] | None = None
) -> Path:
    """Write the model to ``path`` (ONNX, opset 17, dynamic batch) and ``card`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.logits = False
    dummy = torch.full((2, 3, NEEDLE_SIZE, NEEDLE_SIZE), 128.0)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (dummy,), str(tmp), input_names=["crops"], output_names=["probs"],
            dynamic_axes={"crops": {0: "n"}, "probs": {0: "n"}}, opset_version=17, dynamo=False,
        )  # fmt: skip
    tmp.replace(path)
    model.logits = True
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="train the pointer-dial CNN on synthetic dials")
    p.add_argument("--out", type=Path, default=Path("src/gridlens/meter/models/dials.onnx"))
    p.add_argument("--n-dials", type=int, default=DialTrainConfig.n_dials)
    p.add_argument("--n-negatives", type=int, default=DialTrainConfig.n_negatives)
    p.add_argument("--epochs", type=int, default=DialTrainConfig.epochs)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cfg = DialTrainConfig(
        n_dials=a.n_dials, n_negatives=a.n_negatives, epochs=a.epochs, seed=a.seed
    )
    _, card = train_dial_model(cfg, a.out)
    print(json.dumps(card["held_out_synthetic"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
