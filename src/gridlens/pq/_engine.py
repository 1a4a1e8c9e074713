"""Window integrals behind :func:`gridlens.pq.analyze`: the vectorised inner engine.

A window W = [a, b] is a whole number N of tracked fundamental cycles. Its limits are two
tracked crossings, given as fractional sample indices. The engine uses the window's mean
quarter period, D = (b − a)/(4N) samples, and integrates the products that every
power-quality quantity is built from:

==========================================  ==================================================
integrand                                   interval
==========================================  ==================================================
v, i, v², i², v·i                           W
v·cos θ, v·sin θ, i·cos θ, i·sin θ          W, and the window delayed by a quarter period,
                                            W − D = [a − D, b − D]
v(t)·i(t − D)                               W
==========================================  ==================================================

The caller divides by the window length b − a, which W − D shares.

Method
------
**Rotation angle.** θ advances by 2π per tracked cycle and is linear inside each cycle:
θ_k = 2π(k − c_j)/T_j for the cycle [c_j, c_{j+1}) that holds sample k. It is formed as
ω_j·m + φ_j, where m is the sample's integer index inside its cycle (exact in float32),
ω_j = 2π/T_j and φ_j is the fractional start. So θ stays in [0, 2π) and float32 resolves it
to about 5e-7 rad. Single-precision cos/sin is about 30x faster than double here.

**The DQ method needs no β signals.** In the DQ method x_β(t) = x(t − D), and
θ(t) = θ(t − D) + π/2. Substituting t' = t − D gives::

    x_β(t)·sin θ(t) =  x(t')·cos θ(t')
    x_β(t)·cos θ(t) = −x(t')·sin θ(t')

So the window means of x_d = x_α·cos θ + x_β·sin θ and of x_q = −x_α·sin θ + x_β·cos θ are
the α products averaged over W plus the same products averaged over W − D. This is the DQ
transform of the seed paper, evaluated without building an interpolated β signal.

**Time-delay method.** It needs the product v(t)·i(t − D) itself. The delayed current is
4-point Lagrange interpolation between the samples at the integer lags s − 2 … s + 1, where
s = ⌈D⌉. Its weights are constant over the window, so ∫ v·i_β = Σ_m w_m(s − D)·∫ v[k]·i[k − L_m].
The engine integrates the few integer-lag products (contiguous slices, no gathers) and
weights the per-window results.

**Fractional limits.** Every integral is the exact integral of the piecewise-linear
interpolant of the samples between fractional instants. The window limits a, b, a − D, b − D
of a batch are sorted into one chain of points. Segment integrals between consecutive points
(one ``reduceat`` plus two edge terms, :func:`_segment_integrals`) are cumulated into the
running integral F at every point, and each window's integral is a difference of two
F values.

**Precision and memory.** The DQ and lag products are formed and summed in float32, and the
sum for each window goes into float64 straight away. Pairwise summation keeps that rounding
near 1e-7 relative, far below what PF can resolve. v, i, v², i² and v·i stay in float64,
because THD is the difference V² − V1² of two close numbers. Batches of whole windows, about
2^16 samples each, reuse one workspace. It stays in cache and is allocated once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["BATCH_SAMPLES", "WindowIntegrals", "window_integrals"]

Float = NDArray[np.float64]
Float32 = NDArray[np.float32]
Index = NDArray[np.intp]

BATCH_SAMPLES = 1 << 16
"""Samples per batch of whole windows. This is big enough to amortise the numpy call overhead
and small enough for the workspace to stay in the CPU cache."""

_N_DQ = 4  # rows of the float32 block: v·cos θ, v·sin θ, i·cos θ, i·sin θ, then the lags
_N_PLAIN = 5  # rows of the float64 block: v, i, v², i², v·i


@dataclass(frozen=True)
class WindowIntegrals:
    """Integrals over each window, in sample units (divide by the window length for means).

    Attributes
    ----------
    delay : ndarray, shape (n,)
        The window's quarter period D in samples: its length / (4 · cycles).
    plain : ndarray, shape (5, n)
        ∫ v, ∫ i, ∫ v², ∫ i², ∫ v·i over W.
    dq : ndarray, shape (4, n)
        ∫ v·cos θ, ∫ v·sin θ, ∫ i·cos θ, ∫ i·sin θ over W.
    dq_delayed : ndarray, shape (4, n)
        The same over W − D.
    time_delay : ndarray, shape (n,)
        ∫ v(t)·i(t − D) over W.
    """

    delay: Float
    plain: Float
    dq: Float
    dq_delayed: Float
    time_delay: Float


def _lagrange_weights(r: Float) -> tuple[Float, Float, Float, Float]:
    """4-point Lagrange weights for x[j-1], x[j], x[j+1], x[j+2] at fractional offset r."""
    rm1, rm2, rp1 = r - 1.0, r - 2.0, r + 1.0
    return (
        -r * rm1 * rm2 / 6.0,
        rp1 * rm1 * rm2 / 2.0,
        -rp1 * r * rm2 / 2.0,
        rp1 * r * rm1 / 6.0,
    )


def _segment_integrals(g: Float | Float32, x: Float) -> Float:
    """Integrals of each row of ``g`` between consecutive points ``x[0] <= x[1] <= ...``.

    ``g`` must be C-contiguous. This is the exact integral of the piecewise-linear interpolant
    of the samples. ``x`` is in sample units and may be fractional. Let S[j] = Σ_{m<=j} g[m].
    The trapezoid integral from sample 0 up to x (with j = floor x and r = x − j) is
    F(x) = S[j] + e(x) − g[0]/2, where e(x) = −g[j]/2 + r·g[j] + r²/2·(g[j+1] − g[j]). Then
    F(x_{s+1}) − F(x_s) = Σ_{m=floor(x_s)+1}^{floor(x_{s+1})} g[m] + e(x_{s+1}) − e(x_s).
    That is one ``reduceat`` plus two edge terms per segment.
    """
    rows, n = g.shape
    j = np.minimum(np.floor(x).astype(np.intp), n - 2)
    r = x - j
    # g[:, j] and g[:, j + 1] by one flat gather each (2-D fancy indexing is much slower)
    flat = (np.arange(rows)[:, None] * n + j).ravel()
    gj = np.take(g.reshape(-1), flat).reshape(rows, -1).astype(np.float64)
    gj1 = np.take(g.reshape(-1), flat + 1).reshape(rows, -1).astype(np.float64)
    edge = (r - 0.5) * gj + 0.5 * r * r * (gj1 - gj)
    # a segment with no sample in (x_s, x_{s+1}] is empty: reduceat would return one sample
    starts = np.minimum(j[:-1] + 1, j[-1])
    inner = np.add.reduceat(g[:, : j[-1] + 1], starts, axis=1)
    inner[:, j[:-1] >= j[1:]] = 0.0
    out: Float = inner + edge[:, 1:] - edge[:, :-1]
    return out


@dataclass(frozen=True)
class _Workspace:
    """Scratch arrays, allocated once per call and reused by every batch."""

    index: Float32 | Float  # 0, 1, 2, ... (float32 while that is exact: below 2^24)
    theta: Float32
    cos: Float32
    sin: Float32
    v32: Float32
    i32: Float32  # the current, from the largest lag before the batch on
    g32: Float32  # flat: the DQ products, then the lag products (one batch's rows, contiguous)
    g64: Float  # flat: v, i, v², i², v·i

    @classmethod
    def allocate(cls, n: int, n_lag: int, max_lag: int) -> _Workspace:
        f4 = np.float32
        index: Float32 | Float = (
            np.arange(n, dtype=f4) if n < 1 << 24 else np.arange(n, dtype=np.float64)
        )
        return cls(
            index=index,
            theta=np.empty(n, f4),
            cos=np.empty(n, f4),
            sin=np.empty(n, f4),
            v32=np.empty(n, f4),
            i32=np.empty(n + max_lag, f4),
            g32=np.empty((_N_DQ + n_lag) * n, f4),
            g64=np.empty(_N_PLAIN * n),
        )


def window_integrals(v: Float, i: Float, c: Float, edge_idx: Index) -> WindowIntegrals:
    """Integrate consecutive windows of whole tracked cycles (see the module docstring).

    Parameters
    ----------
    v, i : ndarray
        Voltage [V] and current [A] samples.
    c : ndarray
        Tracked crossings: fractional sample indices, increasing, at least two.
    edge_idx : ndarray of int
        Indices into ``c`` of the window limits, increasing. Window w is
        ``[c[edge_idx[w]], c[edge_idx[w + 1]]]``. The caller guarantees that the first window
        minus its quarter period starts at sample 3 or later, and that the last limit is
        ``len(v) - 3`` or earlier.
    """
    edges = c[edge_idx]
    delay = np.diff(edges) / (4.0 * np.diff(edge_idx))
    shift = np.ceil(delay).astype(np.intp)  # D = s − r, s integer, 0 <= r < 1
    n_win = len(delay)
    per_batch = max(1, int(BATCH_SAMPLES // np.median(np.diff(edges))))
    b_start = np.arange(0, n_win, per_batch)
    b_end = np.minimum(b_start + per_batch, n_win)
    lo = np.floor(edges[b_start] - delay[b_start]).astype(np.intp)
    hi = np.floor(edges[b_end]).astype(np.intp) + 1
    lag_lo = np.minimum.reduceat(shift, b_start) - 2
    lag_hi = np.maximum.reduceat(shift, b_start) + 1
    ws = _Workspace.allocate(
        int(np.max(hi - lo)) + 1, int(np.max(lag_hi - lag_lo)) + 1, int(np.max(lag_hi))
    )

    plain = np.empty((_N_PLAIN, n_win))
    dq = np.empty((_N_DQ, n_win))
    dq_delayed = np.empty((_N_DQ, n_win))
    time_delay = np.empty(n_win)
    for b in range(len(b_start)):
        w = slice(int(b_start[b]), int(b_end[b]))
        _batch(
            v, i, c, edges[w.start : w.stop + 1], delay[w], (int(lag_lo[b]), int(lag_hi[b])),
            ws, (plain[:, w], dq[:, w], dq_delayed[:, w], time_delay[w]),
        )  # fmt: skip
    return WindowIntegrals(
        delay=delay, plain=plain, dq=dq, dq_delayed=dq_delayed, time_delay=time_delay
    )


def _batch(
    v: Float,
    i: Float,
    c: Float,
    edges: Float,
    delay: Float,
    lags: tuple[int, int],
    ws: _Workspace,
    out: tuple[Float, Float, Float, Float],
) -> None:
    """Integrals over the windows [edges[w], edges[w + 1]] of one batch, into ``out``."""
    nw = len(delay)
    # the running integral F is taken at every a, a − D, b − D (and the final b), in order
    pts = np.concatenate([edges, edges[:-1] - delay, edges[1:] - delay])
    order = np.argsort(pts, kind="stable")
    x = pts[order]
    lo, hi = int(np.floor(x[0])), int(np.floor(x[-1])) + 1
    n = hi - lo + 1
    x -= lo

    # θ = ω_j·m + φ_j; the samples before the first / after the last crossing continue the
    # angle of the nearest cycle
    ja = max(int(np.searchsorted(c, lo, side="right")) - 1, 0)
    jz = min(int(np.searchsorted(c, hi, side="right")) - 1, len(c) - 2)
    first = np.ceil(c[ja : jz + 2]).astype(np.intp)
    first[0], first[-1] = lo, hi + 1
    counts = np.diff(first)
    omega = 2.0 * np.pi / (c[ja + 1 : jz + 2] - c[ja : jz + 1])
    phi = omega * (first[:-1] - c[ja : jz + 1])
    theta = ws.theta[:n]
    start = np.repeat((first[:-1] - lo).astype(ws.index.dtype), counts)
    np.subtract(ws.index[:n], start, out=theta, casting="same_kind")  # m: exact integers
    theta *= np.repeat(omega.astype(np.float32), counts)
    theta += np.repeat(phi.astype(np.float32), counts)
    cos_t, sin_t = np.cos(theta, out=ws.cos[:n]), np.sin(theta, out=ws.sin[:n])

    lag_lo, lag_hi = lags
    n_lag = lag_hi - lag_lo + 1
    v32, i32 = ws.v32[:n], ws.i32[: n + lag_hi]
    np.copyto(v32, v[lo : hi + 1], casting="same_kind")
    # the lagged current starts lag_hi samples before the batch. Near the record start that
    # can precede sample 0, but only W − D of the first window reads those samples, and the
    # time delay integrates over W alone, so zeros will do.
    pad = max(0, lag_hi - lo)
    i32[:pad] = 0.0
    np.copyto(i32[pad:], i[lo - lag_hi + pad : hi + 1], casting="same_kind")
    i32_now = i32[lag_hi:]
    g32 = ws.g32[: (_N_DQ + n_lag) * n].reshape(_N_DQ + n_lag, n)
    np.multiply(v32, cos_t, out=g32[0])
    np.multiply(v32, sin_t, out=g32[1])
    np.multiply(i32_now, cos_t, out=g32[2])
    np.multiply(i32_now, sin_t, out=g32[3])
    for m in range(n_lag):  # v[k]·i[k − L], L = lag_lo + m
        back = lag_hi - (lag_lo + m)
        np.multiply(v32, i32[back : back + n], out=g32[_N_DQ + m])

    vs, is_ = v[lo : hi + 1], i[lo : hi + 1]
    g64 = ws.g64[: _N_PLAIN * n].reshape(_N_PLAIN, n)
    g64[0], g64[1] = vs, is_
    np.multiply(vs, vs, out=g64[2])
    np.multiply(is_, is_, out=g64[3])
    np.multiply(vs, is_, out=g64[4])

    # running integral at every point, back in the order of ``pts``
    f_sorted = np.zeros((_N_DQ + n_lag + _N_PLAIN, len(x)))
    np.cumsum(_segment_integrals(g32, x), axis=1, out=f_sorted[: _N_DQ + n_lag, 1:])
    np.cumsum(_segment_integrals(g64, x), axis=1, out=f_sorted[_N_DQ + n_lag :, 1:])
    f = np.empty_like(f_sorted)
    f[:, order] = f_sorted
    at_edge, at_a_delayed, at_b_delayed = (
        f[:, : nw + 1],
        f[:, nw + 1 : 2 * nw + 1],
        f[:, 2 * nw + 1 :],
    )
    over_w = at_edge[:, 1:] - at_edge[:, :-1]
    plain, dq, dq_delayed, time_delay = out
    dq[:] = over_w[:_N_DQ]
    dq_delayed[:] = at_b_delayed[:_N_DQ] - at_a_delayed[:_N_DQ]
    plain[:] = over_w[_N_DQ + n_lag :]

    # time delay: D = s − r; i(k − D) = Σ_m w_m(r)·i[k − s + m], m = −1..2, i.e. lag s − m
    s = np.ceil(delay).astype(np.intp)
    weights = np.zeros((n_lag, nw))
    cols = np.arange(nw)
    for m, wm in zip((-1, 0, 1, 2), _lagrange_weights(s - delay), strict=True):
        weights[s - m - lag_lo, cols] = wm
    time_delay[:] = np.einsum("lw,lw->w", weights, over_w[_N_DQ : _N_DQ + n_lag])
