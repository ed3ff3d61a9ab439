"""The zoo: plausible wrong implementations (real mistakes) that the graders must reject with
a helpful message naming the case, and a second, independently written correct
implementation of every exercise that must pass (no false positives)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipq_helpers.grading import ExerciseFailed, check, ids

# =========================================================================== wrong (the zoo)
# Each entry: (exercise id, wrong function, fragments the message must contain).
# The first fragment is always part of the failing case's name.


def qs_floor(x, scale, bits=8):
    qmax = 2 ** (bits - 1) - 1
    return torch.floor(x / scale).clamp(-qmax, qmax).to(torch.int8)


def qs_trunc(x, scale, bits=8):
    qmax = 2 ** (bits - 1) - 1
    return (x / scale).clamp(-qmax, qmax).to(torch.int8)  # .to(int8) truncates towards 0


def qs_half_away(x, scale, bits=8):
    qmax = 2 ** (bits - 1) - 1
    r = x / scale
    return (torch.sign(r) * torch.floor(r.abs() + 0.5)).clamp(-qmax, qmax).to(torch.int8)


def qs_full_range(x, scale, bits=8):
    return torch.round(x / scale).clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1).to(torch.int8)


def qs_no_clamp(x, scale, bits=8):
    return torch.round(x / scale).to(torch.int8)


def qs_seed001(x, scale, bits=8):
    # seeds/001: int8_weight = fp32_weight * 2**(bits-1) + (2**bits-1)/2, cast to int8
    return (x * 2 ** (bits - 1) + (2**bits - 1) / 2).to(torch.int8)


def qs_in_place(x, scale, bits=8):
    qmax = 2 ** (bits - 1) - 1
    x /= scale
    return torch.round(x).clamp(-qmax, qmax).to(torch.int8)


def qs_hardcoded_int8_range(x, scale, bits=8):
    return torch.round(x / scale).clamp(-127, 127).to(torch.int8)


def ss_div_2b1(x, bits=8):
    m = x.abs().max()
    return m / 2 ** (bits - 1) if m > 0 else torch.tensor(1.0)


def ss_div_2b(x, bits=8):
    m = x.abs().max()
    return m / (2**bits - 1) if m > 0 else torch.tensor(1.0)


def ss_max_not_abs(x, bits=8):
    m = x.max()
    return m / (2 ** (bits - 1) - 1) if m != 0 else torch.tensor(1.0)


def ss_zero_scale(x, bits=8):
    return x.abs().max() / (2 ** (bits - 1) - 1)


def dq_uint8_wrap(q, scale, zero_point=0):
    return ((q - zero_point) * scale).to(torch.float32)


def ap_div_2b(x, bits=8):
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    if hi == lo:
        return 1.0, 0
    scale = (hi - lo) / 2**bits
    return scale, min(max(round(-lo / scale), 0), 2**bits - 1)


def ap_zp_wrong_sign(x, bits=8):
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    if hi == lo:
        return 1.0, 0
    scale = (hi - lo) / (2**bits - 1)
    return scale, min(max(round(lo / scale), 0), 2**bits - 1)


def ap_zp_not_rounded(x, bits=8):
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    if hi == lo:
        return 1.0, 0
    scale = (hi - lo) / (2**bits - 1)
    return scale, -lo / scale


def ap_range_without_zero_unclamped(x, bits=8):
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return 1.0, 0
    scale = (hi - lo) / (2**bits - 1)
    return scale, round(-lo / scale)


def ap_range_without_zero(x, bits=8):
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return 1.0, 0
    scale = (hi - lo) / (2**bits - 1)
    return scale, min(max(round(-lo / scale), 0), 2**bits - 1)


def qa_float_codes(x, scale, zero_point, bits=8):
    return (torch.round(x / scale) + zero_point).clamp(0, 2**bits - 1)


def qa_no_clamp(x, scale, zero_point, bits=8):
    return (torch.round(x / scale) + zero_point).to(torch.uint8)


def qa_signed_range(x, scale, zero_point, bits=8):
    return (torch.round(x / scale) + zero_point).clamp(-128, 127).to(torch.uint8)


def sqnr_ln(x, x_hat):
    return 10 * torch.log((x**2).sum() / ((x - x_hat) ** 2).sum())


def sqnr_amplitude(x, x_hat):
    return 10 * torch.log10(x.norm() / (x - x_hat).norm())


def sqnr_20log(x, x_hat):
    return 20 * torch.log10((x**2).sum() / ((x - x_hat) ** 2).sum())


def pc_ignores_axis(w, bits=8, axis=0):
    qmax = 2 ** (bits - 1) - 1
    amax = w.abs().reshape(w.shape[0], -1).amax(dim=1)  # always per row
    s = torch.where(amax == 0, torch.ones_like(amax), amax / qmax)
    q = torch.round(w / s.reshape(-1, *[1] * (w.dim() - 1))).clamp(-qmax, qmax).to(torch.int8)
    return q, s


def pc_reduces_along_axis(w, bits=8, axis=0):
    qmax = 2 ** (bits - 1) - 1
    amax = w.abs().amax(dim=axis)  # reduces the wrong way: one scale per *other* index
    s = torch.where(amax == 0, torch.ones_like(amax), amax / qmax)
    q = torch.round(w / s.unsqueeze(axis)).clamp(-qmax, qmax).to(torch.int8)
    return q, s


def pt_per_channel(x, bits=8):
    qmax = 2 ** (bits - 1) - 1
    amax = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)  # per channel: reduces over tokens
    s = torch.where(amax == 0, torch.ones_like(amax), amax / qmax)
    return torch.round(x / s).clamp(-qmax, qmax).to(torch.int8), s


def pt_no_keepdim(x, bits=8):
    qmax = 2 ** (bits - 1) - 1
    amax = x.abs().amax(dim=-1)  # (...,) cannot broadcast back; scales lose the last dim
    s = torch.where(amax == 0, torch.ones_like(amax), amax / qmax)
    return torch.round(x / s.unsqueeze(-1)).clamp(-qmax, qmax).to(torch.int8), s


def pt_per_tensor(x, bits=8):
    qmax = 2 ** (bits - 1) - 1
    s = (x.abs().max() / qmax).expand(*x.shape[:-1], 1).clone()  # one scale for all tokens
    return torch.round(x / s).clamp(-qmax, qmax).to(torch.int8), s


def pt_zero_row_nan(x, bits=8):
    qmax = 2 ** (bits - 1) - 1
    s = x.abs().amax(dim=-1, keepdim=True) / qmax  # an all-zero row gets scale 0
    return torch.round(x / s).clamp(-qmax, qmax).to(torch.int8), s


def logits_no_exp(img, txt, logit_scale):
    return logit_scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T


def logits_normalize_dim0(img, txt, logit_scale):
    return torch.as_tensor(logit_scale).exp() * F.normalize(img, dim=0) @ F.normalize(txt, dim=0).T


def loss_one_direction(logits):
    return F.cross_entropy(logits, torch.arange(logits.shape[0]))


def smooth_alpha_swapped(act, w, alpha=0.5):
    return (act ** (1 - alpha) / w.clamp(min=1e-5) ** alpha).clamp(min=1e-5)


def smooth_no_clamp(act, w, alpha=0.5):
    return act**alpha / w ** (1 - alpha)


def sln_rows(ln, linears, s):
    with torch.no_grad():
        ln.weight.div_(s)
        ln.bias.div_(s)
        for lin in linears:
            lin.weight.mul_(s[:, None])


def sln_no_grad_missing(ln, linears, s):
    ln.weight.div_(s)
    ln.bias.div_(s)
    for lin in linears:
        lin.weight.mul_(s)


def sln_first_linear_only(ln, linears, s):
    with torch.no_grad():
        ln.weight.div_(s)
        ln.bias.div_(s)
        linears[0].weight.mul_(s)


def int8_accumulate_int8(x_q, x_scale, w_q, w_scale, bias):
    y = (x_q @ w_q.T).to(torch.float32) * x_scale * w_scale  # int8 @ int8 stays int8
    return y if bias is None else y + bias


def int8_accumulate_int16(x_q, x_scale, w_q, w_scale, bias):
    acc = x_q.to(torch.int16) @ w_q.to(torch.int16).T
    y = acc.to(torch.float32) * x_scale * w_scale
    return y if bias is None else y + bias


def patchify_ppc(images, patch):
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (p, p, C) flatten order, as an image library would
    return x.reshape(b, -1, c * patch * patch)


def patchify_column_major(images, patch):
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 4, 2, 1, 3, 5)  # grid columns first
    return x.reshape(b, -1, c * patch * patch)


def _param_count(config, pooler=False, cls_row=True, conv_bias=False, logit_scale=True):
    t, v, proj = config["text_config"], config["vision_config"], config["projection_dim"]

    def layer(d, m):
        return 4 * (d * d + d) + 2 * d * m + m + d + 4 * d

    td, vd = t["hidden_size"], v["hidden_size"]
    text = (t["vocab_size"] + t["max_position_embeddings"] + t["type_vocab_size"] + 2) * td
    text += t["num_hidden_layers"] * layer(td, t["intermediate_size"])
    text += (td * td + td) if pooler else 0
    rows = (v["image_size"] // v["patch_size"]) ** 2 + (1 if cls_row else 0)
    vision = v["num_channels"] * v["patch_size"] ** 2 * vd + (vd if conv_bias else 0)
    vision += vd + rows * vd + 4 * vd + v["num_hidden_layers"] * layer(vd, v["intermediate_size"])
    return text + vision + (td + vd) * proj + (1 if logit_scale else 0)


def pcount_bert_pooler(config):
    return _param_count(config, pooler=True)  # BERT habit: the pooler dense layer


def pcount_no_cls_position(config):
    return _param_count(config, cls_row=False)  # one position row per patch only


def pcount_conv_bias(config):
    return _param_count(config, conv_bias=True)  # ChineseCLIP's patch Conv2d has no bias


def pcount_no_logit_scale(config):
    return _param_count(config, logit_scale=False)


def pct_of_x(x, pct):
    return torch.quantile(x.flatten(), pct / 100)


def pct_nearest_rank(x, pct):
    a = x.abs().flatten().sort().values
    return a[min(int(round(pct / 100 * (a.numel() - 1))), a.numel() - 1)]


def mse_no_clamp(x, bits=8, n_grid=100):
    qmax = 2 ** (bits - 1) - 1
    absmax = x.abs().max()
    if absmax == 0:
        return 0.0
    best, best_c = math.inf, None
    for k in range(1, n_grid + 1):
        c = absmax * k / n_grid
        s = c / qmax
        mse = float(((x - torch.round(x / s) * s) ** 2).mean())  # no clamp: nothing is clipped
        if mse < best:
            best, best_c = mse, c
    return best_c


def or_mean_median(x):
    m = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)
    return float(m.max() / torch.quantile(m, 0.5))  # averages the two middle values


def or_no_abs(x):
    m = x.reshape(-1, x.shape[-1]).amax(dim=0)  # signed max: negative outliers vanish
    return float(m.max() / m.median()) if float(m.median()) != 0 else 1.0


def or_dim0_only(x):
    m = x.abs().amax(dim=0) if x.dim() > 1 else x.abs()  # a 3-D x keeps the token dim
    if float(m.max()) == 0:
        return 1.0
    return float(m.max() / m.median())


def or_per_token(x):
    m = x.abs().reshape(-1, x.shape[-1]).amax(dim=-1)  # one max per token, not per channel
    return float(m.max() / m.median())


def or_max_over_mean(x):
    m = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)
    return float(m.max() / m.mean())


def or_nan_on_zeros(x):
    m = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)
    return m.max() / m.median()  # 0 / 0 = nan for all zeros


def lu_no_clamp(x, scale, bits=8):
    q = torch.round(x / scale).reshape(-1, x.shape[-1])
    return torch.tensor([torch.unique(q[:, c]).numel() for c in range(q.shape[1])])


def lu_floor(x, scale, bits=8):
    qmax = 2 ** (bits - 1) - 1
    q = torch.floor(x / scale + 0.5).clamp(-qmax, qmax).reshape(-1, x.shape[-1])
    return torch.tensor([torch.unique(q[:, c]).numel() for c in range(q.shape[1])])


def lu_full_range(x, scale, bits=8):
    q = torch.round(x / scale).clamp(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    q = q.reshape(-1, x.shape[-1])
    return torch.tensor([torch.unique(q[:, c]).numel() for c in range(q.shape[1])])


def lu_whole_tensor(x, scale, bits=8):
    qmax = 2 ** (bits - 1) - 1
    return torch.unique(torch.round(x / scale).clamp(-qmax, qmax)).numel()


def lu_per_row(x, scale, bits=8):
    qmax = 2 ** (bits - 1) - 1
    q = torch.round(x / scale).clamp(-qmax, qmax).reshape(-1, x.shape[-1])
    return torch.tensor([torch.unique(row).numel() for row in q])


def lu_hardcoded_127(x, scale, bits=8):
    q = torch.round(x / scale).clamp(-127, 127).reshape(-1, x.shape[-1])
    return torch.tensor([torch.unique(q[:, c]).numel() for c in range(q.shape[1])])


def kl_no_tail(hist, bin_edges, bits=8):
    h = hist.double().numpy()
    nq = 2 ** (bits - 1)
    best, best_i = math.inf, len(h)
    for i in range(nq, len(h) + 1):
        p = h[:i].copy()  # the clipped tail is dropped instead of folded into p[i-1]
        q = np.zeros(i)
        for idx in np.array_split(np.arange(i), nq):
            nz = idx[p[idx] != 0]
            if len(nz):
                q[nz] = h[idx].sum() / len(nz)
        if not p.any() or not q.any():
            continue
        p = p + np.where(p == 0, 1e-4, -1e-4 * (p == 0).sum() / (p != 0).sum())
        q = q + np.where(q == 0, 1e-4, -1e-4 * (q == 0).sum() / (q != 0).sum())
        if (p <= 0).any() or (q <= 0).any():
            continue
        p, q = p / p.sum(), q / q.sum()
        kl = float((p * np.log(p / q)).sum())
        if kl < best:
            best, best_i = kl, i
    return bin_edges[best_i]


ZOO = [
    # rounding
    ("ch03.quantize_symmetric", qs_floor, ["ties", "wrong codes", "round half to even"]),
    ("ch03.quantize_symmetric", qs_trunc, ["ties", "wrong codes", "trunc"]),
    (
        "ch03.quantize_symmetric",
        qs_half_away,
        [
            "ties",
            "expected: int8 (8,) [0, 2, 2, 4, 4, 0, -2, -2]",
            "got:      int8 (8,) [1, 2, 3, 4, 5, -1, -2, -3]",
        ],
    ),
    # ranges
    (
        "ch03.quantize_symmetric",
        qs_full_range,
        ["clamp: values beyond the range", "-128 is never used"],
    ),
    ("ch03.quantize_symmetric", qs_no_clamp, ["clamp: values beyond the range", "wraps around"]),
    (
        "ch03.quantize_symmetric",
        qs_hardcoded_int8_range,
        ["bits=4: codes in [-7, 7]", "using bits"],
    ),
    (
        "ch03.symmetric_scale",
        ss_div_2b1,
        ["small vector", "got / expected = 0.992188", "not by 2^(b-1)"],
    ),
    ("ch03.symmetric_scale", ss_div_2b, ["small vector", "got / expected = 0.498", "2^b - 1"]),
    ("ch03.symmetric_scale", ss_max_not_abs, ["negative-only values", "absolute"]),
    (
        "ch03.symmetric_scale",
        ss_zero_scale,
        ["all zeros -> scale 1.0", "expected: 1\n", "scale 1.0, not 0"],
    ),
    # the seeds/001 formula
    ("ch03.quantize_symmetric", qs_seed001, ["hand-checkable", "wrong codes"]),
    # dtype and in-place
    (
        "ch03.quantize_asymmetric",
        qa_float_codes,
        ["hand-checkable", "float dtype float32, expected uint8"],
    ),
    (
        "ch03.quantize_symmetric",
        qs_in_place,
        ["hand-checkable", "modified its input in place", "`x`"],
    ),
    # dequantize
    (
        "ch03.dequantize",
        dq_uint8_wrap,
        ["uint8 codes below and above zero_point=128", "wraps around"],
    ),
    # asymmetric
    ("ch03.asymmetric_params", ap_div_2b, ["hand-checkable", "scale: wrong value"]),
    (
        "ch03.asymmetric_params",
        ap_zp_wrong_sign,
        ["hand-checkable", "zero_point: wrong value", "(zero_point) 64", "off by -64"],
    ),
    (
        "ch03.asymmetric_params",
        ap_zp_not_rounded,
        ["hand-checkable", "63.75 is not a whole number"],
    ),
    (
        "ch03.asymmetric_params",
        ap_range_without_zero_unclamped,
        ["positive-only values", "range must contain 0"],
    ),
    (
        "ch03.asymmetric_params",
        ap_range_without_zero,
        ["positive-only values", "range must contain 0"],
    ),
    ("ch03.quantize_asymmetric", qa_no_clamp, ["clamp below 0 and above 255", "wraps around"]),
    ("ch03.quantize_asymmetric", qa_signed_range, ["clamp below 0 and above 255", "[0, 255]"]),
    # error measure
    ("ch03.sqnr_db", sqnr_ln, ["hand-checkable", "log10"]),
    ("ch03.sqnr_db", sqnr_amplitude, ["hand-checkable", "got / expected = 0.5"]),
    ("ch03.sqnr_db", sqnr_20log, ["hand-checkable", "got / expected = 2"]),
    # per-channel
    (
        "ch06.quantize_per_channel",
        pc_ignores_axis,
        ["axis=1 on a 3x4 weight", "scales: wrong shape (3,), expected (4,)"],
    ),
    (
        "ch06.quantize_per_channel",
        pc_reduces_along_axis,
        ["hand-checkable 2x3 weight, axis=0", "scales: wrong shape (3,), expected (2,)"],
    ),
    # per-token
    (
        "ch06.quantize_per_token",
        pt_per_channel,
        ["hand-checkable 2 tokens x 3 channels", "scales: wrong shape (3,), expected (2, 1)"],
    ),
    (
        "ch06.quantize_per_token",
        pt_no_keepdim,
        ["hand-checkable 2 tokens x 3 channels", "scales: wrong shape (2,), expected (2, 1)"],
    ),
    (
        "ch06.quantize_per_token",
        pt_per_tensor,
        ["hand-checkable 2 tokens x 3 channels", "q: wrong codes", "one scale per token"],
    ),
    ("ch06.quantize_per_token", pt_zero_row_nan, ["all-zero token", "scales: wrong values"]),
    # CLIP head
    ("ch02.clip_logits", logits_no_exp, ["logit_scale = 0 (exp(0) = 1)", "exp(0) = 1"]),
    ("ch02.clip_logits", logits_normalize_dim0, ["2 unit images x 2 unit texts", "wrong values"]),
    ("ch02.clip_loss", loss_one_direction, ["rows and columns differ", "both directions"]),
    # SmoothQuant
    ("ch07.smooth_scales", smooth_alpha_swapped, ["alpha = 0.75", "exponent of the activation"]),
    ("ch07.smooth_scales", smooth_no_clamp, ["zero activations: clamp at 1e-5", "clamp"]),
    (
        "ch07.smooth_layernorm_linears",
        sln_rows,
        ["hand-checkable", "raised RuntimeError", "s[None, :]"],
    ),
    (
        "ch07.smooth_layernorm_linears",
        sln_no_grad_missing,
        ["hand-checkable", "raised RuntimeError", "torch.no_grad()"],
    ),
    (
        "ch07.smooth_layernorm_linears",
        sln_first_linear_only,
        ["three Linears (q, k, v)", "linears[1].weight: wrong values"],
    ),
    # integer GEMM
    (
        "ch08.int8_linear",
        int8_accumulate_int8,
        ["int32 accumulation needed", "wrong values", "int8 @ int8 stays int8"],
    ),
    ("ch08.int8_linear", int8_accumulate_int16, ["int32 accumulation needed", "int32"]),
    # patches
    ("ch01.patchify", patchify_ppc, ["2 channels, patch=2", "(C, p, p)"]),
    ("ch01.patchify", patchify_column_major, ["4x4 single-channel image", "row-major"]),
    # parameter counting
    (
        "ch01.clip_parameter_count",
        pcount_bert_pooler,
        ["tiny: text 16 wide", "off by 272", "pooler"],
    ),
    ("ch01.clip_parameter_count", pcount_no_cls_position, ["tiny: text 16 wide", "off by -12"]),
    ("ch01.clip_parameter_count", pcount_conv_bias, ["tiny: text 16 wide", "off by 12"]),
    ("ch01.clip_parameter_count", pcount_no_logit_scale, ["tiny: text 16 wide", "off by -1"]),
    # calibration
    ("ch05.percentile_absmax", pct_of_x, ["hand-checkable", "wrong value"]),
    ("ch05.percentile_absmax", pct_nearest_rank, ["hand-checkable", "interpolate linearly"]),
    (
        "ch05.mse_best_clip",
        mse_no_clamp,
        ["constant tensor: the best clip is the maximum", "wrong value"],
    ),
    ("ch05.kl_threshold", kl_no_tail, ["threshold outside the accepted bins"]),
    # outliers
    ("ch04.outlier_ratio", or_mean_median, ["hand-checkable", "lower"]),
    ("ch04.outlier_ratio", or_no_abs, ["with negative outliers", "|x|"]),
    ("ch04.outlier_ratio", or_dim0_only, ["(batch 2, tokens 3, channels 4)", "last"]),
    ("ch04.outlier_ratio", or_per_token, ["hand-checkable", "wrong value"]),
    ("ch04.outlier_ratio", or_max_over_mean, ["hand-checkable", "median"]),
    ("ch04.outlier_ratio", or_nan_on_zeros, ["all zeros", "nothing sticks out"]),
    ("ch04.levels_used", lu_no_clamp, ["clamp:", "wraps around"]),
    ("ch04.levels_used", lu_floor, ["ties:", "round half to even"]),
    ("ch04.levels_used", lu_full_range, ["clamp:", "-128 is never used"]),
    ("ch04.levels_used", lu_whole_tensor, ["hand-checkable", "one per channel"]),
    ("ch04.levels_used", lu_per_row, ["hand-checkable", "shape (C,)"]),
    ("ch04.levels_used", lu_hardcoded_127, ["bits=4", "[-7, 7]"]),
]


@pytest.mark.parametrize("eid, fn, fragments", ZOO, ids=[f"{e}-{f.__name__}" for e, f, _ in ZOO])
def test_zoo_is_rejected_with_a_helpful_message(eid, fn, fragments):
    with pytest.raises(ExerciseFailed) as info:
        check(eid, fn)
    msg = str(info.value)
    first = msg.splitlines()[0]
    assert first.startswith(f"{eid}: case "), first
    assert f'"{fragments[0]}' in first or fragments[0] in first, first  # names the case
    for frag in fragments[1:]:
        assert frag in msg, f"{frag!r} not in:\n{msg}"
    assert "\n  hint:     " in msg


def test_zoo_size():
    assert len(ZOO) >= 18
    assert len({f.__name__ for _, f, _ in ZOO}) == len(ZOO)


# =========================================================================== correct, independent
# Written differently from the reference (numpy / Python loops / other torch ops).


def alt_patchify(images, patch):
    return F.unfold(images, kernel_size=patch, stride=patch).transpose(1, 2)


def alt_clip_parameter_count(config):
    """Lists every parameter tensor's shape and multiplies out (independent of the formula)."""
    t, v, proj = config["text_config"], config["vision_config"], config["projection_dim"]

    def layer(d, m):
        return [(d, d), (d,)] * 4 + [(m, d), (m,), (d, m), (d,)] + [(d,)] * 4

    td, vd = t["hidden_size"], v["hidden_size"]
    grid = v["image_size"] // v["patch_size"]
    shapes = [()]  # logit_scale
    shapes += [(t["vocab_size"], td), (t["max_position_embeddings"], td)]
    shapes += [(t["type_vocab_size"], td), (td,), (td,)]
    shapes += layer(td, t["intermediate_size"]) * t["num_hidden_layers"]
    shapes += [(vd, v["num_channels"], v["patch_size"], v["patch_size"]), (vd,), (grid**2 + 1, vd)]
    shapes += [(vd,)] * 4  # pre and post LayerNorm
    shapes += layer(vd, v["intermediate_size"]) * v["num_hidden_layers"]
    shapes += [(proj, td), (proj, vd)]
    return sum(math.prod(s) for s in shapes)


def alt_clip_logits(img_emb, txt_emb, logit_scale):
    a = img_emb.double().numpy()
    b = txt_emb.double().numpy()
    a = a / np.sqrt((a * a).sum(axis=1, keepdims=True))
    b = b / np.sqrt((b * b).sum(axis=1, keepdims=True))
    return torch.from_numpy(math.exp(float(logit_scale)) * a @ b.T).float()


def alt_clip_loss(logits_per_image):
    z = logits_per_image.double().numpy()
    n = z.shape[0]

    def ce(m):
        total = 0.0
        for i in range(n):
            row = m[i]
            top = row.max()
            total += top + math.log(np.exp(row - top).sum()) - row[i]
        return total / n

    return (ce(z) + ce(z.T)) / 2


def alt_symmetric_scale(x, bits=8):
    m = max(abs(v) for v in x.flatten().tolist())
    return m / (2 ** (bits - 1) - 1) if m > 0 else 1.0


def alt_quantize_symmetric(x, scale, bits=8):
    qmax = 2 ** (bits - 1) - 1
    q = np.clip(np.rint(x.numpy() / np.float32(scale)), -qmax, qmax)
    return torch.from_numpy(q.astype(np.int8 if bits <= 8 else np.int16))


def alt_dequantize(q, scale, zero_point=0):
    out = (q.numpy().astype(np.int64) - int(zero_point)) * float(scale)
    return torch.from_numpy(out.astype(np.float32))


def alt_asymmetric_params(x, bits=8):
    qmax = 2**bits - 1
    lo, hi = torch.aminmax(x.double())
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    if bool(hi == lo):
        return torch.tensor(1.0), torch.tensor(0)
    scale = (hi - lo) / qmax
    return scale, torch.round(-lo / scale).clamp(0, qmax).long()


def alt_quantize_asymmetric(x, scale, zero_point, bits=8):
    s, z, qmax = float(scale), int(zero_point), 2**bits - 1
    codes = [min(max(round(v / s) + z, 0), qmax) for v in x.flatten().tolist()]
    return torch.tensor(codes, dtype=torch.uint8).reshape(x.shape)


def alt_sqnr_db(x, x_hat):
    a, b = x.double().numpy(), x_hat.double().numpy()
    noise = float(np.sum((a - b) ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(float(np.sum(a**2)) / noise)


def alt_outlier_ratio(x):
    a = np.abs(x.double().numpy()).reshape(-1, x.shape[-1])
    m = np.sort(a.max(axis=0))
    med = m[(len(m) - 1) // 2]  # the lower middle value, as torch.median
    if m[-1] == 0:
        return 1.0
    return math.inf if med == 0 else float(m[-1] / med)


def alt_levels_used(x, scale, bits=8):
    qmax = 2 ** (bits - 1) - 1
    s = np.asarray(scale.numpy() if isinstance(scale, torch.Tensor) else scale, np.float32)
    q = np.clip(np.rint(x.numpy() / s), -qmax, qmax).reshape(-1, x.shape[-1])
    return torch.tensor([len(set(q[:, c].tolist())) for c in range(q.shape[1])])


def alt_percentile_absmax(x, pct):
    return float(np.percentile(np.abs(x.numpy()), pct))


def alt_mse_best_clip(x, bits=8, n_grid=100):
    qmax = 2 ** (bits - 1) - 1
    a = x.double().reshape(-1, 1)
    absmax = a.abs().max()
    if absmax == 0:
        return 0.0
    clips = absmax * torch.arange(1, n_grid + 1, dtype=torch.float64) / n_grid
    s = clips / qmax
    mse = ((a - torch.round(a / s).clamp(-qmax, qmax) * s) ** 2).mean(dim=0)
    k = int(torch.nonzero(mse == mse.min())[0, 0])  # smallest k on ties
    return float(clips[k])


def _smooth(p, eps=1e-4):
    zero = p == 0
    if zero.all():
        return None
    out = np.where(zero, eps, p - eps * zero.sum() / (~zero).sum())
    return None if (out <= 0).any() else out


def alt_kl_threshold(hist, bin_edges, bits=8):
    h = np.asarray(hist.tolist(), dtype=np.float64)
    nq = 2 ** (bits - 1)
    best_kl, best_i = math.inf, len(h)
    for i in range(nq, len(h) + 1):
        p = h[:i].copy()
        p[-1] += h[i:].sum()
        q = np.zeros(i)
        base, extra = divmod(i, nq)
        start = 0
        for j in range(nq):
            stop = start + base + (1 if j < extra else 0)
            mask = p[start:stop] != 0
            if mask.any():
                q[start:stop][mask] = h[start:stop].sum() / mask.sum()
            start = stop
        ps, qs = _smooth(p), _smooth(q)
        if ps is None or qs is None:
            continue
        ps, qs = ps / ps.sum(), qs / qs.sum()
        kl = float(np.sum(ps * np.log(ps / qs)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(bin_edges[best_i])


def alt_quantize_per_channel(w, bits=8, axis=0):
    qmax = 2 ** (bits - 1) - 1
    axis = axis % w.dim()
    qs, scales = [], []
    for c in range(w.shape[axis]):
        sl = w.select(axis, c).numpy()
        m = float(np.abs(sl).max())
        s = np.float32(m / qmax) if m > 0 else np.float32(1.0)
        qs.append(torch.from_numpy(np.clip(np.rint(sl / s), -qmax, qmax).astype(np.int8)))
        scales.append(s)
    return torch.stack(qs, dim=axis), torch.tensor(scales, dtype=torch.float32)


def alt_quantize_per_token(x, bits=8):
    qmax = 2 ** (bits - 1) - 1
    a = x.numpy()
    rows = a.reshape(-1, a.shape[-1])
    m = np.abs(rows).max(axis=1)
    s = np.where(m > 0, m / np.float32(qmax), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(rows / s[:, None]), -qmax, qmax).astype(np.int8)
    return (
        torch.from_numpy(q.reshape(a.shape)),
        torch.from_numpy(s.reshape(*a.shape[:-1], 1)),
    )


def alt_smooth_scales(act_absmax, weight_absmax, alpha=0.5):
    a = act_absmax.double().numpy()
    w = np.maximum(weight_absmax.double().numpy(), 1e-5)
    s = np.maximum(np.power(a, alpha) * np.power(w, alpha - 1), 1e-5)
    return torch.from_numpy(s).float()


def alt_smooth_layernorm_linears(ln, linears, s):
    ln.weight.data = ln.weight.data / s
    ln.bias.data = ln.bias.data / s
    for lin in linears:
        lin.weight.data = lin.weight.data * s.unsqueeze(0)


def alt_int8_linear(x_q, x_scale, w_q, w_scale, bias):
    acc = np.matmul(x_q.numpy().astype(np.int64), w_q.numpy().astype(np.int64).T)
    y = acc.astype(np.float64) * float(x_scale) * np.asarray(w_scale, dtype=np.float64)
    if bias is not None:
        y = y + bias.double().numpy()
    return torch.from_numpy(y.astype(np.float32))


CORRECT = {
    "ch01.patchify": alt_patchify,
    "ch01.clip_parameter_count": alt_clip_parameter_count,
    "ch02.clip_logits": alt_clip_logits,
    "ch02.clip_loss": alt_clip_loss,
    "ch03.symmetric_scale": alt_symmetric_scale,
    "ch03.quantize_symmetric": alt_quantize_symmetric,
    "ch03.dequantize": alt_dequantize,
    "ch03.asymmetric_params": alt_asymmetric_params,
    "ch03.quantize_asymmetric": alt_quantize_asymmetric,
    "ch03.sqnr_db": alt_sqnr_db,
    "ch04.outlier_ratio": alt_outlier_ratio,
    "ch04.levels_used": alt_levels_used,
    "ch05.percentile_absmax": alt_percentile_absmax,
    "ch05.mse_best_clip": alt_mse_best_clip,
    "ch05.kl_threshold": alt_kl_threshold,
    "ch06.quantize_per_channel": alt_quantize_per_channel,
    "ch06.quantize_per_token": alt_quantize_per_token,
    "ch07.smooth_scales": alt_smooth_scales,
    "ch07.smooth_layernorm_linears": alt_smooth_layernorm_linears,
    "ch08.int8_linear": alt_int8_linear,
}


def test_every_exercise_has_an_independent_correct_implementation():
    assert sorted(CORRECT) == sorted(ids())


@pytest.mark.parametrize("eid", sorted(CORRECT))
def test_independent_correct_implementation_passes(eid):
    report = check(eid, CORRECT[eid])
    assert report.ok and str(report).startswith(f"{eid}: ")
