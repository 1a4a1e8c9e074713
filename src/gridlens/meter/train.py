"""Training the digit-wheel CNN with PyTorch and exporting it to ONNX.

Only this module imports PyTorch (the ``train`` extra); reading meters needs nothing but
ONNX Runtime (:mod:`gridlens.meter.model`).

The network classifies a 48×32 grayscale crop into 100 classes, one per tenth of a wheel
turn.  It is trained with *circular soft labels* — a Gaussian of σ = 1 class wrapped around
the wheel, so 9.9 and 0.0 are neighbours and a label off by a tenth costs little — and with
augmentation for what cameras do: small rotations, scale and horizontal shifts (vertical
shift is kept to ±3 % because it moves the apparent wheel position), gamma / gain / offset,
inversion (white-on-black and black-on-white wheels), flash glare (a bright Gaussian blob),
blur and sensor noise.  The images are standardised per crop inside the network, so the
ONNX model takes raw 0–255 pixels.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from gridlens.errors import ParameterError, check_param
from gridlens.meter.data import INPUT_HW, DigitSet
from gridlens.meter.model import N_CLASSES, DigitReader, digit_metrics

__all__ = ["DigitNet", "TrainConfig", "augment", "export_onnx", "train_digit_model"]


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class DigitNet(nn.Module):
    """Three conv stages (width, 2·width, 4·width) and a dense head over the 6×4 map.

    The head is dense, not globally pooled: the wheel position is *where* the digits sit
    vertically, which a global pool would throw away.  Input ``(n, 1, 48, 32)`` raw pixels,
    output ``(n, 100)`` class probabilities (``logits=True`` in training).
    """

    def __init__(self, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        self.features = nn.Sequential(
            _conv(1, c1),
            _conv(c1, c1),
            nn.MaxPool2d(2),
            _conv(c1, c2),
            _conv(c2, c2),
            nn.MaxPool2d(2),
            _conv(c2, c3),
            _conv(c3, c3),
            nn.MaxPool2d(2),
        )
        h, w = INPUT_HW
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(c3 * (h // 8) * (w // 8), hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, N_CLASSES),
        )
        self.logits = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        z = self.head(self.features((x - mean) / (std + 4.0)))
        return z if self.logits else torch.softmax(z, dim=1)


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (saved in the model card)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 16
    hidden: int = 128
    label_sigma: float = 1.0  # classes (tenths of a digit)
    augment: bool = True
    seed: int = 0
    threads: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        owner = "train_digit_model"
        check_param(self.epochs >= 1, "epochs", owner, "an int >= 1", self.epochs)
        check_param(self.batch_size >= 8, "batch_size", owner, "an int >= 8", self.batch_size)
        check_param(self.lr > 0, "lr", owner, "a positive float", self.lr)
        check_param(4 <= self.width <= 64, "width", owner, "an int in [4, 64]", self.width)


def _soft_targets(labels: torch.Tensor, sigma: float) -> torch.Tensor:
    cls = torch.arange(N_CLASSES, dtype=torch.float32)
    d = (labels[:, None] * 10.0 - cls[None, :]).abs() % N_CLASSES
    d = torch.minimum(d, N_CLASSES - d)
    t = torch.exp(-0.5 * (d / sigma) ** 2)
    return t / t.sum(dim=1, keepdim=True)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Camera-like augmentation of a batch ``(n, 1, H, W)`` of 0–255 pixels."""
    n = x.shape[0]

    def u(lo: float, hi: float, size: tuple[int, ...] = (n,)) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(size, generator=gen)

    # geometry: rotation ±4°, scale 0.92–1.08, shift x ±8 %, y ±3 %
    ang = u(-4.0, 4.0) * math.pi / 180.0
    sc = u(0.92, 1.08)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack(
        [
            torch.stack([cos, -sin, u(-0.16, 0.16)], 1),
            torch.stack([sin, cos, u(-0.06, 0.06)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x / 255.0, grid, padding_mode="border", align_corners=False)
    # inversion: wheels come white-on-black and black-on-white
    inv = (torch.rand(n, generator=gen) < 0.2).float()[:, None, None, None]
    y = inv * (1.0 - y) + (1.0 - inv) * y
    # photometric: gamma, gain, offset
    y = y.clamp(1e-4, 1.0) ** u(0.6, 1.6)[:, None, None, None]
    y = y * u(0.6, 1.3)[:, None, None, None] + u(-0.15, 0.15)[:, None, None, None]
    # flash glare on 30 % of crops
    h, w = x.shape[2], x.shape[3]
    yy = torch.linspace(0, 1, h)[None, :, None]
    xx = torch.linspace(0, 1, w)[None, None, :]
    cy, cx = u(-0.1, 1.1)[:, None, None], u(-0.1, 1.1)[:, None, None]
    sy, sx = u(0.08, 0.4)[:, None, None], u(0.08, 0.5)[:, None, None]
    amp = u(0.3, 1.0) * (torch.rand(n, generator=gen) < 0.3).float()
    blob = amp[:, None, None] * torch.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
    y = y + blob[:, None]
    # blur on 30 % of crops (one σ per batch keeps it a single convolution)
    sigma = float(u(0.5, 1.4, (1,))[0])
    k = torch.exp(-0.5 * (torch.arange(-2, 3, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    blurred = F.conv2d(
        F.pad(y, (2, 2, 2, 2), mode="replicate"), (k[:, None] * k[None, :])[None, None]
    )
    pick = (torch.rand(n, generator=gen) < 0.3).float()[:, None, None, None]
    y = pick * blurred + (1 - pick) * y
    # sensor noise
    y = y + torch.randn(y.shape, generator=gen) * u(0.0, 0.04)[:, None, None, None]
    return y.clamp(0.0, 1.0) * 255.0


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_digit_model(
    train: DigitSet,
    config: TrainConfig | None = None,
    *,
    valid: DigitSet | None = None,
    progress: bool = True,
) -> DigitNet:
    """Train a :class:`DigitNet` on ``train``; report ``valid`` metrics per epoch on stderr."""
    cfg = config or TrainConfig()
    cfg.check()
    if len(train) < cfg.batch_size:
        raise ParameterError(
            f"need at least batch_size={cfg.batch_size} training crops, got {len(train)}"
        )
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = DigitNet(cfg.width, cfg.hidden)
    x_all = torch.from_numpy(train.images.astype(np.float32))[:, None]
    y_all = torch.from_numpy(train.labels.astype(np.float32))
    steps = cfg.epochs * (len(train) // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        model.logits = True
        perm = torch.randperm(len(train), generator=gen)
        total = 0.0
        nb = len(train) // cfg.batch_size
        for b in range(nb):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            xb = x_all[idx]
            if cfg.augment:
                xb = augment(xb, gen)
            target = _soft_targets(y_all[idx], cfg.label_sigma)
            loss = -(target * F.log_softmax(model(xb), dim=1)).sum(dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            total += float(loss.detach())
        model.eval()
        model.logits = False
        if progress:
            msg = f"epoch {epoch + 1}/{cfg.epochs} loss {total / nb:.3f}"
            if valid is not None and len(valid):
                m = digit_metrics(predict_torch(model, valid.images)[0], valid.labels)
                msg += f" | held-out ±0.2 {m['within_0.2']:.2%} ±0.5 {m['within_0.5']:.2%}"
            _progress(f"{msg} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    model.logits = False
    return model


def predict_torch(
    model: DigitNet, images: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(values, confidences) with the PyTorch model (used during training)."""
    with torch.no_grad():
        probs = [
            model(torch.from_numpy(images[i : i + 1024].astype(np.float32))[:, None]).numpy()
            for i in range(0, len(images), 1024)
        ]
    return DigitReader.decode(np.concatenate(probs) if probs else np.zeros((0, N_CLASSES)))


def export_onnx(model: DigitNet, path: Path | str, *, card: dict[str, Any] | None = None) -> Path:
    """Write the model to ``path`` (ONNX, opset 17, dynamic batch) and ``card`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.logits = False
    h, w = INPUT_HW
    dummy = torch.full((2, 1, h, w), 128.0)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        # the TorchScript exporter gives a plain opset-17 graph with no onnxscript dependency
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(model, dummy, tmp)
    tmp.replace(path)
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def _export(model: DigitNet, dummy: torch.Tensor, tmp: Path) -> None:
    torch.onnx.export(
        model,
        (dummy,),
        str(tmp),
        input_names=["crops"],
        output_names=["probs"],
        dynamic_axes={"crops": {0: "n"}, "probs": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return asdict(cfg)
