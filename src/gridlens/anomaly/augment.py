"""MI-FGSM augmentation: adversarially perturbed "hard normal" windows (seed S3), in PyTorch.

Anomalies are rare, so a reconstruction model sees only normal windows and learns them all
equally well.  The seed enlarges the training set with *hard* normal windows: normal windows
nudged, within a small budget ``eps``, in the direction that most increases the model's
reconstruction error — found with the Momentum Iterative Fast Gradient Sign Method of Dong
et al. [1]_.  Training on them (``gridlens.anomaly.nets.train(..., extra_windows=...)``)
tightens the model around the normal pattern; the seed reports its best F1 at ``eps = 0.01``
(in units of the min-max normalised series).

References
----------
.. [1] Y. Dong, F. Liao, T. Pang, H. Su, J. Zhu, X. Hu and J. Li, "Boosting Adversarial
   Attacks with Momentum", Proc. IEEE/CVF CVPR, pp. 9185-9193, 2018.
.. [2] J. Audibert, P. Michiardi, F. Guyard, S. Marti and M. A. Zuluaga, "USAD: UnSupervised
   Anomaly Detection on Multivariate Time Series", Proc. 26th ACM SIGKDD (KDD '20),
   pp. 3395-3404, 2020. doi:10.1145/3394486.3403392
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

from gridlens.anomaly import nets
from gridlens.anomaly.detectors import AUGMENTS
from gridlens.anomaly.nets import TrainConfig, TrainedNet
from gridlens.anomaly.onnxrt import check_batch_size, check_windows
from gridlens.errors import check_param

__all__ = ["AUGMENTS", "augment_windows", "mi_fgsm"]


def mi_fgsm(
    net: TrainedNet,
    windows: npt.ArrayLike,
    *,
    eps: float = 0.01,
    steps: int = 10,
    decay: float = 1.0,
    seed: int = 0,
    batch_size: int = 512,
    threads: int | None = None,
) -> npt.NDArray[np.float32]:
    """Perturb windows to maximise the reconstruction error of ``net`` (MI-FGSM [1]_).

    With step ``a = eps / steps``, per window ``x`` and ``x_0 = x``::

        g_{t+1} = decay * g_t + grad L(x_t) / |grad L(x_t)|_1
        x_{t+1} = clip_[0, 1]( clip_[x - eps, x + eps]( x_t + a * sign(g_{t+1}) ) )

    where ``L`` is the window's mean squared reconstruction error (for USAD [2]_ its anomaly
    score with ``alpha = beta = 0.5``).  The model's weights are not changed.

    Parameters
    ----------
    net : TrainedNet
        The model to attack.
    windows : array_like, shape (n, T)
        Normal windows, min-max normalised to [0, 1]. [-]
    eps : float
        L-infinity budget of the perturbation, in (0, 1]. [-] (normalised units)
    steps : int
        Iterations; the step size is ``eps / steps``.
    decay : float
        Momentum decay factor ``mu`` (``0`` gives I-FGSM). [-]
    seed : int
        Seed of PyTorch's RNG (forked, so the global state is untouched) during the attack.
        MI-FGSM itself is deterministic; the seed only pins any randomness of the model.
    batch_size : int
        Windows per forward/backward pass.
    threads : int, optional
        PyTorch intra-op threads during the attack (restored afterwards); default: leave
        PyTorch's setting alone. Detectors pass their own ``threads``.

    Returns
    -------
    numpy.ndarray of float32, shape (n, T)
        The perturbed windows, within ``eps`` of ``windows`` and within [0, 1] (inputs are
        assumed to lie in [0, 1]; values outside are clipped to it). [-]

    Raises
    ------
    ParameterError
        A parameter out of range, or windows of the wrong length for a USAD model.
    DataFormatError
        ``windows`` not 2-D or not finite.
    """
    owner = "mi_fgsm"
    check_param(math.isfinite(eps) and 0.0 < eps <= 1.0, "eps", owner, "a float in (0, 1]", eps)
    check_param(isinstance(steps, int) and steps >= 1, "steps", owner, "an int >= 1", steps)
    check_param(math.isfinite(decay) and decay >= 0.0, "decay", owner, "a float >= 0", decay)
    check_batch_size(batch_size, owner)
    check_param(
        threads is None or (isinstance(threads, int) and threads >= 1),
        "threads",
        owner,
        "an int >= 1 or None",
        threads,
    )
    x_all = check_windows(windows, owner, window=net.window if net.kind == "usad" else None)
    out = np.empty_like(x_all)
    alpha = eps / steps
    module = net.module
    module.eval()
    flags = [p.requires_grad for p in module.parameters()]
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            module.requires_grad_(False)
            for i in range(0, x_all.shape[0], batch_size):
                x = torch.from_numpy(x_all[i : i + batch_size])
                lo = (x - eps).clamp(0.0, 1.0)
                hi = (x + eps).clamp(0.0, 1.0)
                x_adv = x.clone()
                g = torch.zeros_like(x)
                for _ in range(steps):
                    x_adv.requires_grad_(True)
                    loss = net.window_loss(x_adv).sum()
                    (grad,) = torch.autograd.grad(loss, x_adv)
                    l1 = grad.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
                    g = decay * g + grad / l1
                    x_adv = torch.minimum(torch.maximum(x_adv.detach() + alpha * g.sign(), lo), hi)
                out[i : i + x.shape[0]] = x_adv.numpy()
        finally:
            for p, flag in zip(module.parameters(), flags, strict=True):
                p.requires_grad_(flag)
            torch.set_num_threads(before)
    return out


def augment_windows(
    kind: str,
    windows: npt.ArrayLike,
    cfg: TrainConfig,
    *,
    eps: float = 0.01,
    method: str = "mi-fgsm",
) -> npt.NDArray[np.float32]:
    """One augmented copy of each window :func:`~gridlens.anomaly.nets.train` would train on.

    Only the training rows of :func:`~gridlens.anomaly.nets.holdout_split` are augmented,
    in their order: a perturbed copy of an early-stopping window in the training share
    would leak it.  Pass the result to ``nets.train(kind, windows, cfg, extra_windows=...)``.

    Parameters
    ----------
    kind : str
        The net to train, one of :data:`gridlens.anomaly.nets.NET_KINDS`.
    windows : array_like, shape (n, T)
        All windows, min-max normalised to [0, 1]. [-]
    cfg : TrainConfig
        The configuration of the training that will use the result (its seed fixes the
        split, the first net and the random signs).
    eps : float
        L-infinity budget, in (0, 1] (ignored by ``"copy"``). [-]
    method : {"mi-fgsm", "random", "copy"}
        ``"mi-fgsm"``: train a net on ``windows`` and attack it (:func:`mi_fgsm`), the
        seed's hard normal windows; ``"random"``: every value moved by ``+-eps`` with a
        random sign (same budget, no direction), then clipped to [0, 1]; ``"copy"``: the
        windows unchanged.  The two controls tell the attack's direction apart from the
        extra training.

    Returns
    -------
    numpy.ndarray of float32, shape (n_train, T)
        Row ``i`` augments ``windows[holdout_split(n, cfg)[1][i]]``. [-]
    """
    owner = "augment_windows"
    check_param(method in AUGMENTS, "method", owner, f"one of {AUGMENTS}", method)
    check_param(math.isfinite(eps) and 0.0 < eps <= 1.0, "eps", owner, "a float in (0, 1]", eps)
    x = check_windows(windows, owner, min_rows=2)
    own = x[nets.holdout_split(x.shape[0], cfg)[1]]
    if method == "copy":
        return own.copy()
    if method == "random":
        sign = np.random.default_rng(cfg.seed).choice(np.array([-1.0, 1.0], np.float32), own.shape)
        return np.clip(own + eps * sign, 0.0, 1.0).astype(np.float32)
    first = nets.train(kind, x, cfg)
    return mi_fgsm(first, own, eps=eps, seed=cfg.seed, threads=cfg.threads)
