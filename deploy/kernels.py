"""Integer kernels of docs/FIXED_POINT.md in vectorized numpy (no Lava, no torch).

Every Lava process model of `deploy.lava.procs` computes with these functions, so a process and
its hand-written test expectation share nothing but the contract. Activations are int64 arrays
laid out `(T, C, H, W)` (or `(T, C, N)` for token views); spikes are integers 0..4.

Exactness of the floating-point matrix products: every product here multiplies integer
operands, so each partial sum of a dot product, in any summation order, is an integer whose
magnitude is at most `bound = max_rows sum|w| * max|x|`. IEEE float32 (float64) represents every
integer up to 2^24 (2^53) exactly, hence every addition is exact when `bound` stays below that.
`exact_dtype` picks float32 when the bound allows (about 2x faster BLAS), else float64, and
raises when neither is exact; callers pass the proven bound of their operands.
"""
from __future__ import annotations


import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ACT_MIN = -(1 << 23)  # 24-bit signed activation range
ACT_MAX = (1 << 23) - 1
MAX_SPIKE = 4
DECAY_BITS = 12
FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53


def rshift(x: np.ndarray, n: int) -> np.ndarray:
    """Round-half-up right shift `floor((x + 2^(n-1)) / 2^n)` for n > 0; left shift `x * 2^-n` for n <= 0."""
    x = np.asarray(x, dtype=np.int64)
    n = int(n)
    if n > 0:
        return (x + (1 << (n - 1))) >> n
    return x << (-n)


def saturate(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Clamp to the 24-bit range; returns the clamped array and how many values were clamped."""
    if x.size == 0 or (x.min() >= ACT_MIN and x.max() <= ACT_MAX):  # the common case: two reductions
        return x, 0
    clipped = int(np.count_nonzero((x < ACT_MIN) | (x > ACT_MAX)))
    return np.clip(x, ACT_MIN, ACT_MAX), clipped


def exact_dtype(bound: int) -> type:
    """float32 when every partial sum (|.| <= bound) is exact in float32, else float64; ValueError if neither."""
    if bound < FLOAT32_EXACT:
        return np.float32
    if bound < FLOAT64_EXACT:
        return np.float64
    raise ValueError(f"integer product bound {bound} exceeds 2^53: a float matmul would not be exact")


def matmul_bound(weight_rows: np.ndarray, max_input: int) -> int:
    """Largest |partial sum| of `weight_rows @ x` for |x| <= max_input: max over rows of sum|w| * max_input."""
    rows = np.abs(np.asarray(weight_rows, dtype=np.int64)).reshape(weight_rows.shape[0], -1)
    return int(rows.sum(axis=1).max(initial=0)) * int(max_input)


def exact_matmul(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """Integer `a @ b` through float BLAS; `bound` must bound every partial sum (see module docstring)."""
    dtype = exact_dtype(bound)
    return np.matmul(a.astype(dtype, copy=False), b.astype(dtype, copy=False)).astype(np.int64)


def to_int(exact: np.ndarray) -> np.ndarray:
    """Float array holding exact integers (proven by the bound) -> int64, no rounding needed."""
    return exact.astype(np.int64)


# ----------------------------------------------------------------------------- neuron

def neuron(x: np.ndarray, frac_bits: int, decays: np.ndarray | list[int],
           reset: str = "normalized") -> tuple[np.ndarray, int]:
    """Multi-spike neuron over the leading time axis -> (spikes 0..4 int64, saturated membrane count).

    `v_0 = x_0`, `s_t = clamp(rshift(v_t, F), 0, 4)`, `v_t = sat(rshift((v_{t-1} - r) d_{t-1}, 12) + x_t)`
    with the soft reset `r = s_{t-1} 2^(F-2)` ('normalized', s/4) or `s_{t-1} 2^F` ('integer')."""
    if reset not in ("normalized", "integer"):
        raise ValueError(f"unknown neuron reset {reset!r}")
    reset_bits = frac_bits - 2 if reset == "normalized" else frac_bits
    if reset_bits < 0:
        raise ValueError(f"neuron input needs at least 2 fractional bits for a s/4 reset, got F={frac_bits}")
    x = np.asarray(x, dtype=np.int64)
    spikes = np.empty_like(x)
    v = x[0]
    spikes[0] = np.clip(rshift(v, frac_bits), 0, MAX_SPIKE)
    saturated = 0
    for t in range(1, x.shape[0]):  # T <= 4 steps: a loop over time, vectorized over neurons
        v, clipped = saturate(rshift((v - (spikes[t - 1] << reset_bits)) * int(decays[t - 1]), DECAY_BITS) + x[t])
        saturated += clipped
        spikes[t] = np.clip(rshift(v, frac_bits), 0, MAX_SPIKE)
    return spikes, saturated


# ----------------------------------------------------------------------------- convolution

def pad_hw(x: np.ndarray, pad: int) -> np.ndarray:
    """Zero-pad the last two axes by `pad` on each side."""
    if pad == 0:
        return x
    widths = [(0, 0)] * (x.ndim - 2) + [(pad, pad), (pad, pad)]
    return np.pad(x, widths)


def out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output side of a convolution (floor mode, as PyTorch)."""
    return (size + 2 * pad - kernel) // stride + 1


def im2col(x: np.ndarray, kernel: int, stride: int, pad: int) -> np.ndarray:
    """(T, C, H, W) -> columns (T, C*k*k, Ho*Wo) (row c*k*k + dy*k + dx), one strided copy per tap."""
    t, c, h, w = x.shape
    ho, wo = out_size(h, kernel, stride, pad), out_size(w, kernel, stride, pad)
    windows = sliding_window_view(pad_hw(x, pad), (kernel, kernel), axis=(2, 3))  # (T, C, H', W', k, k)
    cols = np.empty((t, c, kernel, kernel, ho, wo), dtype=x.dtype)
    for dy in range(kernel):  # k*k taps; each copy is vectorized over channels and pixels
        for dx in range(kernel):
            cols[:, :, dy, dx] = windows[:, :, ::stride, ::stride, dy, dx][:, :, :ho, :wo]
    return cols.reshape(t, c * kernel * kernel, ho * wo)


def conv_accumulate(x: np.ndarray, weight: np.ndarray, stride: int, pad: int, groups: int,
                    max_input: int) -> np.ndarray:
    """Exact integer convolution `acc = sum w * x` per time step: (T, Cin, H, W) -> (T, Cout, Ho, Wo) int64.

    Dense and grouped convs: im2col + one BLAS product per group; depthwise: a loop over the
    k*k taps, vectorized over channels and pixels."""
    t, cin, h, w = x.shape
    cout, cin_g, k, _ = weight.shape
    bound = matmul_bound(weight, max_input)
    dtype = exact_dtype(bound)
    ho, wo = out_size(h, k, stride, pad), out_size(w, k, stride, pad)
    if groups == cin and cin_g == 1 and cout == cin:
        return _depthwise(x.astype(dtype), weight[:, 0].astype(dtype), stride, pad, ho, wo)
    xs = x.astype(dtype)
    if k == 1 and stride == 1 and pad == 0:
        cols = xs.reshape(t, groups, cin_g, h * w)  # (T, G, Cin/G, HW)
    else:
        cols = im2col(xs, k, stride, pad).reshape(t, groups, cin_g * k * k, ho * wo)
    wg = weight.astype(dtype).reshape(groups, cout // groups, cin_g * k * k)
    acc = np.matmul(wg[None], cols)  # (T, G, Cout/G, HoWo)
    return to_int(acc).reshape(t, cout, ho, wo)


def _depthwise(x: np.ndarray, weight: np.ndarray, stride: int, pad: int, ho: int, wo: int) -> np.ndarray:
    """Depthwise conv by tap accumulation in an exact float dtype; weight (C, k, k)."""
    xp = pad_hw(x, pad)
    k = weight.shape[-1]
    acc = np.zeros(x.shape[:2] + (ho, wo), dtype=x.dtype)
    span_h, span_w = (ho - 1) * stride + 1, (wo - 1) * stride + 1
    for dy in range(k):
        for dx in range(k):
            tap = xp[:, :, dy:dy + span_h:stride, dx:dx + span_w:stride]
            acc += tap * weight[None, :, dy, dx, None, None]
    return to_int(acc)


def requantize(acc: np.ndarray, shift: int, bias: np.ndarray | None) -> np.ndarray:
    """`rshift(acc, shift) + b` with a per-output-channel bias on axis 1 (before saturation)."""
    y = rshift(acc, shift)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.int64).reshape((1, -1) + (1,) * (acc.ndim - 2))
    return y


def window_input_sums(x: np.ndarray, kernel: int, stride: int, pad: int) -> int:
    """Sum over output positions of the input values in each one's window (all input channels):
    `synops / (Cout / groups)` of a conv on spikes (exact at borders and with strides)."""
    t, c, h, w = x.shape
    # Sum over channels first, then a box filter as cumulative sums over the padded map.
    total = x.sum(axis=1, dtype=np.int64)  # (T, H, W)
    xp = pad_hw(total[:, None], pad)[:, 0]
    ho, wo = out_size(h, kernel, stride, pad), out_size(w, kernel, stride, pad)
    # Number of windows covering each padded pixel, per axis.
    cover_h = _cover(xp.shape[1], kernel, stride, ho)
    cover_w = _cover(xp.shape[2], kernel, stride, wo)
    return int(np.einsum("thw,h,w->", xp, cover_h, cover_w))


def _cover(size: int, kernel: int, stride: int, outputs: int) -> np.ndarray:
    """How many of the `outputs` windows (kernel, stride) cover each index 0..size-1."""
    cover = np.zeros(size + 1, dtype=np.int64)
    starts = np.arange(outputs) * stride
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + kernel, -1)
    return np.cumsum(cover)[:size]


# ----------------------------------------------------------------------------- elementwise / resampling

def add(inputs: list[np.ndarray], shifts: list[int]) -> np.ndarray:
    """Residual add: every input aligned to the output format with `rshift(x, F_in - F_out)`, then summed."""
    total = np.zeros(np.broadcast_shapes(*(np.shape(x) for x in inputs)), dtype=np.int64)
    for x, shift in zip(inputs, shifts, strict=True):
        total = total + rshift(x, shift)
    return total


def avgpool(x: np.ndarray, kernel: int, shift: int) -> np.ndarray:
    """k x k window sums, stride k, requantized: `rshift(sum window, shift)`
    (`shift = log2(k^2) + F_in - F_out`; k^2 a power of two)."""
    t, c, h, w = x.shape
    sums = np.asarray(x, dtype=np.int64).reshape(t, c, h // kernel, kernel, w // kernel, kernel).sum(axis=(3, 5))
    return rshift(sums, shift)


def bilinear_weights(size_in: int, factor: int) -> np.ndarray:
    """(size_in*factor, size_in) integer bilinear weights in units of 1/(2 factor), align_corners=False,
    source coordinate clamped at 0 and the upper neighbour at the border, as PyTorch."""
    unit = 2 * factor
    num = np.maximum(2 * np.arange(size_in * factor) + 1 - factor, 0)  # source coordinate * unit
    i0 = num // unit
    frac = num - i0 * unit
    i1 = np.minimum(i0 + 1, size_in - 1)
    weights = np.zeros((size_in * factor, size_in), dtype=np.int64)
    rows = np.arange(size_in * factor)
    np.add.at(weights, (rows, i0), unit - frac)
    np.add.at(weights, (rows, i1), frac)
    return weights


def upsample(x: np.ndarray, wy: np.ndarray, wx: np.ndarray, shift: int) -> np.ndarray:
    """Separable integer resampling `rshift(wy @ x @ wx^T, shift)` per (t, c); exact in int64."""
    x = np.asarray(x, dtype=np.int64)
    rows = np.matmul(np.asarray(wy, dtype=np.int64), x)  # (T, C, Ho, Wi)
    return rshift(np.matmul(rows, np.asarray(wx, dtype=np.int64).T), shift)


# ----------------------------------------------------------------------------- attention

def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(T, C, *spatial) -> (T, h, C/h, N) with tokens row-major: channel c to head c // (C/h), index c % (C/h)."""
    return np.asarray(x).reshape(x.shape[0], heads, x.shape[1] // heads, -1)


def kv_memory(k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """Memory `M = k^T v` per step and head, summed over tokens: k (T, C, ...), v (T, Cv, ...) spikes
    -> (T, h, d, dv) int64. Bound: |partial sum| <= 16 N."""
    kh, vh = split_heads(k, heads), split_heads(v, heads)
    bound = MAX_SPIKE * MAX_SPIKE * kh.shape[-1]
    return exact_matmul(kh, vh.transpose(0, 1, 3, 2), bound)


def retrieve_accumulate(q: np.ndarray, memory: np.ndarray, heads: int) -> np.ndarray:
    """`acc = q @ M` per step and head, merged back: q (T, C, *sp) spikes, M (T or 1, h, d, dv) ints
    -> (T, h*dv, *sp) int64 (channel j*dv + b). Bound: 4 * max_b sum_a |M[a, b]|."""
    qh = split_heads(q, heads)  # (T, h, d, N)
    mem_t = np.asarray(memory, dtype=np.int64).transpose(0, 1, 3, 2)  # (T, h, dv, d)
    bound = MAX_SPIKE * int(np.abs(mem_t).sum(axis=-1).max(initial=0))
    acc = exact_matmul(mem_t, qh, bound)  # (T, h, dv, N)
    return acc.reshape((q.shape[0], -1) + tuple(q.shape[2:]))


def scale_shift(acc: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """Integer multiply-shift `rshift(acc * m, n)` replacing a float scale."""
    return rshift(np.asarray(acc, dtype=np.int64) * int(multiplier), shift)


# ----------------------------------------------------------------------------- host (float64)

def dequantize(x: np.ndarray, frac_bits: int) -> np.ndarray:
    """Integers in format F -> float64 reals."""
    return np.asarray(x, dtype=np.float64) * 2.0 ** -frac_bits


def quantize(x: np.ndarray, frac_bits: int) -> np.ndarray:
    """float64 reals -> integers `floor(x 2^F + 0.5)` (round half up; before saturation)."""
    return np.floor(np.asarray(x, dtype=np.float64) * 2.0 ** frac_bits + 0.5).astype(np.int64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float64 logistic function."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """float64 softmax along `axis`."""
    z = np.asarray(x, dtype=np.float64)
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def float_neuron(x: np.ndarray, decays: list[float], reset: str, max_spike: int = MAX_SPIKE) -> np.ndarray:
    """The float model's neuron (round half to even) on real inputs, time first; values s/D."""
    norm = float(max_spike)
    mem = np.asarray(x[0], dtype=np.float64)
    out = [np.round(np.clip(mem, 0, max_spike)) / norm]
    for t in range(1, x.shape[0]):
        r = out[-1] if reset == "normalized" else out[-1] * norm
        mem = (mem - r) * decays[t - 1] + x[t]
        out.append(np.round(np.clip(mem, 0, max_spike)) / norm)
    return np.stack(out)


def channel_gate(o: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray,
                 decays: list[float], reset: str, max_spike: int = MAX_SPIKE) -> np.ndarray:
    """Channel gate (spec §7.6) in float64 on real spike values (T, Cv, P, P) -> (1, Cv, P, P):
    per channel, score each step with conv1d-neuron-conv1d over the P^2 positions, softmax over T."""
    t, cv = o.shape[:2]
    x = np.asarray(o, dtype=np.float64).reshape(t, cv, -1)  # (T, Cv, P^2)
    g = np.einsum("oi,tci->tco", w1, x) + b1  # (T, Cv, P^2/2)
    g = float_neuron(g, decays, reset, max_spike)
    g = np.einsum("oi,tci->tco", w2, g)[..., 0] + b2  # (T, Cv)
    w = softmax(g, axis=0)
    return (np.asarray(o, dtype=np.float64) * w[:, :, None, None]).sum(axis=0, keepdims=True)
