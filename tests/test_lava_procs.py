"""Each Lava process of deploy/lava/procs against hand-written integer expectations (FIXED_POINT.md).

Every process runs a few Lava steps (one frame per step) on small random integer inputs that
include rounding ties and saturation; expectations are written here with Python / numpy integer
arithmetic (or torch float64 on small integers, exact), not with deploy.kernels.
stop() is only called after a successful run (after a failed one it would hang, LAVA.md §9).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import deploy.lava_compat  # noqa: F401  (before Lava)
from deploy import kernels as K
from deploy.lava_compat import LavaRunError, run_or_raise, worker_tracebacks
from lava.magma.core.run_conditions import RunSteps
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source

from deploy.lava.builder import compile_config, run_config
from deploy.lava.procs.host.process import HostOps
from deploy.lava.procs.linear_attention.process import LinearAttention
from deploy.lava.procs.memory_retrieval.process import MemoryRead, MemoryWrite
from deploy.lava.procs.neuron.process import MultiSpikeNeuron
from deploy.lava.procs.residual_add.process import ResidualAdd
from deploy.lava.procs.resample.process import AvgPool, Upsample
from deploy.lava.procs.segment.process import Segment
from deploy.lava.procs.spike_conv.process import SpikeConv

ACT_MAX = (1 << 23) - 1
ACT_MIN = -(1 << 23)


def shr(x, n: int):
    """Hand-written round-half-up shift on Python ints (arrays of object dtype or int64)."""
    if n <= 0:
        return x * (2 ** -n)
    return (x + 2 ** (n - 1)) // 2 ** n


def sat(x):
    return np.clip(x, ACT_MIN, ACT_MAX)


def run_process(proc, feeds: dict[str, np.ndarray], taps: list[str], var_names: tuple[str, ...] = (),
                sets: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Feed `feeds[port]` (steps, *shape) through RingBuffers, one step per frame; return every step's
    output of each tapped port (steps, *shape) and the final values of `var_names`."""
    steps = next(iter(feeds.values())).shape[0]
    for port, data in feeds.items():
        src = Source(data=np.moveaxis(np.asarray(data, dtype=np.float64), 0, -1))
        src.s_out.connect(getattr(proc, port))
    sinks = {}
    for port in taps:
        sinks[port] = Sink(shape=getattr(proc, port).shape, buffer=steps)
        getattr(proc, port).connect(sinks[port].a_in)
    for name, value in (sets or {}).items():
        getattr(proc, name).init = value
    run_or_raise(proc, RunSteps(num_steps=steps), run_config())  # raises LavaRunError, never stops
    outs = {p: np.moveaxis(np.rint(s.data.get()).astype(np.int64), -1, 0) for p, s in sinks.items()}
    values = {n: np.rint(np.asarray(getattr(proc, n).get(), dtype=np.float64)).astype(np.int64) for n in var_names}
    proc.stop()
    return outs, values


# ----------------------------------------------------------------------------- neuron

def neuron_expected(x: np.ndarray, f: int, decay: list[int], reset: str) -> tuple[np.ndarray, int]:
    """Element by element with Python ints (the FIXED_POINT.md recursion)."""
    flat = x.reshape(x.shape[0], -1)
    out = np.zeros(flat.shape, dtype=np.int64)
    clipped = 0
    unit = 2 ** (f - 2) if reset == "normalized" else 2 ** f
    for j in range(flat.shape[1]):
        v = int(flat[0, j])
        out[0, j] = min(max(shr(v, f), 0), 4)
        for t in range(1, flat.shape[0]):
            v = shr((v - int(out[t - 1, j]) * unit) * decay[t - 1], 12) + int(flat[t, j])
            if v > ACT_MAX or v < ACT_MIN:
                clipped += 1
                v = min(max(v, ACT_MIN), ACT_MAX)
            out[t, j] = min(max(shr(v, f), 0), 4)
    return out.reshape(x.shape), clipped


@pytest.mark.parametrize("reset", ["normalized", "integer"])
def test_neuron_ties_saturation_and_decay(reset):
    rng = np.random.default_rng(1)
    f, decay, shape = 6, [1024, 3001], (3, 2, 5, 4)
    frames = rng.integers(-300, 400, size=(2,) + shape)
    frames[0, 0, 0, 0, :] = [32, 96, 160, 224]  # exactly k + 0.5 at F=6: ties round up (1, 2, 3, 4)
    frames[0, 0, 0, 1, :] = [-32, 288, 10_000, 31]  # negative tie -> 0, clamp at 4, just below a tie
    frames[1, 1, 1, :, :] = ACT_MAX  # membrane saturates at the second and third step
    proc = MultiSpikeNeuron(shape=shape, frac_bits=f, decay=decay, reset=reset)
    outs, var = run_process(proc, {"a_in": frames}, ["s_out"], ("spikes", "updates", "saturated"))
    want = [neuron_expected(frames[k], f, decay, reset) for k in range(2)]
    for k in range(2):
        np.testing.assert_array_equal(outs["s_out"][k], want[k][0])
    assert list(want[0][0][0, 0, 0, :4]) == [1, 2, 3, 4]
    assert want[1][1] > 0 and var["saturated"][0] == want[0][1] + want[1][1]
    assert var["spikes"][0] == sum(int(w[0].sum()) for w in want)
    assert var["updates"][0] == 2 * math.prod(shape)


# ----------------------------------------------------------------------------- conv

@pytest.mark.parametrize("cin,cout,k,stride,pad,groups,steps", [
    (4, 6, 3, 1, 1, 1, 1),  # dense 3x3
    (4, 6, 3, 2, 1, 2, 2),  # strided, grouped, two time steps
    (6, 6, 7, 1, 3, 6, 1),  # depthwise 7x7
    (4, 8, 1, 1, 0, 1, 3),  # 1x1 (linear on the token grid), T = 3
])
def test_spike_conv(cin, cout, k, stride, pad, groups, steps):
    rng = np.random.default_rng(cin * 100 + k)
    shape = (steps, cin, 9, 7)
    frames = rng.integers(0, 5, size=(2,) + shape)
    weight = rng.integers(-128, 128, size=(cout, cin // groups, k, k))
    weight[0] = -128  # extreme mantissas
    bias = rng.integers(-5000, 5000, size=cout)
    bias[1] = ACT_MAX  # saturates upwards
    shift = 3
    proc = SpikeConv(in_shape=shape, weight=weight, bias=bias, stride=stride, padding=pad, groups=groups, shift=shift)
    outs, var = run_process(proc, {"s_in": frames}, ["a_out"], ("synops", "saturated"))
    synops, clipped = 0, 0
    for n in range(2):
        x = torch.tensor(frames[n], dtype=torch.float64)
        acc = F.conv2d(x, torch.tensor(weight, dtype=torch.float64), stride=stride, padding=pad, groups=groups)
        acc = acc.numpy().astype(np.int64)
        y = shr(acc, shift) + bias[None, :, None, None]
        clipped += int(((y > ACT_MAX) | (y < ACT_MIN)).sum())
        np.testing.assert_array_equal(outs["a_out"][n], sat(y))
        ones = torch.ones((cout, cin // groups, k, k), dtype=torch.float64)
        synops += int(F.conv2d(x, ones, stride=stride, padding=pad, groups=groups).sum())
    assert var["synops"][0] == synops and var["saturated"][0] == clipped > 0


def test_exact_matmul_bounds():
    assert K.exact_dtype((1 << 24) - 1) is np.float32
    assert K.exact_dtype(1 << 24) is np.float64
    with pytest.raises(ValueError, match="2\\^53"):
        K.exact_dtype(1 << 53)
    # worst case of a SpikeTrack conv on spikes: 128 * 4 * fan-in 360*4*9 < 2^24 (float32 exact)
    assert K.matmul_bound(np.full((1, 360 * 4 * 9), -128), K.MAX_SPIKE) < 1 << 24
    x = np.full((1, 4096, 3, 3), 4)
    w = np.full((2, 4096, 3, 3), -128)  # bound 128 * 4 * 4096 * 9 > 2^24: the float64 path, still exact
    assert K.matmul_bound(w, 4) > 1 << 24
    assert K.conv_accumulate(x, w, 1, 1, 1, 4)[0, 0, 1, 1] == -128 * 4 * 4096 * 9


# ----------------------------------------------------------------------------- add, pooling, upsampling

def test_residual_add_alignment_and_broadcast():
    rng = np.random.default_rng(3)
    a = rng.integers(-2000, 2000, size=(2, 3, 4, 5, 5))
    b = rng.integers(-2000, 2000, size=(2, 1, 4, 5, 5))  # one step, broadcast over T = 3
    a[0, 0, 0, 0, :] = [1, 3, 5, -1, -3]  # ties of the >> 1 alignment
    b[1, 0, 1, 1, :] = ACT_MAX
    shifts = [1, -2]
    proc = ResidualAdd(a_shape=a.shape[1:], b_shape=b.shape[1:], shifts=shifts)
    outs, var = run_process(proc, {"a_in": a, "b_in": b}, ["out"], ("saturated",))
    want = sat(shr(a, 1) + b * 4)
    np.testing.assert_array_equal(outs["out"], want)
    assert list(shr(np.array([1, 3, 5, -1, -3]), 1)) == [1, 2, 3, 0, -1]
    assert var["saturated"][0] == int((shr(a, 1) + b * 4 > ACT_MAX).sum()) > 0


def test_avgpool():
    rng = np.random.default_rng(4)
    x = rng.integers(-1000, 1000, size=(2, 1, 3, 8, 8))
    x[0, 0, 0, :4, :4] = 2  # window sum 32: /16 -> exactly 2
    x[0, 0, 0, :4, 4:] = 0
    x[0, 0, 0, 0, 4] = 8  # window sum 8: /16 = 0.5 -> tie rounds up to 1
    shift = 4 + 2  # log2(16) + F_in - F_out
    proc = AvgPool(in_shape=x.shape[1:], kernel=4, shift=shift)
    outs, _ = run_process(proc, {"a_in": x}, ["out"])
    sums = x.reshape(2, 1, 3, 2, 4, 2, 4).sum(axis=(4, 6))
    np.testing.assert_array_equal(outs["out"], sat(shr(sums, shift)))
    assert shr(np.array([8]), 4)[0] == 1


@pytest.mark.parametrize("factor", [2, 4])
def test_upsample_matches_pytorch_bilinear(factor):
    rng = np.random.default_rng(factor)
    x = rng.integers(-5000, 5000, size=(2, 1, 2, 4, 3))
    shift = 2 * int(math.log2(2 * factor)) - 1  # output one fractional bit finer than the input
    proc = Upsample(in_shape=x.shape[1:], factor=factor, shift=shift)
    outs, _ = run_process(proc, {"a_in": x}, ["out"])
    unit = (2 * factor) ** 2
    ref = F.interpolate(torch.tensor(x[:, 0], dtype=torch.float64), scale_factor=factor,
                        mode="bilinear", align_corners=False).reshape(2, 1, 2, 4 * factor, 3 * factor)
    scaled = ref.numpy() * unit  # integer: weights are multiples of 1/(2 factor)
    assert np.array_equal(scaled, np.rint(scaled))
    np.testing.assert_array_equal(outs["out"], sat(shr(np.rint(scaled).astype(np.int64), shift)))


# ----------------------------------------------------------------------------- attention and memories

def heads_memory(k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    """M[t, j, a, b] = sum_n k[t, j d + a, n] v[t, j dv + b, n] in int64."""
    t, c = k.shape[:2]
    kk = k.reshape(t, heads, c // heads, -1)
    vv = v.reshape(t, heads, v.shape[1] // heads, -1)
    return np.einsum("than,thbn->thab", kk, vv)


def heads_read(q: np.ndarray, mem: np.ndarray) -> np.ndarray:
    """acc[t, j dv + b, n] = sum_a q[t, j d + a, n] M[t, j, a, b] in int64."""
    t, c = q.shape[:2]
    heads = mem.shape[1]
    qq = q.reshape(t, heads, c // heads, -1)
    return np.einsum("than,thab->thbn", qq, mem).reshape((t, -1) + q.shape[2:])


def test_linear_attention():
    rng = np.random.default_rng(5)
    steps, t, c, cv, h, w, heads = 2, 2, 16, 32, 4, 4, 8
    q, k = rng.integers(0, 5, size=(2, steps, t, c, h, w))
    v = rng.integers(0, 5, size=(steps, t, cv, h, w))
    k[1] = 4
    v[1] = 4  # all-4 spikes: the largest memory entries (16 N)
    m, n = 46341, 20
    proc = LinearAttention(qk_shape=(t, c, h, w), v_channels=cv, heads=heads, multiplier=m, shift=n)
    outs, var = run_process(proc, {"q_in": q, "k_in": k, "v_in": v}, ["out"], ("attention_ops", "saturated"))
    for s in range(steps):
        acc = heads_read(q[s], heads_memory(k[s], v[s], heads))
        np.testing.assert_array_equal(outs["out"][s], sat(shr(acc * m, n)))
    assert var["attention_ops"][0] == (int(k.sum()) + int(q.sum())) * (cv // heads)


def test_memory_write_and_read_with_state():
    rng = np.random.default_rng(6)
    t, c, cv, h, w, heads = 3, 8, 16, 4, 4, 8
    k = rng.integers(0, 5, size=(1, t, c, h, w))
    v = rng.integers(0, 5, size=(1, t, cv, h, w))
    writer = MemoryWrite(k_shape=(t, c, h, w), v_channels=cv, heads=heads)
    outs, _ = run_process(writer, {"k_in": k, "v_in": v}, ["m_out"])
    mem = heads_memory(k[0], v[0], heads)
    np.testing.assert_array_equal(outs["m_out"][0], mem)

    q = rng.integers(0, 5, size=(2, t, c, h, w))
    m, n = 65535, 1  # large enough to saturate some outputs
    reader = MemoryRead(q_shape=(t, c, h, w), memory_shape=mem.shape, multiplier=m, shift=n)
    outs, var = run_process(reader, {"q_in": q}, ["out"], ("attention_ops", "saturated", "memory"),
                            sets={"memory": mem})
    want = sat(shr(np.stack([heads_read(q[s], mem) for s in range(2)]) * m, n))
    np.testing.assert_array_equal(outs["out"], want)
    np.testing.assert_array_equal(var["memory"], mem)  # state unchanged by reads
    assert var["saturated"][0] == int((shr(np.stack([heads_read(q[s], mem) for s in range(2)]) * m, n) > ACT_MAX).sum()) > 0


# ----------------------------------------------------------------------------- fused segment and host ops

def node(id_, op, inputs, shape, frac_bits, attrs=None, params=None, location="neuro"):
    """A NetworkIR-like node (only the fields the evaluators read)."""
    return SimpleNamespace(id=id_, op=op, inputs=inputs, shape=shape, frac_bits=frac_bits, attrs=attrs or {},
                           params=params or {}, location=location, source=id_)


def test_segment_fuses_neuron_conv_add_and_memory_state():
    """Segment: x -> neuron -> 1x1 conv -> add(x) and a retrieve from a memory held as state."""
    rng = np.random.default_rng(7)
    t, c, h, w = 1, 8, 4, 4
    weight = rng.integers(-128, 128, size=(c, c, 1, 1))
    bias = rng.integers(-100, 100, size=c)
    mem = rng.integers(0, 200, size=(1, 8, 1, 2))  # heads 8, d = 1, dv = 2
    nodes = [node("s", "neuron", ["x"], (t, c, h, w), 2, {"f_in": 6, "decay": [], "reset": "normalized"}),
             node("y", "conv", ["s"], (t, c, h, w), 5, {"kernel": [1, 1], "stride": 1, "padding": 0, "groups": 1,
                                                        "shift": 2, "per_step": False},
                  {"weight": weight, "bias": bias}),
             node("z", "add", ["x", "y"], (t, c, h, w), 5, {"shifts": [1, 0]}),
             node("r", "retrieve", ["s", "mem"], (t, 16, h, w), 3, {"heads": 8, "multiplier": 3, "shift": 2})]
    x = rng.integers(-100, 400, size=(2, t, c, h, w))
    proc = Segment(nodes=nodes, inputs=[("x", (t, c, h, w))], outputs=[("z", (t, c, h, w)), ("r", (t, 16, h, w))],
                   state=[("mem", mem.shape)], frac_bits={"x": 6, "mem": 4})
    proc.state.init = mem.ravel()
    outs, var = run_process(proc, {"in_0": x.reshape(2, -1)}, ["out_0", "out_1"], ("counts", "steps"))
    for n in range(2):
        s = np.clip(shr(x[n], 6), 0, 4)
        acc = np.einsum("oi,tihw->tohw", weight[:, :, 0, 0], s)
        y = sat(shr(acc, 2) + bias[None, :, None, None])
        np.testing.assert_array_equal(outs["out_0"][n].reshape(x[n].shape), sat(shr(x[n], 1) + y))
        np.testing.assert_array_equal(outs["out_1"][n].reshape(t, 16, h, w), sat(shr(heads_read(s, mem) * 3, 2)))
    assert var["steps"][0] == 2
    assert var["counts"][0, 0] == int(np.clip(shr(x, 6), 0, 4).sum())  # spikes of node s


def test_host_ops_gate_and_sigmoid():
    """HostOps: channel gate (float64 over template steps, softmax) and sigmoid, requantized."""
    rng = np.random.default_rng(8)
    t, cv, p = 3, 4, 4
    tokens = p * p
    params = {"w1": rng.normal(size=(tokens // 2, tokens)), "b1": rng.normal(size=tokens // 2),
              "w2": rng.normal(size=(1, tokens // 2)), "b2": rng.normal(size=1)}
    decay = [0.25, 0.6]
    nodes = [node("g", "gate", ["o"], (1, cv, p, p), 10, {"neuron_decay": decay, "reset": "normalized",
                                                          "max_spike": 4}, params, "host"),
             node("sg", "sigmoid", ["g"], (1, cv, p, p), 12, {"clamp": [1e-4, 1 - 1e-4]}, location="host")]
    o = rng.integers(0, 5, size=(2, t, cv, p, p))
    proc = HostOps(nodes=nodes, inputs=[("o", (t, cv, p, p))], outputs=[("g", (1, cv, p, p)), ("sg", (1, cv, p, p))],
                   frac_bits={"o": 2})
    outs, _ = run_process(proc, {"in_0": o.reshape(2, -1)}, ["out_0", "out_1"])
    for n in range(2):
        real = torch.tensor(o[n] / 4.0, dtype=torch.float64)
        x = real.reshape(t, cv, tokens)
        g = torch.einsum("oi,tci->tco", torch.tensor(params["w1"]), x) + torch.tensor(params["b1"])
        mem, spikes = g[0], [torch.round(g[0].clamp(0, 4)) / 4]
        for step in range(1, t):
            mem = (mem - spikes[-1]) * decay[step - 1] + g[step]
            spikes.append(torch.round(mem.clamp(0, 4)) / 4)
        score = torch.einsum("oi,tci->tc", torch.tensor(params["w2"]), torch.stack(spikes)) + torch.tensor(params["b2"])
        gated = (real * score.softmax(dim=0)[:, :, None, None]).sum(0, keepdim=True)
        want_g = torch.floor(gated * 2 ** 10 + 0.5).numpy().astype(np.int64)
        np.testing.assert_array_equal(outs["out_0"][n].reshape(want_g.shape), want_g)
        sig = torch.sigmoid(torch.tensor(want_g * 2.0 ** -10)).clamp(1e-4, 1 - 1e-4)
        np.testing.assert_array_equal(outs["out_1"][n].reshape(want_g.shape),
                                      torch.floor(sig * 2 ** 12 + 0.5).numpy().astype(np.int64))


def test_failed_run_raises_worker_traceback_without_stop():
    """A worker exception surfaces as LavaRunError with the worker's traceback; no stop() (it would hang)."""
    bad = node("y", "conv", ["s"], (1, 2, 2, 2), 0, {"kernel": [1, 1], "stride": 1, "padding": 0, "groups": 1,
                                                     "shift": 0, "per_step": False},
               {"weight": np.ones((2, 3, 1, 1), dtype=np.int64), "bias": np.zeros(2, np.int64)})  # 3 != 2 inputs
    proc = Segment(nodes=[bad], inputs=[("s", (1, 2, 2, 2))], outputs=[("y", (1, 2, 2, 2))])
    src = Source(data=np.zeros((8, 1)))
    src.s_out.connect(proc.in_0)
    with pytest.raises(LavaRunError, match="Traceback") as err:
        run_or_raise(proc, RunSteps(num_steps=1), run_config())
    assert "conv" in str(err.value) or "shape" in str(err.value)
    assert worker_tracebacks(proc)


def test_compile_config_keeps_channels_shallow():
    assert compile_config()["pypy_channel_size"] <= 4


def test_compat_shims_are_idempotent():
    from lava.magma.compiler import var_model

    deploy.lava_compat.install()
    deploy.lava_compat.install()
    assert hash(var_model.ByteEncoder()) == hash(var_model.ByteEncoder())  # 3.11 dataclass default fixed
    from lava.lib.dl import netx  # noqa: F401  (slayer imports without torchvision)
