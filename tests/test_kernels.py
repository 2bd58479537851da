"""The Triton kernels against their torch references, the launchers' checks, and the dispatch.

Without CUDA the kernels run in Triton's interpreter on CPU tensors at tiny shapes (tiles of 16):
the `triton_here` fixture sets TRITON_INTERPRET=1, which works because kernels/jit.py decorates
the kernels only at their first launch. bf16 dots run in fp32 in the
interpreter (its bf16 dot is wrong); loads and stores keep bf16. `gpu` tests compare the compiled
kernels at the streamer's shapes; test_compiles_for_hopper builds every kernel for sm_90 on CPU.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from micro_model import MICRO

from kernels import KernelError, dispatch
from kernels.attention import segmented_attention
from kernels.attention_reference import segmented_attention_reference
from worldplay.camera import intrinsics, yaw_pitch_pose
from worldplay.model.dit import DiT, MemoryTokens
from worldplay.model.embed import prompt_ids
from worldplay.model.kv_cache import KVCache

HAVE_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ROOT = Path(__file__).resolve().parents[1]
B, H, D = 1, 2, 32
TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}   # vs an fp32 reference


@pytest.fixture
def triton_here(monkeypatch):
    """Triton kernels can launch: compiled on CUDA, else Triton's interpreter on CPU (the kernels
    are decorated at their first launch, inside a test, with TRITON_INTERPRET=1 set here)."""
    if not HAVE_TRITON:
        pytest.skip("Triton is not installed")
    if DEVICE.type == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def rand(g, *shape, dtype=torch.float32, device=DEVICE):
    return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)


def segments(g, nq=37, cap=40, cache_len=23, n_mem=19, dtype=torch.float32, d=D, device=DEVICE):
    """Queries = the current tokens; random validity on memory and current keys."""
    q, k, v = (rand(g, B, H, nq, d, dtype=dtype, device=device) for _ in range(3))
    kw = dict(cache_k=rand(g, B, H, cap, d, dtype=dtype, device=device),
              cache_v=rand(g, B, H, cap, d, dtype=dtype, device=device), cache_len=cache_len,
              mem_k=rand(g, B, H, n_mem, d, dtype=dtype, device=device),
              mem_v=rand(g, B, H, n_mem, d, dtype=dtype, device=device),
              mem_valid=(torch.rand(B, n_mem, generator=g) > 0.4).to(device),
              cur_valid=(torch.rand(B, nq, generator=g) > 0.3).to(device))
    return q, k, v, kw


def as_fp32(*args, **kw):
    f = lambda t: t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
    return [f(a) for a in args], {n: f(t) for n, t in kw.items()}


# ---- attention ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_attention_matches_reference(triton_here, dtype):
    q, k, v, kw = segments(torch.Generator().manual_seed(0), dtype=dtype)
    out = segmented_attention(q, k, v, **kw)
    args32, kw32 = as_fp32(q, k, v, **kw)
    ref = segmented_attention_reference(*args32, **kw32)
    assert out.dtype == dtype and out.shape == q.shape
    assert (out.float() - ref).abs().max() < TOL[dtype]


@pytest.mark.parametrize("case", ["no cache, empty memory", "cache_len 0", "memory all invalid",
                                  "nothing visible", "few queries, no masks", "head dim 64"])
def test_attention_edge_cases(triton_here, case):
    g = torch.Generator().manual_seed(1)
    q, k, v, kw = segments(g, d=64 if case == "head dim 64" else D)
    if case == "no cache, empty memory":
        kw.update(cache_k=None, cache_v=None, cache_len=None, mem_valid=None,
                  mem_k=kw["mem_k"][:, :, :0], mem_v=kw["mem_v"][:, :, :0])
    elif case == "cache_len 0":
        kw["cache_len"] = 0
    elif case == "memory all invalid":
        kw["mem_valid"] = torch.zeros_like(kw["mem_valid"])
    elif case == "nothing visible":   # no cache, every memory key invalid, no current segment
        k = v = None
        kw.update(cache_len=0, cur_valid=None, mem_valid=torch.zeros_like(kw["mem_valid"]))
    elif case == "few queries, no masks":
        q = q[:, :, :5]
        kw.update(mem_valid=None, cur_valid=None)
    out = segmented_attention(q, k, v, **kw)
    ref = segmented_attention_reference(q, k, v, **kw)
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < TOL[torch.float32]
    if case == "nothing visible":
        assert not out.any()                                                  # empty rows are zeros


def test_attention_uniform_scores_average_the_visible_values(triton_here):
    """q = 0 makes every visible key equally likely: the output is the mean of the visible values,
    so anything past cache_len or under an invalid memory key must not leak in."""
    g = torch.Generator().manual_seed(2)
    _, k, v, kw = segments(g, nq=20, n_mem=10)
    kw["cache_v"][:, :, kw["cache_len"]:] = 1e6                              # stale cache slots
    kw["mem_v"][:, :, ~kw["mem_valid"][0]] = -1e6                             # padded memory slots
    kw["cur_valid"] = None
    q = torch.zeros(B, H, 20, D, device=DEVICE)
    out = segmented_attention(q, k, v, **kw)
    seen = torch.cat([kw["cache_v"][:, :, :kw["cache_len"]], kw["mem_v"][:, :, kw["mem_valid"][0]], v], dim=2)
    assert torch.allclose(out, seen.mean(dim=2, keepdim=True).expand_as(out), atol=1e-5)


@pytest.mark.parametrize("change, message", [
    (dict(cache_len=41), "cache_len"),
    (dict(mem_valid=torch.ones(B, 5, dtype=torch.bool)), "mem_valid"),
    (dict(mem_v=torch.zeros(B, H, 18, D)), "memory k has 19 tokens but v has 18"),
    (dict(cache_k=torch.zeros(B, H, 40, 16), cache_v=torch.zeros(B, H, 40, 16)), "cache k must be"),
    (dict(mem_k=None), "give both memory k and v"),
])
def test_attention_shape_checks_name_the_argument(change, message):
    q, k, v, kw = segments(torch.Generator().manual_seed(3), device=torch.device("cpu"))
    kw.update(change)
    for fn in (segmented_attention, segmented_attention_reference):
        with pytest.raises(KernelError, match=message):
            fn(q, k, v, **kw)


def test_attention_kernel_limits():
    g = torch.Generator().manual_seed(4)
    q, k, v, kw = segments(g, d=48, device=torch.device("cpu"))
    assert segmented_attention_reference(q, k, v, **kw).shape == q.shape     # torch takes any head dim
    with pytest.raises(KernelError, match="head dim 48"):
        segmented_attention(q, k, v, **kw)
    with pytest.raises(KernelError, match="cur_valid needs the queries"):
        segmented_attention_reference(q[:, :, :3], k, v, **kw)


# ---- dispatch ---------------------------------------------------------------------------------

def test_dispatch_policy(monkeypatch):
    x = torch.zeros(2)
    monkeypatch.delenv("WORLDPLAY_KERNELS", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert dispatch.kernel_mode() == "auto" and dispatch.choose("attention", [x]) == "torch"   # CPU
    with dispatch.use_kernels("triton"):
        with pytest.raises(KernelError, match="TRITON_INTERPRET=1"):
            dispatch.choose("attention", [x])
        with pytest.raises(KernelError, match="forward-only"):
            dispatch.choose("attention", [x.requires_grad_()])
        x.requires_grad_(False)
        with pytest.raises(KernelError, match="head dim"):
            dispatch.choose("attention", [x], unsupported="head dim 48 is not supported")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert dispatch.choose("attention", [x]) == "triton"
    monkeypatch.setenv("WORLDPLAY_KERNELS", "torch")
    assert dispatch.choose("attention", [x]) == "torch"
    monkeypatch.setenv("WORLDPLAY_KERNELS", "fast")
    with pytest.raises(KernelError, match="WORLDPLAY_KERNELS='fast'"):
        dispatch.kernel_mode()


def test_dispatch_auto_falls_back_once_when_a_kernel_breaks(monkeypatch):
    monkeypatch.setattr(dispatch, "_broken", {})
    monkeypatch.setattr(dispatch, "choose", lambda name, tensors, why=None: "torch" if (
        name in dispatch._broken and dispatch.kernel_mode() == "auto") else "triton")

    def broken(*a, **kw):
        raise RuntimeError("out of resources")

    q = torch.randn(1, 2, 5, 16)
    with dispatch.use_kernels("auto"), pytest.warns(RuntimeWarning, match="out of resources"):
        out = dispatch._run("attention", [q], None, broken, segmented_attention_reference, q, q, q)
    assert torch.equal(out, segmented_attention_reference(q, q, q)) and "attention" in dispatch._broken
    with dispatch.use_kernels("triton"), pytest.raises(RuntimeError):      # forced: the error shows
        dispatch._run("attention", [q], None, broken, segmented_attention_reference, q, q, q)


def test_dit_streaming_with_triton_equals_torch(triton_here):
    """The DiT's streaming path (memory pass + clean pass writing the cache, over a rolling ring)
    gives the same v with the Triton attention as with torch's, padded memory tokens included."""
    g = torch.Generator().manual_seed(7)
    dit = DiT(MICRO, seed=1).to(DEVICE)
    Fc, (h, w), M = MICRO.dit.chunk_frames, MICRO.latent_hw, 6
    K = intrinsics(MICRO.vae.width, MICRO.vae.height)
    cond = dit.condition(prompt_ids("desert dusk", MICRO.dit)[None].to(DEVICE))
    outs = {}
    for mode in ("torch", "triton"):
        g.manual_seed(7)
        cache = KVCache.for_model(MICRO, device=DEVICE)
        res = []
        with dispatch.use_kernels(mode), torch.no_grad():
            for c in range(4):                                                 # sink 1 + window 2: rolls
                idx = torch.arange(c * Fc, (c + 1) * Fc)
                c2w = torch.stack([yaw_pitch_pose((0.3 * i, 1.6, 0.5 * i), 0.1 * i, 0.0) for i in idx.tolist()])
                pos = torch.cat([torch.full((B, M, 1), float(c * Fc)), torch.rand(B, M, 2, generator=g) * 3], -1)
                mem = MemoryTokens(rand(g, B, M, MICRO.vae.latent_ch * 4), pos.to(DEVICE),
                                   dit.cameras(c2w[None, :1].expand(B, M, 4, 4).to(DEVICE), K.to(DEVICE)),
                                   valid=torch.tensor([[True] * (M - 2) + [False] * 2], device=DEVICE))
                kv = dit.memory_kv(mem, cond, cache)
                res.append(dit.forward_chunk(rand(g, B, Fc, 16, h, w), torch.rand(B, Fc, generator=g).to(DEVICE),
                                             dit.cameras(c2w[None].to(DEVICE), K.to(DEVICE)), cond,
                                             frame_idx=idx.to(DEVICE), cache=cache, mem_kv=kv,
                                             mem_valid=mem.valid, write=True))
        outs[mode] = torch.cat(res, dim=1)
    assert (outs["triton"] - outs["torch"]).abs().max() < 1e-4


def test_bench_on_cpu_runs_the_interpreter_once(monkeypatch, capsys):
    if not HAVE_TRITON or DEVICE.type == "cuda":
        pytest.skip("the CPU branch of kernels.bench")
    from kernels import bench
    monkeypatch.setenv("TRITON_INTERPRET", "1")                            # main sets it; restored after
    assert bench.main([]) == 0
    out = capsys.readouterr().out
    assert "needs a CUDA GPU" in out and "interpreter: attention" in out
    err = float(out.split("max |triton - torch| = ")[1].split()[0])
    assert err < TOL[torch.float32]


def test_compiles_for_hopper():
    """Every kernel builds through Triton's compiler and ptxas for sm_90, no GPU needed."""
    if not HAVE_TRITON:
        pytest.skip("Triton is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-W", "ignore", "-m", "kernels.aot", "--target", "sm_90"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("ok ") == 5          # one attention per dtype, then the split kernel and its merge


# ---- compiled kernels at the streamer's shapes --------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("d, nq, n_cache, n_mem, cur_valid", [(64, 960, 3840, 240, False),
                                                              (128, 960, 15360, 0, True)])
def test_gpu_attention_at_stream_shapes(d, nq, n_cache, n_mem, cur_valid):
    from kernels.bench import attention_inputs
    q, kw = attention_inputs(4, d, nq, n_cache, n_mem, nq, cur_valid, torch.bfloat16, DEVICE)
    out = segmented_attention(q, **kw)
    ref = segmented_attention_reference(*as_fp32(q)[0], **as_fp32(**kw)[1])
    assert (out.float() - ref).abs().max() < TOL[torch.bfloat16]
