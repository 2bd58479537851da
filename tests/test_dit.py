"""The DiT: streaming with the KV cache equals one masked pass over the whole sequence; the ring
buffer and sink; memory tokens; camera-relative attention; the switchable memory paths; FLOPs."""

import pytest
import torch
from micro_model import MICRO, micro_config
from torch.utils.flop_counter import FlopCounterMode

from worldplay.camera import intrinsics, so3_exp, yaw_pitch_pose
from worldplay.errors import WorldplayError
from worldplay.model.dit import DiT, MemoryTokens, full_mask
from worldplay.model.embed import patchify, prompt_ids, token_features, unpatchify
from worldplay.model.kv_cache import KVCache
from worldplay.model.prope import ProjCams
from worldplay.model.vae import RGBDVAE
from worldplay.stream.flops import dit_pass_flops, vae_decode_flops

F64_TOL = 1e-10   # float64: streaming and the full pass differ only by summation order
F32_TOL = 1e-4    # float32, outputs of order 1
B, C = 1, 16


def setup(cfg=MICRO, chunks=6, dtype=torch.float64, memory=True, seed=0):
    """Random latents, per-frame t, an orbiting camera, memory tokens and canvas for `chunks` chunks."""
    g = torch.Generator().manual_seed(seed)
    dit = DiT(cfg, seed=1).to(dtype)
    Fc, (h, w) = cfg.dit.chunk_frames, cfg.latent_hw
    T = chunks * Fc
    x = torch.randn(B, T, C, h, w, generator=g, dtype=dtype)
    t = torch.rand(B, T, generator=g, dtype=dtype)
    K = intrinsics(cfg.vae.width, cfg.vae.height, dtype=dtype)
    c2w = torch.stack([yaw_pitch_pose((0.3 * i, 1.6, 0.5 * i), 0.1 * i, 0.03 * i, dtype=dtype) for i in range(T)])
    mems, M = [], 5
    for c in range(chunks):
        if not memory or c == 0:
            mems.append(None)
            continue
        src = torch.stack([yaw_pitch_pose((-0.4 * j, 1.6, 0.2 * j), -0.3 * j, 0.0, dtype=dtype) for j in range(M)])
        tgt = torch.randint(0, Fc, (M,), generator=g) + c * Fc
        yx = torch.rand(B, M, 2, generator=g, dtype=dtype) * 4 - 0.5        # fractional (Warped RoPE)
        pos = torch.cat([tgt.to(dtype).expand(B, M)[..., None], yx], dim=-1)
        mems.append(MemoryTokens(torch.randn(B, M, cfg.vae.latent_ch * 4, generator=g, dtype=dtype), pos,
                                 dit.cameras(src[None], K)))
    canvas = torch.randn(B, T, C + 1, h, w, generator=g, dtype=dtype) if cfg.dit.use_warped_latent else None
    return dict(dit=dit, x=x, t=t, c2w=c2w[None], K=K, mems=mems, canvas=canvas,
                prompt=prompt_ids("desert dusk pillars calm", cfg.dit)[None])


def stream(s, window_chunks, sink_chunks=1, c2w=None):
    """The streaming path chunk by chunk (each chunk's pass writes its K/V); outputs concatenated."""
    dit, cfg = s["dit"], s["dit"].cfg
    Fc, n = cfg.dit.chunk_frames, s["x"].shape[1] // cfg.dit.chunk_frames
    cache = KVCache(cfg.dit.depth, B, cfg.dit.heads, cfg.dit.head_dim, cfg.tokens_per_chunk, sink_chunks,
                    window_chunks, dtype=s["x"].dtype)
    cams = dit.cameras(s["c2w"] if c2w is None else c2w, s["K"])
    cond = dit.condition(s["prompt"])
    outs = []
    for c in range(n):
        sl = slice(c * Fc, (c + 1) * Fc)
        kv = dit.memory_kv(s["mems"][c], cond, cache)
        canvas = None if s["canvas"] is None else s["canvas"][:, sl]
        outs.append(dit.forward_chunk(s["x"][:, sl], s["t"][:, sl], None if cams is None else cams[:, sl], cond,
                                      frame_idx=torch.arange(c * Fc, (c + 1) * Fc), canvas=canvas, cache=cache,
                                      mem_kv=kv, write=True))
    return torch.cat(outs, dim=1), cache


def full(s, window_chunks=None, sink_chunks=None, c2w=None, mems="same"):
    dit = s["dit"]
    return dit.forward_full(s["x"], s["t"], dit.cameras(s["c2w"] if c2w is None else c2w, s["K"]), s["prompt"],
                            canvas=s["canvas"], memory=s["mems"] if mems == "same" else mems,
                            window_chunks=window_chunks, sink_chunks=sink_chunks)


@torch.no_grad()
def test_streaming_with_kv_cache_equals_one_block_causal_pass():
    s = setup(chunks=5)
    ref = full(s)                                   # block-causal: every past chunk visible
    out, cache = stream(s, window_chunks=5)         # cache large enough to hold them all
    assert cache.chunks_written == 5
    assert ref.shape == (B, 10, C, *MICRO.latent_hw)
    assert (out - ref).abs().max() < F64_TOL, "tolerance 1e-10 in float64"


@torch.no_grad()
def test_streaming_equals_full_pass_in_float32_within_1e4():
    s = setup(chunks=4, dtype=torch.float32)
    out, _ = stream(s, window_chunks=4)
    assert (out - full(s)).abs().max() < F32_TOL


@torch.no_grad()
def test_ring_buffer_many_rollovers_keeps_the_sink():
    s = setup(chunks=9)                             # sink 1 + window 2: the ring rolls over 6 times
    out, cache = stream(s, window_chunks=2, sink_chunks=1)
    assert cache.chunks_written == 9 and cache.valid_len == 3 * MICRO.tokens_per_chunk
    assert (out - full(s, window_chunks=2, sink_chunks=1)).abs().max() < F64_TOL
    # the sink matters: without it, the late chunks come out differently
    no_sink = full(s, window_chunks=2, sink_chunks=0)
    assert (out[:, -2:] - no_sink[:, -2:]).abs().max() > 1e-3
    # and the window is really 2 chunks: block-causal over everything differs too
    assert (out[:, -2:] - full(s)[:, -2:]).abs().max() > 1e-3


@torch.no_grad()
def test_denoising_steps_do_not_touch_the_cache():
    s = setup(chunks=3)
    dit, cfg = s["dit"], MICRO
    _, cache = stream(s, window_chunks=3)
    k_before, n_before = cache.k.clone(), cache.chunks_written
    cams = dit.cameras(s["c2w"][:, :2], s["K"])
    cond = dit.condition(s["prompt"])
    x = torch.randn(B, 2, C, *cfg.latent_hw, dtype=torch.float64)
    v1 = dit.forward_chunk(x, torch.full((B, 2), 0.7, dtype=torch.float64), cams, cond,
                           frame_idx=torch.arange(6, 8), cache=cache)
    v2 = dit.forward_chunk(x, torch.full((B, 2), 0.7, dtype=torch.float64), cams, cond,
                           frame_idx=torch.arange(6, 8), cache=cache)
    assert torch.equal(v1, v2) and torch.equal(cache.k, k_before) and cache.chunks_written == n_before


def test_memory_tokens_never_see_their_chunks_noisy_tokens():
    # two chunks of 2 frame tokens each, then 1 memory token per chunk
    chunk_of = torch.tensor([0, 0, 1, 1, 0, 1])
    is_mem = torch.tensor([False] * 4 + [True] * 2)
    m = full_mask(chunk_of, is_mem, sink_chunks=1, window_chunks=None)
    assert not m[5, 2:4].any() and m[5, :2].all()          # chunk 1's memory: past chunk yes, own frames no
    assert m[2:4, 5].all() and not m[0:2, 5].any()          # frames see their own chunk's memory only
    assert not m[0:2, 2:4].any()                            # causal between chunks


@torch.no_grad()
def test_memory_tokens_hidden_states_ignore_the_noisy_tokens():
    s = setup(chunks=3)
    seen = []
    hook = s["dit"].blocks[-1].register_forward_hook(lambda mod, args, out: seen.append(out[1].clone()))
    v1 = full(s)
    s2 = dict(s, x=s["x"].clone(), t=s["t"].clone())
    s2["x"][:, -2:] += 1.0                                   # another noisy last chunk, at another t
    s2["t"][:, -2:] = 0.9
    v2 = full(s2)
    hook.remove()
    assert seen[0].shape == (B, 1, 10, MICRO.dit.width)     # memory tokens of chunks 1 and 2
    assert torch.equal(seen[0], seen[1])                     # memory never attends to noisy tokens
    assert torch.equal(v1[:, :4], v2[:, :4]) and not torch.allclose(v1[:, 4:], v2[:, 4:])


@torch.no_grad()
def test_prope_attention_is_camera_relative():
    s = setup(chunks=3)
    G = torch.eye(4, dtype=torch.float64)                    # one rigid motion applied to every camera
    G[:3, :3] = so3_exp(torch.tensor([0.3, -1.1, 0.4], dtype=torch.float64))
    G[:3, 3] = torch.tensor([5.0, -2.0, 7.5], dtype=torch.float64)
    moved = [None if m is None else MemoryTokens(m.feats, m.pos, s["dit"].cameras(
        G @ m.cams.P_inv @ torch.linalg.inv(_lifted_k(s)), s["K"])) for m in s["mems"]]
    ref = full(s)
    assert (full(s, c2w=G @ s["c2w"], mems=moved) - ref).abs().max() < 1e-8
    other = s["c2w"].clone()
    other[:, 3, :3, 3] += 1.0                                # one frame's camera moves relative to the rest
    assert (full(s, c2w=other) - ref).abs().max() > 1e-3


def _lifted_k(s):
    """P_inv = c2w @ lift(K_norm)^-1, so c2w = P_inv @ lift(K_norm): rebuild memory c2w from cams."""
    from worldplay.model.prope import lift, normalize_intrinsics
    from worldplay.model.vae import latent_intrinsics
    h, w = MICRO.latent_hw
    Kn = normalize_intrinsics(latent_intrinsics(s["K"], MICRO.vae), float(w), float(h))
    return torch.linalg.inv(lift(Kn))


@torch.no_grad()
def test_memory_paths_switch_on_and_off():
    s = setup(chunks=3)
    no_mem = full(s, mems=None)
    assert (full(s) - no_mem).abs().max() > 1e-3             # memory tokens change the output
    off = setup(cfg=micro_config(use_memory_rope=False), chunks=3)
    assert torch.equal(full(off), full(off, mems=None))      # ...unless that path is off
    lat_off = setup(cfg=micro_config(use_warped_latent=False), chunks=2)
    assert lat_off["dit"].patch_embed.proj.in_features == C * 4
    with pytest.raises(ValueError, match="use_warped_latent"):
        lat_off["dit"].forward_full(lat_off["x"], lat_off["t"], None, lat_off["prompt"],
                                    canvas=torch.zeros(B, 4, C + 1, *MICRO.latent_hw, dtype=torch.float64))
    no_prope = setup(cfg=micro_config(use_prope=False), chunks=2)
    assert no_prope["dit"].cameras(no_prope["c2w"], no_prope["K"]) is None
    other = no_prope["c2w"].clone()
    other[:, 1, :3, 3] += 1.0
    assert torch.equal(full(no_prope), full(no_prope, c2w=other))   # no PRoPE: cameras unused


@torch.no_grad()
def test_streaming_equals_full_pass_with_every_ablation():
    for flags in ({"use_memory_rope": False}, {"use_warped_latent": False}, {"use_prope": False}):
        s = setup(cfg=micro_config(**flags), chunks=3)
        out, _ = stream(s, window_chunks=3)
        assert (out - full(s)).abs().max() < F64_TOL, flags


def test_patches_round_trip_and_match_memory_features():
    z = torch.randn(2, 3, C, 6, 10)
    tok = patchify(z, 2)
    assert tok.shape == (2, 3, 15, 64)
    assert torch.equal(unpatchify(tok, 2, 3, 5), z)
    feats = token_features(z[0, 0], 2)                          # what memory stores per frame
    assert feats.shape == (3, 5, 64) and torch.equal(feats.reshape(15, 64), tok[0, 0])
    canvas = feats.permute(2, 0, 1)                             # (D, hp, wp): a token-grid canvas
    tokens = canvas.reshape(64, 15).T[None, None]               # (1, 1, hp*wp, D)
    assert torch.equal(unpatchify(tokens, 2, 3, 5)[0, 0], z[0, 0])


def test_prompt_words_and_padding():
    ids = prompt_ids("Desert dusk pillars", MICRO.dit)
    assert ids.shape == (MICRO.dit.prompt_len,) and int((ids != 0).sum()) == 3
    with pytest.raises(WorldplayError, match="blorp"):
        prompt_ids("desert blorp", MICRO.dit)
    dit = DiT(MICRO, seed=1)
    a = dit.condition(ids[None])
    b = dit.condition(torch.cat([ids[:3], ids[:3].flip(0), torch.zeros(2, dtype=torch.long)])[None])
    assert torch.allclose(a, b, atol=1e-6)                     # mean over words: order and padding ignored


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = DiT(MICRO, seed=3), DiT(MICRO, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    z = DiT(MICRO, seed=3)
    z.reset_parameters(3, zero_gates=True)
    assert not z.final.linear.weight.any() and not z.blocks[0].ada.weight.any()


@torch.no_grad()
def test_analytic_flops_match_a_flop_counter():
    cfg = micro_config(use_prope=False)                       # no 4x4 einsums (not counted analytically)
    s = setup(cfg=cfg, chunks=1, dtype=torch.float32, memory=False)
    dit = s["dit"]
    counter = FlopCounterMode(display=False)
    with counter:
        dit.forward_chunk(s["x"], s["t"], None, dit.condition(s["prompt"]), frame_idx=torch.arange(2),
                          canvas=s["canvas"])
    N, d = cfg.tokens_per_chunk, cfg.dit
    # The counter also sees the prompt projection (outside the pass), and it does not see CPU
    # SDPA: check QK^T and AV against explicit matmuls of the same shapes instead.
    prompt = 2 * d.width * d.width
    attention = d.depth * 2 * 2 * N * N * d.width
    assert counter.get_total_flops() == pytest.approx(dit_pass_flops(cfg, N, N, 2, True) - attention + prompt,
                                                      rel=1e-9)
    q = torch.zeros(B, d.heads, N, d.head_dim)
    counter = FlopCounterMode(display=False)
    with counter:
        torch.softmax(q @ q.transpose(-1, -2), dim=-1) @ q
    assert counter.get_total_flops() * d.depth == attention
    vae = RGBDVAE(cfg.vae)
    counter = FlopCounterMode(display=False)
    with counter:
        vae.decode_x(torch.zeros(1, C, *cfg.latent_hw))
    assert counter.get_total_flops() == pytest.approx(vae_decode_flops(cfg.vae), rel=1e-9)


@torch.no_grad()
def test_canvas_gate_copies_the_canvas_where_memory_is_sure_and_nothing_elsewhere():
    from worldplay.model.dit import GATE_T_FLOOR, with_canvas_gate
    from worldplay.stream.sampler import x0_from_v

    dit = DiT(MICRO, seed=1).double()
    D = dit.final.linear.weight.shape[0] - dit.gate_dim
    x = torch.randn(1, 2, C, *MICRO.latent_hw, dtype=torch.float64)
    t = torch.tensor([[0.7, 0.1]], dtype=torch.float64)                     # a sampler step, a nearly clean frame
    canvas = torch.randn(1, 2, C + 1, *MICRO.latent_hw, dtype=torch.float64)
    canvas[:, :, C] = 1.0
    cond = dit.condition(torch.zeros(1, 4, dtype=torch.long))
    run = lambda cv: dit.forward_chunk(x, t, None, cond, frame_idx=torch.arange(2), canvas=cv)   # noqa: E731
    empty = canvas.clone()
    empty[:, :, C] = 0.0                                                    # memory covers nothing
    dit.final.linear.weight[D:] = 0.0
    dit.final.linear.bias[D:] = 60.0                                        # sigmoid = 1: trust memory
    sure, none = run(canvas), run(empty)
    assert torch.allclose(x0_from_v(x[:, 0], sure[:, 0], 0.7), canvas[:, 0, :C], atol=1e-9)
    dit.final.linear.bias[D:] = -60.0                                       # sigmoid = 0: v is the net's
    assert torch.allclose(run(empty), none, atol=1e-12)                     # no coverage: no say
    net = run(canvas)
    x0_net = x0_from_v(x[:, 1], net[:, 1], 0.1)
    damped = x0_net + 0.1 / GATE_T_FLOOR * (canvas[:, 1, :C] - x0_net)     # below the floor: a part of it
    assert torch.allclose(x0_from_v(x[:, 1], sure[:, 1], 0.1), damped, atol=1e-9)
    # weights from before the gate load with zero gate rows (g = coverage / 2)
    old = {k: v for k, v in DiT(micro_config(canvas_gate=False), seed=2).state_dict().items()}
    grown = with_canvas_gate(old, dit)
    dit.load_state_dict(grown)
    assert not dit.final.linear.weight[D:].any() and not dit.final.linear.bias[D:].any()
    assert torch.equal(dit.final.linear.weight[:D], old["final.linear.weight"].double())


@torch.no_grad()
def test_padded_rows_with_their_own_frame_indices_match_each_row_alone():
    """Training batches clips with and without a sink: rows carry their own RoPE frame indices
    (B, T), and a shorter clip's padding chunk in front is invisible to its real frames."""
    s = setup(chunks=3, memory=False)
    dit, Fc = s["dit"], MICRO.dit.chunk_frames
    cams = dit.cameras(s["c2w"], s["K"])
    far = torch.cat([torch.arange(-300, -300 + Fc), torch.arange(Fc, 3 * Fc)])   # a sink far back, then frames
    near = torch.arange(3 * Fc) - Fc                                            # padding chunk, then 0, 1, ...
    x2, t2, canvas2 = (torch.cat([s[k], s[k]]) for k in ("x", "t", "canvas"))
    valid = torch.ones(2, 3 * Fc, dtype=torch.bool)
    valid[1, :Fc] = False
    both = dit.forward_full(x2, t2, ProjCams.cat([cams, cams], 0), s["prompt"].expand(2, -1),
                            frame_idx=torch.stack([far, near]), canvas=canvas2, frame_valid=valid)
    alone = dit.forward_full(s["x"], s["t"], cams, s["prompt"], frame_idx=far, canvas=s["canvas"])
    assert (both[0] - alone[0]).abs().max() < F64_TOL
    short = dit.forward_full(s["x"][:, Fc:], s["t"][:, Fc:], cams[:, Fc:], s["prompt"], frame_idx=near[Fc:],
                             canvas=s["canvas"][:, Fc:])
    assert (both[1, Fc:] - short[0]).abs().max() < F64_TOL
    moved = dit.forward_full(s["x"], s["t"], cams, s["prompt"], frame_idx=near, canvas=s["canvas"])
    assert (moved[0, Fc:] - short[0]).abs().max() > 1e-3      # without the padding mask it would differ
