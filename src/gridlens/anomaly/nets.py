"""Neural reconstruction models of the consumption anomaly detector (seed S3), in PyTorch.

Three autoencoders reconstruct windows of a min-max normalised load series; a window they
reconstruct badly is suspicious.  Only this module and :mod:`gridlens.anomaly.augment` import
PyTorch (the ``train`` extra); scoring with an exported model needs only ONNX Runtime
(:class:`gridlens.anomaly.onnxrt.OnnxAE`).

``"cnn-gru-ae"`` — the seed's GELU CNN-GRU autoencoder
    A Conv1d encoder (kernel 5, then two stride-2 layers, GELU [3]_) shortens the window to
    ``ceil(T/4)`` steps of local features; a GRU summarises them into a latent vector (GELU);
    a decoder GRU, started from and fed with the latent vector at every step, unrolls
    ``ceil(T/4)`` steps; two stride-2 transposed convolutions (GELU) bring them back to
    ``4*ceil(T/4) >= T`` samples and a linear 1×5 convolution gives the output, cropped to
    ``T``.  Any ``T`` works: the stride-2 convolutions (kernel 3, padding 1) give
    ``ceil(L/2)`` steps, so no explicit padding is needed.
``"lstm-ae"`` — the LSTM encoder-decoder of Malhotra et al. [4]_
    LSTM encoder -> last hidden state -> linear map to the latent vector -> repeated over
    the sequence -> LSTM decoder -> linear output.  An LSTM over 672 steps (a week at 15 min)
    is too slow to train on two cores, so windows longer than 168 samples are first averaged
    over blocks of ``f = ceil(window/168)`` samples (the window is edge-padded by ``f - 1``
    samples, so every block is full); the LSTMs then run over ``ceil(T/f)`` steps and the
    output layer emits ``f`` samples per step (a learned linear upsampling), cropped to ``T``.
    ``f`` is fixed when the model is built, so the model stays usable for any ``T``.
``"usad"`` — UnSupervised Anomaly Detection, Audibert et al. [1]_
    An encoder E and two decoders D1, D2, each three dense layers (sizes ``T -> T/2 -> T/4 ->
    latent`` and back, ReLU, sigmoid output, as in the authors' code) on the flattened window;
    ``AE1 = D1(E(W))``, ``AE2 = D2(E(W))``.  Training alternates two phases per batch, with
    ``n`` the 1-based epoch::

        L1 = (1/n)·|W - AE1(W)|² + (1 - 1/n)·|W - AE2(AE1(W))|²    (optimiser of E, D1)
        L2 = (1/n)·|W - AE2(W)|² - (1 - 1/n)·|W - AE2(AE1(W))|²    (optimiser of E, D2)

    (squared norms as means over the window, as in the authors' code; gradients are zeroed
    before each phase, so one phase's gradients do not leak into the other's step).  The
    anomaly score is ``alpha·|W - AE1(W)|² + beta·|W - AE2(AE1(W))|²``.  Dense layers fix
    ``T``.

All three are trained with Adam on mini-batches (the recurrent two with their gradient norm
clipped to 1) with early stopping on a held-out share of the windows (the best epoch's
weights are kept); the training set can be enlarged with adversarially perturbed "hard
normal" windows from :func:`gridlens.anomaly.augment.mi_fgsm` [2]_.

References
----------
.. [1] J. Audibert, P. Michiardi, F. Guyard, S. Marti and M. A. Zuluaga, "USAD: UnSupervised
   Anomaly Detection on Multivariate Time Series", Proc. 26th ACM SIGKDD (KDD '20),
   pp. 3395-3404, 2020. doi:10.1145/3394486.3403392
.. [2] Y. Dong, F. Liao, T. Pang, H. Su, J. Zhu, X. Hu and J. Li, "Boosting Adversarial
   Attacks with Momentum", Proc. IEEE/CVF CVPR, pp. 9185-9193, 2018.
.. [3] D. Hendrycks and K. Gimpel, "Gaussian Error Linear Units (GELUs)", arXiv:1606.08415,
   2016.
.. [4] P. Malhotra, A. Ramakrishnan, G. Anand, L. Vig, P. Agarwal and G. Shroff,
   "LSTM-based Encoder-Decoder for Multi-sensor Anomaly Detection", ICML Anomaly Detection
   Workshop, arXiv:1607.00148, 2016.
"""

from __future__ import annotations

import copy
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from gridlens.anomaly.onnxrt import (
    MAX_WINDOW,
    META_KIND,
    META_WINDOW,
    MIN_WINDOW,
    check_windows,
    usad_score_np,
)
from gridlens.errors import check_param

__all__ = [
    "LSTM_MAX_STEPS",
    "NET_KINDS",
    "CnnGruAE",
    "LstmAE",
    "TrainConfig",
    "TrainedNet",
    "Usad",
    "UsadEpoch",
    "build",
    "holdout_split",
    "train",
]

NET_KINDS = ("cnn-gru-ae", "lstm-ae", "usad")
"""Names of the reconstruction models."""

LSTM_MAX_STEPS = 168
"""Longest sequence the LSTM autoencoder runs over; longer windows are block-averaged."""

_ONNX_OPSET = 17


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes
    ----------
    epochs : int
        Most passes over the training windows.
    batch_size : int
        Windows per Adam step.
    lr : float
        Adam learning rate.
    hidden : int
        Width of the recurrent / convolutional layers (CNN-GRU, LSTM).
    latent : int
        Size of the latent vector (all three models).
    patience : int
        Epochs without a better validation loss before training stops.
    val_fraction : float
        Share of the windows held out for early stopping (at least one window).
    seed : int
        Seed of the weight initialisation, the split and the batch order.
    threads : int
        PyTorch intra-op threads during training (restored afterwards).
    progress : bool
        Show one tqdm bar per fit on stderr.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    hidden: int = 32
    latent: int = 16
    patience: int = 3
    val_fraction: float = 0.1
    seed: int = 0
    threads: int = 2
    progress: bool = True

    def check(self, owner: str = "train") -> None:
        """Raise :class:`~gridlens.errors.ParameterError` for the first value out of range."""
        check_param(self.epochs >= 1, "epochs", owner, "an int >= 1", self.epochs)
        check_param(self.batch_size >= 1, "batch_size", owner, "an int >= 1", self.batch_size)
        check_param(
            math.isfinite(self.lr) and self.lr > 0, "lr", owner, "a positive float", self.lr
        )
        check_param(4 <= self.hidden <= 512, "hidden", owner, "an int in [4, 512]", self.hidden)
        check_param(1 <= self.latent <= 512, "latent", owner, "an int in [1, 512]", self.latent)
        check_param(self.patience >= 1, "patience", owner, "an int >= 1", self.patience)
        check_param(
            0.0 < self.val_fraction <= 0.5,
            "val_fraction",
            owner,
            "a float in (0, 0.5]",
            self.val_fraction,
        )
        check_param(1 <= self.threads <= 64, "threads", owner, "an int in [1, 64]", self.threads)


class CnnGruAE(nn.Module):
    """The seed's GELU CNN-GRU autoencoder; ``(n, T) -> (n, T)`` for any ``T >= 1``.

    Parameters
    ----------
    hidden : int
        Channels of the convolutions and width of both GRUs.
    latent : int
        Size of the latent vector.
    """

    def __init__(self, hidden: int = 32, latent: int = 16) -> None:
        super().__init__()
        c1 = max(hidden // 2, 4)
        self.encoder_cnn = nn.Sequential(
            nn.Conv1d(1, c1, 5, padding=2),
            nn.GELU(),
            nn.Conv1d(c1, hidden, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.encoder_gru = nn.GRU(hidden, hidden, batch_first=True)
        self.to_latent = nn.Sequential(nn.Linear(hidden, latent), nn.GELU())
        self.init_state = nn.Linear(latent, hidden)
        self.decoder_gru = nn.GRU(latent, hidden, batch_first=True)
        self.decoder_cnn = nn.Sequential(
            nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1),
            nn.GELU(),
            nn.ConvTranspose1d(hidden, c1, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv1d(c1, 1, 5, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        feats: torch.Tensor = self.encoder_cnn(x.unsqueeze(1))  # (n, C, ceil(T/4))
        seq = feats.transpose(1, 2)
        _, last = self.encoder_gru(seq)
        z: torch.Tensor = self.to_latent(last[0])
        h0 = torch.tanh(self.init_state(z)).unsqueeze(0)
        steps = z.unsqueeze(1).expand(-1, seq.shape[1], -1)
        out, _ = self.decoder_gru(steps, h0)
        y: torch.Tensor = self.decoder_cnn(out.transpose(1, 2))  # (n, 1, 4*ceil(T/4))
        return y[:, 0, :t]


class LstmAE(nn.Module):
    """LSTM encoder-decoder autoencoder; ``(n, T) -> (n, T)`` for any ``T >= 1``.

    Parameters
    ----------
    window : int
        Window length the model is built for [samples]; sets the block-average factor
        ``f = ceil(window / LSTM_MAX_STEPS)``.
    hidden : int
        Width of both LSTMs.
    latent : int
        Size of the latent vector.
    """

    def __init__(self, window: int, hidden: int = 32, latent: int = 16) -> None:
        super().__init__()
        self.factor = max(1, math.ceil(window / LSTM_MAX_STEPS))
        self.encoder = nn.LSTM(1, hidden, batch_first=True)
        self.to_latent = nn.Linear(hidden, latent)
        self.init_state = nn.Linear(latent, 2 * hidden)
        self.decoder = nn.LSTM(latent, hidden, batch_first=True)
        self.output = nn.Linear(hidden, self.factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        f = self.factor
        if f > 1:
            padded = F.pad(x.unsqueeze(1), (0, f - 1), mode="replicate")
            seq = F.avg_pool1d(padded, f, f).transpose(1, 2)  # (n, ceil(T/f), 1)
        else:
            seq = x.unsqueeze(2)
        _, (h, _) = self.encoder(seq)
        z: torch.Tensor = self.to_latent(h[0])
        h0, c0 = torch.tanh(self.init_state(z)).unsqueeze(0).chunk(2, dim=2)
        steps = z.unsqueeze(1).expand(-1, seq.shape[1], -1)
        out, _ = self.decoder(steps, (h0.contiguous(), c0.contiguous()))
        y: torch.Tensor = self.output(out)  # (n, ceil(T/f), f)
        return y.flatten(1)[:, :t]


def _mlp(sizes: list[int], last: nn.Module) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        layers.append(last if i == len(sizes) - 2 else nn.ReLU())
    return nn.Sequential(*layers)


class Usad(nn.Module):
    """USAD [1]_: encoder E, decoders D1 and D2 on the flattened window (fixed ``T``).

    Layer sizes follow the authors' code: ``T -> T/2 -> T/4 -> latent`` (ReLU) and back
    (ReLU, sigmoid output), the hidden sizes kept at least ``latent``.  :meth:`forward`
    returns ``AE1(W)``; :meth:`both` returns ``(AE1(W), AE2(AE1(W)))``.

    Parameters
    ----------
    window : int
        Window length ``T`` [samples].
    latent : int
        Size of the latent vector.
    """

    def __init__(self, window: int, latent: int = 16) -> None:
        super().__init__()
        h1, h2 = max(window // 2, latent), max(window // 4, latent)
        self.window = window
        self.encoder = _mlp([window, h1, h2, latent], nn.ReLU())
        self.decoder1 = _mlp([latent, h2, h1, window], nn.Sigmoid())
        self.decoder2 = _mlp([latent, h2, h1, window], nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.decoder1(self.encoder(x))
        return y

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(AE1(W), AE2(AE1(W)))``."""
        w1: torch.Tensor = self.decoder1(self.encoder(x))
        w3: torch.Tensor = self.decoder2(self.encoder(w1))
        return w1, w3

    def errors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch-mean squared errors of ``AE1(W)``, ``AE2(W)`` and ``AE2(AE1(W))``."""
        z = self.encoder(x)
        w1 = self.decoder1(z)
        w2 = self.decoder2(z)
        w3 = self.decoder2(self.encoder(w1))
        return torch.mean((x - w1) ** 2), torch.mean((x - w2) ** 2), torch.mean((x - w3) ** 2)

    def phase_losses(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L1, L2)`` of epoch ``n`` (1-based) on a batch ``x`` [1]_."""
        return _phase_losses(*self.errors(x), n)


def _phase_losses(
    e1: torch.Tensor, e2: torch.Tensor, e3: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    l1 = e1 / n + (1.0 - 1.0 / n) * e3
    l2 = e2 / n - (1.0 - 1.0 / n) * e3
    return l1, l2


class _UsadGraph(nn.Module):
    """USAD with both reconstructions as outputs, for the ONNX export."""

    def __init__(self, usad: Usad) -> None:
        super().__init__()
        self.usad = usad

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.usad.both(x)


def build(kind: str, window: int, cfg: TrainConfig) -> nn.Module:
    """An untrained reconstruction model.

    Parameters
    ----------
    kind : str
        One of :data:`NET_KINDS`.
    window : int
        Window length ``T`` [samples], in [8, 4096].
    cfg : TrainConfig
        ``hidden`` and ``latent`` are used.

    Returns
    -------
    torch.nn.Module
        Maps a float32 tensor ``(n, T)`` to its reconstruction ``(n, T)``.
    """
    check_param(kind in NET_KINDS, "kind", "build", f"one of {NET_KINDS}", kind)
    check_param(
        isinstance(window, int) and MIN_WINDOW <= window <= MAX_WINDOW,
        "window",
        "build",
        f"an int in [{MIN_WINDOW}, {MAX_WINDOW}]",
        window,
    )
    cfg.check("build")
    if kind == "cnn-gru-ae":
        return CnnGruAE(cfg.hidden, cfg.latent)
    if kind == "lstm-ae":
        return LstmAE(window, cfg.hidden, cfg.latent)
    return Usad(window, cfg.latent)


class UsadEpoch(NamedTuple):
    """USAD's two phase losses of one epoch (means over batches / held-out windows)."""

    epoch: int
    train_l1: float
    train_l2: float
    val_l1: float
    val_l2: float


@dataclass
class TrainedNet:
    """A trained reconstruction model.

    Attributes
    ----------
    kind : str
        One of :data:`NET_KINDS`.
    window : int
        Window length trained on [samples] (the only one USAD accepts).
    module : torch.nn.Module
        The network, in eval mode, with the weights of the best validation epoch.
    history : list of (int, float, float)
        ``(epoch, train_loss, val_loss)`` per epoch run, 1-based: the loss early stopping
        watches, the mean squared reconstruction error (for USAD that of ``AE1(W)``; see
        :attr:`usad_history` for its two phase losses).
    seconds : float
        Wall-clock training time [s].
    usad_history : list of UsadEpoch
        USAD only: the phase losses ``L1`` and ``L2`` per epoch.
    """

    kind: str
    window: int
    module: nn.Module
    history: list[tuple[int, float, float]]
    seconds: float
    usad_history: list[UsadEpoch] = field(default_factory=list)

    def window_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable per-window loss ``(n,)`` of a float32 tensor ``(n, T)``.

        Mean squared reconstruction error; for USAD its anomaly score with
        ``alpha = beta = 0.5``.  Used by :func:`gridlens.anomaly.augment.mi_fgsm`.
        """
        return _window_loss(self.module, x)

    def _check(self, windows: npt.ArrayLike, owner: str) -> npt.NDArray[np.float32]:
        return check_windows(windows, owner, window=self.window if self.kind == "usad" else None)

    def reconstruct(
        self, windows: npt.ArrayLike, *, batch_size: int = 512
    ) -> npt.NDArray[np.float32]:
        """Reconstruct windows (for USAD: ``AE1(W)``).

        Parameters
        ----------
        windows : array_like, shape (n, T)
            Min-max normalised windows; ``T`` may differ from :attr:`window` except for
            USAD. [-]
        batch_size : int
            Windows per forward pass.

        Returns
        -------
        numpy.ndarray of float32, shape (n, T)
            Reconstructions. [-]
        """
        x = self._check(windows, "TrainedNet.reconstruct")
        return _predict(self.module, x, batch_size)[0]

    def usad_score(
        self,
        windows: npt.ArrayLike,
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        batch_size: int = 512,
    ) -> npt.NDArray[np.float64]:
        """USAD anomaly score per window, higher = more anomalous [1]_.

        ``alpha * mean((W - AE1(W))**2) + beta * mean((W - AE2(AE1(W)))**2)`` over each
        window's samples.

        Parameters
        ----------
        windows : array_like, shape (n, T)
            Min-max normalised windows. [-]
        alpha, beta : float
            Weights of the two reconstruction errors. [-]
        batch_size : int
            Windows per forward pass.

        Returns
        -------
        numpy.ndarray of float64, shape (n,)
            Anomaly score. [-]
        """
        check_param(self.kind == "usad", "kind", "TrainedNet.usad_score", "'usad'", self.kind)
        x = self._check(windows, "TrainedNet.usad_score")
        w1, w3 = _predict(self.module, x, batch_size)
        return usad_score_np(x, w1, w3, alpha=alpha, beta=beta)

    def to_onnx(self) -> bytes:
        """The model as ONNX (opset 17) with a dynamic batch axis.

        Input ``windows`` ``(n, T)`` float32, output ``reconstruction`` ``(n, T)``; for the
        CNN-GRU and LSTM autoencoders ``T`` is dynamic too.  USAD's graph has a fixed ``T``
        and a second output ``ae2_ae1`` = ``AE2(AE1(W))``.  The metadata keys
        ``gridlens.kind`` and ``gridlens.window`` record the model.

        Returns
        -------
        bytes
            A serialised ``onnx.ModelProto``; load it with
            :class:`gridlens.anomaly.onnxrt.OnnxAE`.
        """
        import onnx

        self.module.eval()
        gen = torch.Generator().manual_seed(0)
        dummy = torch.rand((2, self.window), generator=gen)
        graph: nn.Module
        if isinstance(self.module, Usad):
            graph = _UsadGraph(self.module)
            outputs = ["reconstruction", "ae2_ae1"]
            axes = {name: {0: "n"} for name in ["windows", *outputs]}
        else:
            graph = self.module
            outputs = ["reconstruction"]
            axes = {name: {0: "n", 1: "t"} for name in ["windows", *outputs]}
        with tempfile.TemporaryDirectory(prefix="gridlens-onnx-") as tmp:
            path = Path(tmp) / f"{self.kind}.onnx"
            with warnings.catch_warnings():
                # the TorchScript exporter gives a plain opset-17 graph with no onnxscript
                # dependency.  Its deprecation note, its warning about RNNs exported without
                # an initial state (they do accept any batch size, see the tests), its note
                # on strided slices it cannot constant-fold and the tracer's notes on the
                # input-size checks inside torch.nn.GRU/LSTM do not apply
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", module=r"torch\.nn\.modules\.rnn")
                warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size")
                warnings.filterwarnings("ignore", "Constant folding - Only steps=1")
                torch.onnx.export(
                    graph,
                    (dummy,),
                    str(path),
                    input_names=["windows"],
                    output_names=outputs,
                    dynamic_axes=axes,
                    opset_version=_ONNX_OPSET,
                    dynamo=False,
                )
            model = onnx.load(str(path))
        onnx.helper.set_model_props(model, {META_KIND: self.kind, META_WINDOW: str(self.window)})
        data: bytes = model.SerializeToString()
        return data


def _window_loss(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, Usad):
        w1, w3 = module.both(x)
        return 0.5 * torch.mean((x - w1) ** 2, dim=1) + 0.5 * torch.mean((x - w3) ** 2, dim=1)
    y: torch.Tensor = module(x)
    return torch.mean((x - y) ** 2, dim=1)


def _predict(
    module: nn.Module, x: npt.NDArray[np.float32], batch_size: int
) -> list[npt.NDArray[np.float32]]:
    """Forward pass in batches: ``[reconstruction]``, for USAD ``[AE1, AE2(AE1)]``."""
    check_param(
        isinstance(batch_size, int) and batch_size >= 1,
        "batch_size",
        "TrainedNet.reconstruct",
        "an int >= 1",
        batch_size,
    )
    usad = isinstance(module, Usad)
    parts: list[list[npt.NDArray[np.float32]]] = [[], []] if usad else [[]]
    module.eval()
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(x[i : i + batch_size])
            outs = module.both(xb) if isinstance(module, Usad) else (module(xb),)
            for k, o in enumerate(outs):
                parts[k].append(o.numpy().astype(np.float32, copy=False))
    return [np.concatenate(p) if p else np.zeros((0, x.shape[1]), np.float32) for p in parts]


def _batches(n: int, size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        yield perm[i : i + size]


def _mean_in_batches(module: nn.Module, x: torch.Tensor, usad_n: int = 0) -> list[float]:
    """Held-out losses: ``[mse]``, or for USAD ``[mse of AE1, L1, L2]`` of epoch ``usad_n``."""
    sums = np.zeros(3)
    module.eval()
    with torch.no_grad():
        for i in range(0, x.shape[0], 512):
            xb = x[i : i + 512]
            k = xb.shape[0]
            if isinstance(module, Usad):
                e1, e2, e3 = module.errors(xb)
                l1, l2 = _phase_losses(e1, e2, e3, usad_n)
                sums += np.array([float(e1), float(l1), float(l2)]) * k
            else:
                sums[0] += float(_window_loss(module, xb).sum())
    means = sums / max(x.shape[0], 1)
    return [float(v) for v in (means if isinstance(module, Usad) else means[:1])]


def _fit(
    module: nn.Module,
    x_train: torch.Tensor,
    x_val: torch.Tensor,
    cfg: TrainConfig,
    bar: tqdm,
) -> tuple[list[tuple[int, float, float]], list[UsadEpoch]]:
    """Adam with early stopping; restores the best epoch's weights into ``module``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    usad = module if isinstance(module, Usad) else None
    if usad is not None:
        params1 = [*usad.encoder.parameters(), *usad.decoder1.parameters()]
        params2 = [*usad.encoder.parameters(), *usad.decoder2.parameters()]
        opts = [torch.optim.Adam(params1, lr=cfg.lr), torch.optim.Adam(params2, lr=cfg.lr)]
    else:
        opts = [torch.optim.Adam(module.parameters(), lr=cfg.lr)]
    history: list[tuple[int, float, float]] = []
    usad_history: list[UsadEpoch] = []
    best, best_state, stale = math.inf, copy.deepcopy(module.state_dict()), 0
    for epoch in range(1, cfg.epochs + 1):
        module.train()
        sums = np.zeros(3)
        for idx in _batches(x_train.shape[0], cfg.batch_size, gen):
            xb = x_train[idx]
            k = xb.shape[0]
            if usad is not None:
                # phase 1: AE1 learns to reconstruct W and to fool AE2
                usad.zero_grad(set_to_none=True)
                e1, e2, e3 = usad.errors(xb)
                l1, _ = _phase_losses(e1, e2, e3, epoch)
                l1.backward()  # type: ignore[no-untyped-call]
                opts[0].step()
                # phase 2: AE2 learns to reconstruct W and to tell W from AE1(W)
                usad.zero_grad(set_to_none=True)
                _, l2 = usad.phase_losses(xb, epoch)
                l2.backward()  # type: ignore[no-untyped-call]
                opts[1].step()
                sums += np.array([float(e1.detach()), float(l1.detach()), float(l2.detach())]) * k
            else:
                opts[0].zero_grad(set_to_none=True)
                loss = _window_loss(module, xb).mean()
                loss.backward()  # type: ignore[no-untyped-call]
                nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                opts[0].step()
                sums[0] += float(loss.detach()) * k
        train_means = sums / x_train.shape[0]
        val = _mean_in_batches(module, x_val, epoch)
        history.append((epoch, float(train_means[0]), val[0]))
        if usad is not None:
            usad_history.append(
                UsadEpoch(epoch, float(train_means[1]), float(train_means[2]), val[1], val[2])
            )
        bar.update(1)
        bar.set_postfix(train=f"{train_means[0]:.4g}", val=f"{val[0]:.4g}")
        if val[0] < best:
            best, best_state, stale = val[0], copy.deepcopy(module.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    module.load_state_dict(best_state)
    module.eval()
    return history, usad_history


def holdout_split(n: int, cfg: TrainConfig) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The rows :func:`train` holds out for early stopping, and the rows it trains on.

    A random ``cfg.val_fraction`` of ``n`` windows (at least one, at most ``n - 1``),
    drawn with ``cfg.seed``.  Augment only the training rows: a perturbed copy of a
    held-out window in the training share would leak it into training.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sorted row indices ``(held_out, training)``; together they are ``0 .. n-1``.
    """
    check_param(isinstance(n, int) and n >= 2, "n", "holdout_split", "an int >= 2", n)
    n_val = min(max(1, round(n * cfg.val_fraction)), n - 1)
    perm = np.random.default_rng(cfg.seed).permutation(n)
    return np.sort(perm[:n_val]), np.sort(perm[n_val:])


def train(
    kind: str,
    windows: npt.ArrayLike,
    cfg: TrainConfig | None = None,
    *,
    extra_windows: npt.ArrayLike | None = None,
) -> TrainedNet:
    """Train a reconstruction model on normal windows.

    The rows :func:`holdout_split` picks (a random ``cfg.val_fraction``, at least one)
    are held out for early stopping; ``extra_windows`` join the training share only.

    Parameters
    ----------
    kind : str
        One of :data:`NET_KINDS`.
    windows : array_like, shape (n, T)
        Windows of normal operation, min-max normalised to [0, 1]; ``n >= 2``,
        ``T`` in [8, 4096]. [-]
    cfg : TrainConfig, optional
        Hyper-parameters; default ``TrainConfig()``.
    extra_windows : array_like, shape (m, T), optional
        Augmented windows (e.g. from :func:`gridlens.anomaly.augment.mi_fgsm`) added to the
        training share. [-]

    Returns
    -------
    TrainedNet

    Raises
    ------
    ParameterError
        Unknown ``kind``, ``T`` out of range, a bad ``cfg`` value, fewer than two windows.
    DataFormatError
        ``windows`` not 2-D or not finite.

    Notes
    -----
    Early stopping watches the held-out mean squared reconstruction error; for USAD that of
    ``AE1(W)``, the autoencoder both phases train to reconstruct normal windows.  (USAD's
    anomaly score is no stopping criterion: its adversarial term raises the score by design
    once the weight ``1 - 1/n`` grows and AE2 learns to fail on ``AE1(W)``, so stopping on
    it kept a model of the first few epochs.)

    The recurrent models first learn to predict the window mean and leave that plateau
    after some 100-400 Adam steps at ``lr = 5e-3`` (300 windows of a sine, ``T = 48``,
    ``batch_size = 16``: about ten epochs); with ``lr = 1e-3`` allow several times more.

    Sets PyTorch's thread count to ``cfg.threads`` while training and seeds a forked RNG,
    so the global PyTorch state is left as it was.
    """
    cfg = cfg if cfg is not None else TrainConfig()
    check_param(kind in NET_KINDS, "kind", "train", f"one of {NET_KINDS}", kind)
    cfg.check("train")
    x = check_windows(windows, "train", min_rows=2)
    t = x.shape[1]
    extra = (
        check_windows(extra_windows, "train", name="extra_windows", window=t)
        if extra_windows is not None
        else np.zeros((0, t), np.float32)
    )
    val_rows, train_rows = holdout_split(x.shape[0], cfg)
    x_val = torch.from_numpy(x[val_rows])
    x_train = torch.from_numpy(np.concatenate([x[train_rows], extra]))
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    with (
        torch.random.fork_rng(devices=[]),
        tqdm(
            total=cfg.epochs,
            desc=f"{kind} T={t}",
            unit="epoch",
            file=sys.stderr,
            disable=not cfg.progress,
        ) as bar,
    ):
        try:
            torch.set_num_threads(cfg.threads)
            torch.manual_seed(cfg.seed)
            module = build(kind, t, cfg)
            history, usad_history = _fit(module, x_train, x_val, cfg, bar)
        finally:
            torch.set_num_threads(threads)
    return TrainedNet(
        kind=kind,
        window=t,
        module=module,
        history=history,
        seconds=time.perf_counter() - t0,
        usad_history=usad_history,
    )
