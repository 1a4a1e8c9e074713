"""Reconstruction models of the anomaly detector: learning, ONNX parity, USAD, MI-FGSM.

Every model is trained once (cached) on a few hundred windows of a noisy sine with a period
of 24 samples — two periods per 48-sample window — and must then reconstruct fresh normal
windows clearly better than windows with a stuck meter or a spike.
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

from gridlens.anomaly.augment import AUGMENTS, augment_windows, mi_fgsm
from gridlens.anomaly.nets import (
    NET_KINDS,
    TrainConfig,
    TrainedNet,
    Usad,
    build,
    holdout_split,
    train,
)
from gridlens.anomaly.onnxrt import OnnxAE
from gridlens.errors import DataFormatError, NotFoundError, ParameterError

T = 48
PERIOD = 24

Array = npt.NDArray[np.float32]


def sine_windows(n: int, seed: int, t: int = T) -> Array:
    """``n`` sliding windows (stride 1) of 0.5 + 0.35 sin(2πk/24) + N(0, 0.03²)."""
    rng = np.random.default_rng(seed)
    k = np.arange(n + t - 1)
    s = 0.5 + 0.35 * np.sin(2 * np.pi * k / PERIOD) + 0.03 * rng.standard_normal(k.size)
    return np.lib.stride_tricks.sliding_window_view(s, t).astype(np.float32)


def stuck(x: Array) -> Array:
    """The meter freezes half-way through each window."""
    y = x.copy()
    y[:, T // 2 :] = y[:, T // 2 : T // 2 + 1]
    return y


def spiked(x: Array) -> Array:
    """A 3-sample spike of +0.5 (half the normalised range)."""
    y = x.copy()
    y[:, 20:23] += 0.5
    return y


def mse(net: TrainedNet, x: Array) -> npt.NDArray[np.float64]:
    return np.mean((net.reconstruct(x).astype(np.float64) - x) ** 2, axis=1)


# USAD's adversarial game drives AE1 to the window mean for a few epochs before it learns
# the pattern: it trains every epoch (patience = epochs), as the detector does.
_SETUP = {
    "cnn-gru-ae": (300, TrainConfig(epochs=15, batch_size=16, lr=5e-3)),
    "lstm-ae": (300, TrainConfig(epochs=15, batch_size=16, lr=5e-3)),
    "usad": (800, TrainConfig(epochs=20, batch_size=16, lr=5e-3, patience=20)),
}
_FIT = {"cnn-gru-ae": 0.1, "lstm-ae": 0.1, "usad": 0.1}  # of the variance 0.35²/2


@functools.cache
def trained(kind: str) -> TrainedNet:
    n, cfg = _SETUP[kind]
    cfg.threads, cfg.progress = 1, False
    return train(kind, sine_windows(n, seed=1), cfg)


@pytest.fixture(scope="module")
def normal() -> Array:
    return sine_windows(200, seed=2)


# --- architecture -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", NET_KINDS)
@pytest.mark.parametrize("t", [8, 47, 96, 673])
def test_build_maps_windows_to_same_shape(kind: str, t: int) -> None:
    module = build(kind, t, TrainConfig())
    with torch.no_grad():
        y = module(torch.rand(3, t))
    assert tuple(y.shape) == (3, t)


def test_lstm_ae_block_averages_long_windows() -> None:
    assert build("lstm-ae", 168, TrainConfig()).factor == 1
    assert build("lstm-ae", 169, TrainConfig()).factor == 2
    assert build("lstm-ae", 672, TrainConfig()).factor == 4


def test_usad_phase_losses_follow_audibert_2020() -> None:
    torch.manual_seed(0)
    usad = Usad(T, latent=8)
    x = torch.rand(5, T)
    with torch.no_grad():
        e1, e2, e3 = usad.errors(x)
        w1, w3 = usad.both(x)
        assert float(e1) == pytest.approx(float(torch.mean((x - w1) ** 2)), rel=1e-6)
        assert float(e3) == pytest.approx(float(torch.mean((x - w3) ** 2)), rel=1e-6)
        l1, l2 = usad.phase_losses(x, 1)  # epoch 1: plain reconstruction
        assert (float(l1), float(l2)) == pytest.approx((float(e1), float(e2)), rel=1e-6)
        l1, l2 = usad.phase_losses(x, 4)
        assert float(l1) == pytest.approx(float(e1 / 4 + 0.75 * e3), rel=1e-6)
        assert float(l2) == pytest.approx(float(e2 / 4 - 0.75 * e3), rel=1e-6)


# --- learning -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", NET_KINDS)
def test_reconstructs_normal_windows_better_than_anomalies(kind: str, normal: Array) -> None:
    net = trained(kind)
    e_normal = mse(net, normal)
    # predicting the window mean would cost the signal variance 0.35²/2 ≈ 0.061
    assert e_normal.mean() < _FIT[kind] * 0.35**2 / 2
    for anomalous in (stuck(normal), spiked(normal)):
        e_anom = mse(net, anomalous)
        assert e_anom.mean() > 2.0 * e_normal.mean()
        # rank statistic (ROC AUC): an anomalous window outscores a normal one
        auc = np.mean(e_anom[:, None] > e_normal[None, :])
        assert auc > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("kind", NET_KINDS)
def test_history_shows_the_loss_decreasing(kind: str) -> None:
    net = trained(kind)
    epochs = [h[0] for h in net.history]
    assert epochs == list(range(1, len(epochs) + 1))
    assert net.seconds > 0
    best_val = min(h[2] for h in net.history)
    assert min(h[1] for h in net.history) < 0.1 * net.history[0][1]
    assert best_val < 0.1 * net.history[0][2]


@pytest.mark.slow
def test_usad_history_has_both_phase_losses() -> None:
    net = trained("usad")
    hist = net.usad_history
    assert [u.epoch for u in hist] == [h[0] for h in net.history]
    assert len(hist) >= 3
    # epoch 1 is plain reconstruction (L2 = |W - AE2(W)|² > 0); from epoch 2 on AE2 is
    # rewarded for failing on AE1(W), and that adversarial term takes L2 below zero
    assert hist[0].train_l2 > 0 and hist[0].val_l2 > 0
    assert min(u.train_l2 for u in hist[1:]) < 0
    assert all(u.train_l1 > 0 for u in hist)
    assert all(u.train_l1 > u.train_l2 for u in hist[1:])


@pytest.mark.slow
def test_usad_score_combines_both_reconstructions(normal: Array) -> None:
    net = trained("usad")
    s = net.usad_score(normal)
    assert s.shape == (normal.shape[0],)
    e1 = mse(net, normal)
    assert np.allclose(net.usad_score(normal, alpha=1.0, beta=0.0), e1, rtol=1e-5)
    assert np.all(net.usad_score(normal, alpha=0.0, beta=1.0) >= 0)
    # AE1's term flags a stuck meter; trained through, AE2 fails on every AE1(W) (the
    # adversarial phase), so at alpha = beta = 0.5 its term dominates and separates less
    assert net.usad_score(stuck(normal), alpha=1.0, beta=0.0).mean() > 2.0 * e1.mean()
    assert net.usad_score(stuck(normal)).mean() > s.mean()


# --- ONNX ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", NET_KINDS)
def test_onnx_matches_torch(kind: str, normal: Array, tmp_path: Path) -> None:
    net = trained(kind)
    model = net.to_onnx()
    ort = OnnxAE(model)
    assert ort.kind == kind
    assert ort.window == (T if kind == "usad" else None)
    for batch in (normal[:1], normal[:7], spiked(normal)):
        assert np.allclose(ort.reconstruct(batch, batch_size=5), net.reconstruct(batch), atol=1e-4)
    if kind == "usad":
        assert np.allclose(ort.usad_score(normal), net.usad_score(normal), atol=1e-5)
    else:
        for t in (8, 77, 200):
            other = sine_windows(9, seed=3, t=t)
            assert np.allclose(ort.reconstruct(other), net.reconstruct(other), atol=1e-4)
    path = tmp_path / "model.onnx"
    path.write_bytes(model)
    assert np.allclose(OnnxAE(path).reconstruct(normal[:3]), ort.reconstruct(normal[:3]))


def test_onnx_runtime_side_does_not_import_torch() -> None:
    code = "import sys, gridlens.anomaly.onnxrt; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_onnx_of_block_averaged_lstm_ae_accepts_any_length() -> None:
    module = build("lstm-ae", 400, TrainConfig(hidden=8, latent=4))  # factor 3
    net = TrainedNet("lstm-ae", 400, module.eval(), [], 0.0)
    ort = OnnxAE(net.to_onnx(), threads=2)
    rng = np.random.default_rng(0)
    for n, t in ((2, 400), (3, 401), (1, 95)):
        x = rng.random((n, t), dtype=np.float32)
        assert np.allclose(ort.reconstruct(x), net.reconstruct(x), atol=1e-5)


# --- MI-FGSM ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", NET_KINDS)
def test_mi_fgsm_makes_hard_normal_windows_within_budget(kind: str, normal: Array) -> None:
    net = trained(kind)
    x = normal[:64]
    eps = 0.01
    adv = mi_fgsm(net, x, eps=eps, steps=10)
    assert adv.shape == x.shape and adv.dtype == np.float32
    assert np.max(np.abs(adv - x)) <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    before = torch.get_num_threads()
    assert np.array_equal(adv, mi_fgsm(net, x, eps=eps, steps=10, threads=1))
    assert torch.get_num_threads() == before  # the detector's threads, then restored
    rng = np.random.default_rng(0)
    noisy = np.clip(x + eps * rng.choice([-1.0, 1.0], size=x.shape), 0, 1).astype(np.float32)
    with torch.no_grad():
        e_clean, e_adv, e_noise = (
            float(net.window_loss(torch.from_numpy(a)).mean()) for a in (x, adv, noisy)
        )
    # random signs add about eps² of unreconstructable noise; the attack adds far more
    assert e_adv > e_noise > e_clean
    assert e_adv - e_clean > 4.0 * (e_noise - e_clean)
    assert all(p.requires_grad for p in net.module.parameters())


def test_mi_fgsm_clips_to_unit_range() -> None:
    module = build("usad", 16, TrainConfig(latent=4))
    net = TrainedNet("usad", 16, module.eval(), [], 0.0)
    x = np.tile(np.linspace(0.0, 1.0, 16, dtype=np.float32), (4, 1))
    adv = mi_fgsm(net, x, eps=0.05, steps=3, decay=0.5)
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.max(np.abs(adv - x)) <= 0.05 + 1e-6


def test_extra_windows_join_training_and_torch_state_is_restored() -> None:
    x = sine_windows(64, seed=4)
    threads = torch.get_num_threads()
    rng_state = torch.random.get_rng_state()
    cfg = TrainConfig(epochs=2, batch_size=32, threads=1, progress=False, patience=5)
    plain = train("usad", x, cfg)
    extra = mi_fgsm(plain, x[:32], eps=0.01, steps=2)
    more = train("usad", x, cfg, extra_windows=extra)
    assert len(more.history) == 2
    assert more.history[0][1] != plain.history[0][1]  # different training set
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    again = train("usad", x, cfg)
    assert again.history == plain.history  # seeded


def test_holdout_split_is_a_seeded_partition() -> None:
    cfg = TrainConfig(val_fraction=0.1, seed=3)
    val, tr = holdout_split(50, cfg)
    assert len(val) == 5 and len(tr) == 45
    assert sorted([*val, *tr]) == list(range(50))
    assert np.array_equal(val, holdout_split(50, cfg)[0])
    assert len(holdout_split(2, TrainConfig(val_fraction=0.5))[0]) == 1
    with pytest.raises(ParameterError, match="'n' parameter of holdout_split"):
        holdout_split(1, cfg)


@pytest.mark.parametrize("method", AUGMENTS)
def test_augment_windows_never_touches_the_early_stopping_share(method: str) -> None:
    # every window distinct, so a leaked held-out window would be found
    x = sine_windows(40, seed=5)
    cfg = TrainConfig(epochs=1, batch_size=16, threads=1, progress=False, seed=2)
    val, tr = holdout_split(len(x), cfg)
    extra = augment_windows("lstm-ae", x, cfg, eps=0.02, method=method)
    assert extra.shape == (len(tr), x.shape[1]) and extra.dtype == np.float32
    # row i augments training row i, within the budget ...
    assert np.max(np.abs(extra - x[tr])) <= 0.02 + 1e-6
    # ... and is farther from every held-out window than that
    gap = np.abs(extra[:, None, :] - x[None, val, :]).max(axis=2)
    assert gap.min() > 0.02
    if method == "copy":
        assert np.array_equal(extra, x[tr])
    elif method == "random":
        moved = np.abs(extra - x[tr])
        inside = (x[tr] > 0.02) & (x[tr] < 0.98)  # not clipped
        assert np.allclose(moved[inside], 0.02, atol=1e-6)
        assert np.array_equal(extra, augment_windows("lstm-ae", x, cfg, eps=0.02, method=method))
    with pytest.raises(ParameterError, match="'method' parameter of augment_windows"):
        augment_windows("lstm-ae", x, cfg, method="fgsm")


def test_reconstruct_empty_batch() -> None:
    net = TrainedNet("cnn-gru-ae", T, build("cnn-gru-ae", T, TrainConfig()).eval(), [], 0.0)
    assert net.reconstruct(np.zeros((0, T), np.float32)).shape == (0, T)
    assert OnnxAE(net.to_onnx()).reconstruct(np.zeros((0, 30), np.float32)).shape == (0, 30)


# --- bad input ----------------------------------------------------------------------------


def test_unknown_kind() -> None:
    with pytest.raises(ParameterError, match=r"^The 'kind' parameter of train must be one of"):
        train("transformer", sine_windows(20, seed=0))
    with pytest.raises(ParameterError, match=r"'kind' parameter of build .* Got 'gru' instead\."):
        build("gru", T, TrainConfig())


def test_window_too_short() -> None:
    msg = r"^The 'window' parameter of build must be an int in \[8, 4096\]\. Got 7 instead\.$"
    with pytest.raises(ParameterError, match=msg):
        build("lstm-ae", 7, TrainConfig())
    with pytest.raises(ParameterError, match=r"'window' parameter of train .* Got 5 instead"):
        train("cnn-gru-ae", np.zeros((20, 5), np.float32))


@pytest.mark.parametrize("shape", [(100,), (4, 10, 1), ()])
def test_windows_not_2d(shape: tuple[int, ...]) -> None:
    with pytest.raises(DataFormatError, match=r"'windows' parameter of train must be a 2-D"):
        train("usad", np.zeros(shape, np.float32))


def test_nan_and_strings_rejected() -> None:
    x = sine_windows(20, seed=0)
    x[3, 5] = np.nan
    with pytest.raises(DataFormatError, match=r"must hold finite values .* Got 1 NaN"):
        train("lstm-ae", x)
    with pytest.raises(DataFormatError, match=r"cannot be read as numbers"):
        train("lstm-ae", [["a"] * 10] * 3)
    net = TrainedNet("cnn-gru-ae", T, build("cnn-gru-ae", T, TrainConfig()).eval(), [], 0.0)
    with pytest.raises(DataFormatError):
        net.reconstruct(x)
    with pytest.raises(DataFormatError):
        mi_fgsm(net, x)


def test_bad_config_and_counts() -> None:
    x = sine_windows(20, seed=0)
    with pytest.raises(ParameterError, match=r"^The 'epochs' parameter of train must be"):
        train("usad", x, TrainConfig(epochs=0))
    with pytest.raises(ParameterError, match=r"'val_fraction' parameter of train"):
        train("usad", x, TrainConfig(val_fraction=0.9))
    with pytest.raises(ParameterError, match=r"'windows.shape\[0\]' parameter of train"):
        train("usad", x[:1])
    with pytest.raises(ParameterError, match=r"'window' parameter of train must be 48"):
        train("usad", x, extra_windows=np.zeros((3, 40), np.float32))


def test_bad_inference_parameters() -> None:
    usad = TrainedNet("usad", T, build("usad", T, TrainConfig()).eval(), [], 0.0)
    cnn = TrainedNet("cnn-gru-ae", T, build("cnn-gru-ae", T, TrainConfig()).eval(), [], 0.0)
    x = sine_windows(4, seed=0)
    with pytest.raises(ParameterError, match=r"'window' parameter of TrainedNet.reconstruct"):
        usad.reconstruct(x[:, :40])
    with pytest.raises(ParameterError, match=r"'kind' parameter of TrainedNet.usad_score"):
        cnn.usad_score(x)
    for eps in (0.0, 1.5, math.nan):
        with pytest.raises(ParameterError, match=r"^The 'eps' parameter of mi_fgsm"):
            mi_fgsm(cnn, x, eps=eps)
    with pytest.raises(ParameterError, match=r"'steps' parameter of mi_fgsm"):
        mi_fgsm(cnn, x, steps=0)
    ort = OnnxAE(usad.to_onnx())
    with pytest.raises(ParameterError, match=r"'window' parameter of OnnxAE.reconstruct"):
        ort.reconstruct(x[:, :40])
    with pytest.raises(ParameterError, match=r"usad_score needs a USAD model"):
        OnnxAE(cnn.to_onnx()).usad_score(x)
    with pytest.raises(DataFormatError, match=r"not a usable ONNX model"):
        OnnxAE(b"not a model")
    with pytest.raises(NotFoundError):
        OnnxAE("/nonexistent/model.onnx")
