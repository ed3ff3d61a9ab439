"""Tests of clipq_helpers.calibrate: clip-value search and observers."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import clipq_helpers.calibrate as cal
from clipq_helpers.calibrate import (
    EntropyObserver,
    MinMaxObserver,
    MSEObserver,
    PercentileObserver,
    clip_to_scale,
    kl_threshold,
    make_observer,
    mse_best_clip,
    percentile_absmax,
)
from clipq_helpers.quantize import asymmetric_params, dequantize, quantize_symmetric

FLOATS = st.floats(
    min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32,
    allow_subnormal=False,
)  # fmt: skip


def vectors(max_size=64):
    return arrays(np.float32, st.integers(1, max_size), elements=FLOATS).map(torch.from_numpy)


def t(values):
    return torch.tensor(values, dtype=torch.float32)


def sym_mse(x, clip, bits):
    """Independent MSE of symmetric quantization clipped at ``clip`` (float64)."""
    qmax = 2 ** (bits - 1) - 1
    s = clip / qmax
    xd = x.double()
    x_hat = torch.round(xd / s).clamp(-qmax, qmax) * s
    return float(((xd - x_hat) ** 2).mean())


# ----------------------------------------------------------------------------- percentile


def test_percentile_hand_case():
    x = t([-4.0, 1.0, 2.0, 3.0])
    # |x| sorted [1, 2, 3, 4]; rank 0.5 * 3 = 1.5 -> 2 + 0.5 * (3 - 2) = 2.5
    assert float(percentile_absmax(x, 50)) == 2.5
    # rank 0.9 * 3 = 2.7 -> 3 + 0.7 * (4 - 3) = 3.7 (signed values would give 2.7)
    assert float(percentile_absmax(x, 90)) == pytest.approx(3.7)
    assert float(percentile_absmax(x, 100)) == 4.0
    assert float(percentile_absmax(x, 0)) == 1.0
    assert percentile_absmax(x, 50).dtype == torch.float32


def test_percentile_large_tensor_fallback_matches_quantile(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10_001, generator=gen)
    expected = [float(percentile_absmax(x, p)) for p in (0, 12.5, 50, 99.9, 100)]
    monkeypatch.setattr(cal, "_QUANTILE_MAX_NUMEL", 100)
    got = [float(percentile_absmax(x, p)) for p in (0, 12.5, 50, 99.9, 100)]
    assert got == pytest.approx(expected, rel=1e-6)


@given(vectors(), st.floats(0, 100), st.floats(0, 100))
def test_percentile_properties(x, p1, p2):
    lo, hi = sorted((p1, p2))
    a, b = float(percentile_absmax(x, lo)), float(percentile_absmax(x, hi))
    absmax = float(x.abs().max())
    assert float(x.abs().min()) <= a <= b * (1 + 1e-6) + 1e-12
    assert b <= absmax * (1 + 1e-6)
    assert float(percentile_absmax(x, 100)) == absmax


def test_percentile_bad_pct():
    with pytest.raises(ValueError, match=r"pct must be in \[0.0, 100.0\]"):
        percentile_absmax(t([1.0]), 101)
    with pytest.raises(ValueError, match="pct must be in"):
        percentile_absmax(t([1.0]), -1)


# ----------------------------------------------------------------------------- mse


def test_mse_best_clip_hand_case():
    # ten 1.0s and one 10.0, 4 bits (qmax 7), grid c = 1..10. SSE per c (s = c/7):
    #   c=10: each 1 -> round(0.7)=1 -> 10/7, err 3/7: 10*9/49 = 1.837; 10 exact   -> 1.837
    #   c=9:  each 1 -> round(0.78)=1 -> 9/7, err 2/7: 10*4/49 = 0.816; 10 -> 9, err 1 -> 1.816
    #   c=8:  each 1 -> 8/7, err 1/7 -> 0.204; 10 -> 8, err 2 -> 4.204;  c=7: 10 -> 7 -> 9
    x = t([1.0] * 10 + [10.0])
    assert float(mse_best_clip(x, bits=4, n_grid=10)) == 9.0
    # no clipping is better at 8 bits (the outlier error dominates)
    assert float(mse_best_clip(x, bits=8, n_grid=10)) == 10.0


def test_mse_best_clip_smallest_k_on_ties():
    # x = [1, 2], 2 bits (qmax 1), grid c in {1, 2}:
    #   c=1: 1 exact, 2 -> clamp 1, err 1 -> SSE 1;  c=2: 1/2 = 0.5 -> 0, err 1; 2 exact -> SSE 1
    assert float(mse_best_clip(t([1.0, 2.0]), bits=2, n_grid=2)) == 1.0


def test_mse_best_clip_all_zero_and_to_scale():
    c = mse_best_clip(torch.zeros(4))
    assert float(c) == 0.0
    assert float(clip_to_scale(c)) == 1.0
    assert float(clip_to_scale(2.54)) == pytest.approx(0.02)


@given(vectors(), st.integers(2, 8), st.integers(1, 50))
def test_mse_best_clip_properties(x, bits, n_grid):
    c = float(mse_best_clip(x, bits, n_grid))
    absmax = float(x.abs().max())
    if absmax == 0:
        assert c == 0.0
        return
    assert 0 < c <= absmax
    k = round(c / absmax * n_grid)
    assert c == pytest.approx(absmax * k / n_grid, rel=1e-6)  # c lies on the grid
    errs = [sym_mse(x, absmax * j / n_grid, bits) for j in range(1, n_grid + 1)]
    best = min(errs)
    assert sym_mse(x, c, bits) <= errs[-1] * (1 + 1e-9) + 1e-30  # no worse than max|x|
    # the returned k is the first within float noise of the minimum
    first = next(j for j, e in enumerate(errs, 1) if e <= best * (1 + 1e-6) + 1e-30)
    assert k <= first or errs[k - 1] <= best * (1 + 1e-6) + 1e-30


def test_mse_chunking_matches_direct():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(100_000, generator=gen) * torch.rand(100_000, generator=gen) * 3
    absmax = x.abs().max()
    clips = absmax * torch.arange(1, 101) / 100
    sse = cal._sse_per_clip(x, clips, 127)  # 3 chunks of 41943 rows
    s = clips / 127
    direct = ((x[:, None] - torch.round(x[:, None] / s).clamp(-127, 127) * s) ** 2).double().sum(0)
    assert torch.allclose(sse, direct, rtol=1e-9)


def test_mse_best_clip_bad_input():
    with pytest.raises(ValueError, match="bits must be between 2 and 16"):
        mse_best_clip(t([1.0]), bits=1)
    with pytest.raises(ValueError, match="n_grid must be a positive int"):
        mse_best_clip(t([1.0]), n_grid=0)
    with pytest.raises(ValueError, match="x contains NaN/Inf"):
        mse_best_clip(t([1.0, float("nan")]))


# ----------------------------------------------------------------------------- KL


def _smooth_ref(p, eps=1e-4):
    zeros = p == 0
    n_zero, n_nonzero = zeros.sum(), (~zeros).sum()
    if n_nonzero == 0:
        return None
    out = p.astype(np.float64).copy()
    out[zeros] += eps
    out[~zeros] -= eps * n_zero / n_nonzero
    return None if (out <= 0).any() else out


def kl_reference(hist, edges, bits):
    """Literal loop transcription of DESIGN.md's algorithm; returns (threshold, kl list)."""
    nq = 2 ** (bits - 1)
    h = np.asarray(hist, dtype=np.float64)
    kls = []
    for i in range(nq, len(h) + 1):
        p = h[:i].copy()
        p[i - 1] += h[i:].sum()
        q = np.zeros(i)
        pos = 0
        for chunk in np.array_split(h[:i], nq):
            idx = np.arange(pos, pos + len(chunk))
            nz = idx[p[idx] != 0]
            if len(nz):
                q[nz] = chunk.sum() / len(nz)
            pos += len(chunk)
        ps, qs = _smooth_ref(p), _smooth_ref(q)
        if ps is None or qs is None:
            kls.append(math.inf)
            continue
        ps, qs = ps / ps.sum(), qs / qs.sum()
        kls.append(float(np.sum(ps * np.log(ps / qs))))
    best = int(np.argmin(kls))
    return float(edges[nq + best]), kls


def test_kl_hand_case_clips_outlier():
    # bits=2 -> 2 quantized bins; hist [6, 4, 0, 0, 0, 0, 0, 1], edges 0..8.
    #  i=2: P = [6, 4+1] / 11, Q = [6, 4] / 10 -> KL = 6/11 ln(10/11) + 5/11 ln(50/44) = 0.00612
    #  i=3..7: the tail lands in an empty chunk: Q there is only eps -> KL > 0.7
    #  i=8: Q = [5, 5, 0, 0, 0, 0, 0, 1] (chunk mass 10 spread over 2 nonzero bins)
    #       -> KL ~ 6/11 ln(6/5) + 4/11 ln(4/5) = 0.0183
    # smallest KL at i=2 -> bin_edges[2] = 2.0
    hist = t([6, 4, 0, 0, 0, 0, 0, 1])
    edges = torch.arange(9, dtype=torch.float32)
    assert float(kl_threshold(hist, edges, bits=2)) == 2.0
    _, kls = kl_reference(hist.numpy(), edges.numpy(), 2)
    assert kls[0] == pytest.approx(6 / 11 * math.log(10 / 11) + 5 / 11 * math.log(50 / 44))
    assert kls[-1] == pytest.approx(6 / 11 * math.log(6 / 5) + 4 / 11 * math.log(4 / 5), rel=1e-3)


def test_kl_no_clipping_when_q_equals_p():
    # hist [4, 0, 0, 1], bits=2: at i=4 the chunks [4,0] and [0,1] give Q == P -> KL = 0
    # (at i=2: P = [4, 1], Q = [4, 0] -> KL = 0.8 ln 0.8 + 0.2 ln 8000 = 1.62)
    edges = t([0.0, 1.0, 2.0, 3.0, 4.0])
    assert float(kl_threshold(t([4, 0, 0, 1]), edges, bits=2)) == 4.0
    assert float(kl_threshold(torch.tensor([4, 0, 0, 1]), edges, bits=2)) == 4.0  # int counts


def test_kl_single_candidate_at_128_bins():
    # 128 bins at 8 bits leave one candidate (i = 128): the full range, as min-max
    hist = torch.rand(128, generator=torch.Generator().manual_seed(0)) * 10
    edges = torch.linspace(0, 5, 129)
    assert float(kl_threshold(hist, edges)) == 5.0


def test_kl_uses_p_nonzero_mask():
    # bits=2, hist [4, 0, 2, 1, 2, 0, 2]. Candidate i=6: P = [4, 0, 2, 1, 2, 0+2]; chunks of 3:
    #   chunk 1 (bins 3-5) holds hist mass 1+2+0 = 3; P is nonzero on all three bins
    #   -> Q = [3, 0, 3, 1, 1, 1] (P-mask, as ORT/MXNet); a hist[:i]-mask would give
    #   Q[3:] = [1.5, 1.5, 0], leaving only eps under P's tail bin, and pick 7.0 instead.
    hist, edges = t([4, 0, 2, 1, 2, 0, 2]), torch.arange(8, dtype=torch.float32)
    expected, _ = kl_reference(hist.numpy(), edges.numpy(), 2)
    assert expected == 6.0
    assert float(kl_threshold(hist, edges, bits=2)) == 6.0


@given(st.integers(2, 5), st.data())
def test_kl_matches_reference_and_range(bits, data):
    nq = 2 ** (bits - 1)
    n = data.draw(st.integers(nq, nq + 40))
    counts = data.draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    if sum(counts) == 0:
        counts[0] = 1
    widths = data.draw(st.lists(st.floats(0.1, 2.0), min_size=n, max_size=n))
    edges = torch.tensor(np.concatenate([[0.0], np.cumsum(widths)]), dtype=torch.float32)
    hist = torch.tensor(counts, dtype=torch.float32)
    thr = float(kl_threshold(hist, edges, bits))
    candidates = edges[nq:].tolist()
    assert thr in candidates  # one of bin_edges[2^(b-1)] .. bin_edges[len(hist)]
    assert float(edges[nq]) <= thr <= float(edges[-1])
    _, kls = kl_reference(counts, edges.numpy(), bits)
    best = min(kls)
    got = kls[candidates.index(thr)]
    assert got <= best + 1e-9 * max(1.0, abs(best))  # ours is a minimiser
    if math.isfinite(best):  # and the first one (up to float noise)
        first = next(i for i, k in enumerate(kls) if k <= best + 1e-9 * max(1.0, abs(best)))
        assert candidates.index(thr) == first


def test_kl_on_gaussian_clips_tail():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=gen)
    hist, edges = torch.histogram(x.abs(), bins=2048)
    thr = float(kl_threshold(hist, edges))
    assert 2.0 < thr < float(x.abs().max())


def test_kl_bad_input():
    edges = torch.linspace(0, 1, 101)
    with pytest.raises(ValueError, match="needs at least 2\\^\\(bits-1\\) = 128 bins"):
        kl_threshold(torch.ones(100), edges)
    with pytest.raises(ValueError, match=r"len\(bin_edges\) == len\(hist\) \+ 1"):
        kl_threshold(torch.ones(200), edges)
    with pytest.raises(ValueError, match="all zero"):
        kl_threshold(torch.zeros(100), edges, bits=4)
    with pytest.raises(ValueError, match=">= 0"):
        kl_threshold(-torch.ones(100), edges, bits=4)
    with pytest.raises(ValueError, match="strictly increasing"):
        kl_threshold(torch.ones(100), edges.flip(0), bits=4)
    with pytest.raises(ValueError, match="hist contains NaN/Inf"):
        kl_threshold(torch.full((100,), float("nan")), edges, bits=4)
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        kl_threshold([1.0] * 100, edges, bits=4)
    with pytest.raises(TypeError, match="bin_edges must be a floating-point tensor"):
        kl_threshold(torch.ones(100), torch.arange(101), bits=4)


# ----------------------------------------------------------------------------- observers


def batches(seed=0, n=5, size=(4, 50), grow=False):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=gen) * ((i + 1) if grow else 1) for i in range(n)]


def test_minmax_observer_over_batches():
    bs = batches()
    obs = MinMaxObserver()
    for b in bs:
        obs.update(b)
    allx = torch.cat([b.flatten() for b in bs])
    assert float(obs.clip_value()) == float(allx.abs().max())
    assert float(obs.scale(8)) == pytest.approx(float(allx.abs().max()) / 127)
    s, zp = obs.asymmetric_params(8)
    s_ref, zp_ref = asymmetric_params(allx)
    assert float(s) == float(s_ref) and zp == zp_ref
    assert obs.count == allx.numel()


@pytest.mark.parametrize(
    "obs, ref",
    [
        (PercentileObserver(99.0), lambda a, bits: percentile_absmax(a, 99.0)),
        (MSEObserver(n_grid=50), lambda a, bits: mse_best_clip(a, bits, 50)),
        (
            EntropyObserver(num_bins=512),
            lambda a, bits: kl_threshold(
                *torch.histogram(a.abs(), bins=512, range=(0.0, float(a.abs().max()))), bits
            ),
        ),
    ],
)
def test_exact_observers_equal_contract_functions(obs, ref):
    bs = batches(grow=True)
    for b in bs:
        obs.update(b)
    allx = torch.cat([b.flatten() for b in bs])
    assert obs.exact
    for bits in (4, 8):
        assert float(obs.clip_value(bits)) == pytest.approx(float(ref(allx, bits)), rel=1e-6)


@pytest.mark.parametrize("kind", ["percentile", "mse", "entropy"])
def test_histogram_mode_close_to_exact(kind):
    bs = batches(seed=3, n=8, size=(50, 100), grow=True)  # growing max forces re-binning
    make = {
        "percentile": lambda m: PercentileObserver(99.9, num_bins=2048, max_exact=m),
        "mse": lambda m: MSEObserver(num_bins=2048, max_exact=m),
        "entropy": lambda m: EntropyObserver(num_bins=2048, max_exact=m),
    }[kind]
    exact, hist = make(10**9), make(4000)
    for b in bs:
        exact.update(b)
        hist.update(b)
    assert exact.exact and not hist.exact
    h, edges = hist.histogram()
    assert float(h.sum()) == hist.count  # re-binning keeps every count
    assert float(edges[-1]) >= hist.absmax
    a, b = float(exact.clip_value()), float(hist.clip_value())
    assert b <= hist.absmax
    tol = {"percentile": 0.01, "mse": 0.05, "entropy": 0.1}[kind]
    assert b == pytest.approx(a, rel=tol)


def test_histogram_rebinning_matches_direct_histogram():
    obs = PercentileObserver(num_bins=64, max_exact=1)
    vals = [t([0.0, 0.0]), t([0.3, 1.0]), t([0.05, 3.9, 2.2]), t([7.5, 0.6])]
    for v in vals:
        obs.update(v)
    h, edges = obs.histogram()
    # range doubled 1 -> 2 -> 4 -> 8; direct histogram of everything over [0, 8]
    assert float(edges[-1]) == 8.0
    direct = torch.histc(torch.cat(vals), bins=64, min=0, max=8).double()
    assert float(h.sum()) == float(direct.sum()) == 9
    # merging is exact except for a value sitting on a former top edge (1.0 was in the closed
    # last bin of [0, 1]; after merging it stays just below 1.0): at most one bin off
    assert int((h - direct).abs().sum()) == 2
    assert float((h.cumsum(0) - direct.cumsum(0)).abs().max()) <= 1


def test_observer_all_zero_gives_scale_one():
    for name in ("minmax", "percentile", "mse", "entropy"):
        obs = make_observer(name)
        obs.update(torch.zeros(10))
        assert float(obs.clip_value()) == 0.0
        assert float(obs.scale()) == 1.0


def test_observer_errors_and_reset():
    obs = PercentileObserver()
    with pytest.raises(RuntimeError, match="has seen no data"):
        obs.clip_value()
    with pytest.raises(ValueError, match="x contains NaN/Inf"):
        obs.update(t([1.0, float("inf")]))
    with pytest.raises(TypeError, match="floating-point"):
        obs.update(torch.tensor([1, 2]))
    obs.update(t([1.0, 2.0]))
    obs.reset()
    assert obs.count == 0 and obs.pct == 99.99
    with pytest.raises(ValueError, match="num_bins must be even"):
        EntropyObserver(num_bins=129)


def test_make_observer():
    assert isinstance(make_observer("entropy"), EntropyObserver)
    proto = PercentileObserver(99.0)
    a, b = make_observer(proto), make_observer(proto)
    a.update(t([1.0]))
    assert a is not proto and b.count == 0 and proto.count == 0  # independent copies
    assert make_observer(lambda: MSEObserver(10)).n_grid == 10
    with pytest.raises(ValueError, match="unknown observer 'kl'"):
        make_observer("kl")
    with pytest.raises(TypeError, match="observer must be"):
        make_observer(3)


def test_observer_scale_quantizes_within_clip():
    obs = MSEObserver()
    x = batches()[0]
    obs.update(x)
    s = obs.scale(8)
    q = quantize_symmetric(x, s)
    err = (x - dequantize(q, s)).abs()
    inside = x.abs() <= float(obs.clip_value())
    assert bool((err[inside] <= float(s) * 0.5001).all())
