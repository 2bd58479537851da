"""The causal video DiT: latent patches + cameras + memory tokens -> velocity v = eps - x0.

One network, two ways to run it (they agree to float precision; tests/test_dit.py checks it):

- `forward_full`: a whole sequence of chunks in one pass with an explicit block mask (training,
  the teacher, and the reference for the streaming path). Chunk c sees the sink chunks, the
  last `window_chunks` chunks before it (all of them when None: plain block-causal), itself
  (bidirectionally), and its own memory tokens.
- The streaming path used by the Mosaic Forcing streamer: `memory_kv` runs the chunk's memory
  tokens through every layer once (they see only the KV cache and each other, never the noisy
  tokens, so their K/V are the same for all S denoising steps), then `forward_chunk` attends the
  current chunk over [KV cache | memory K/V | chunk]; with write=True (the clean pass) it writes
  the chunk's encoded K/V into the cache.

Tokens: patch 2 over the latent (tiny: 24x40 latent -> 12x20 = 240 tokens per frame). Input
channels per latent cell: the noisy latent (16), plus, with use_warped_latent, the memory canvas
splatted into this view (16) and its validity mask (1). Conditioning: per-frame timestep plus the
pooled prompt words, through adaLN. TI2V: the first frame's clean latent is given with t = 0, so
after the first chunk's clean pass it sits in the sink as clean tokens.

Positions and cameras per token: RoPE at (t = frame index, y, x = token grid cell); PRoPE with
the frame's camera (latent intrinsics, normalised). Memory tokens (one stored latent patch each,
latent_ch x patch x patch = 64 features for tiny) use Warped RoPE - their reprojected fractional
(y, x) in the target view at the target's frame index - and PRoPE with the camera that saw them.
Flags: use_memory_rope (memory tokens in attention), use_warped_latent (canvas channels),
use_prope (camera transforms; off = no PRoPE, those head dims pass through untouched),
canvas_gate (the head's per-cell gate that blends the canvas into x0, see `_head`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kernels.dispatch import attention as kernel_attention
from worldplay.model.blocks import DiTBlock, FinalLayer
from worldplay.model.embed import PatchEmbed, PromptEmbed, TimestepEmbed, unpatchify
from worldplay.model.encodings import decode_o, encode_qkv
from worldplay.model.kv_cache import KVCache
from worldplay.model.presets import ModelConfig
from worldplay.model.prope import ProjCams, projective_cameras
from worldplay.model.rope import HeadLayout
from worldplay.model.vae import latent_intrinsics

ADA_INIT_SCALE = 0.1   # random-init adaLN weights are scaled down: modulation starts near identity
EMBED_INIT_STD = 0.02  # word embeddings, as in GPT-style inits
# The gate's pull on v is its x0 change over t. Below this t it is damped as t / GATE_T_FLOOR, so
# a wrong canvas cannot blow up v (or the loss) as t -> 0, where x is nearly x0 anyway and there
# is nothing left to copy; every sampler step of up to 8 steps (t >= 0.3 at shift 3) copies fully.
GATE_T_FLOOR = 0.25


@dataclass
class MemoryTokens:
    """Retrieved memory patches as DiT inputs (see stream/streamer.py for building them)."""
    feats: Tensor                  # (B, M, D) clean latent patches, D = latent_ch * patch^2
    pos: Tensor                    # (B, M, 3) (t, y, x): target frame index, warped (y, x)
    cams: ProjCams | None          # (B, M) PRoPE cameras of the views that saw each patch
    valid: Tensor | None = None    # (B, M) bool; False rows are padding (masked as keys)

    def __len__(self) -> int:
        return int(self.feats.shape[1])


KV = list[tuple[Tensor, Tensor]]   # per layer (k, v), each (B, H, M, Dh), PRoPE/RoPE-encoded


class DiT(nn.Module):
    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__()
        d = cfg.dit
        self.cfg, self.dcfg = cfg, d
        self.latent_ch, self.patch = cfg.vae.latent_ch, d.patch
        self.hp, self.wp = cfg.tokens_hw
        self.tpf = self.hp * self.wp                                  # tokens per frame
        self.layout = HeadLayout.split(d.head_dim, d.prope_dims)
        token_dim = self.latent_ch * d.patch * d.patch
        in_ch = self.latent_ch + (self.latent_ch + 1 if d.use_warped_latent else 0)
        self.gated = d.use_warped_latent and d.canvas_gate
        self.gate_dim = d.patch * d.patch if self.gated else 0                 # one gate per latent cell
        with torch.random.fork_rng(devices=[]):  # layer constructors draw from the global RNG
            self.patch_embed = PatchEmbed(in_ch, d.patch, d.width)
            self.mem_embed = nn.Linear(token_dim, d.width)
            self.time_embed = TimestepEmbed(d.width)
            self.prompt_embed = PromptEmbed(d.vocab_size, d.width)
            self.blocks = nn.ModuleList(DiTBlock(d) for _ in range(d.depth))
            self.final = FinalLayer(d.width, token_dim + self.gate_dim)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int, zero_gates: bool = False) -> None:
        """Deterministic init from `seed`, leaving the global RNG alone. zero_gates: adaLN and
        the output layer start at zero (DiT's identity init, for training from scratch); the
        default keeps them small but random so a random-weights model exercises every path."""
        gen = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(m.in_features))
                m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * EMBED_INIT_STD)
                m.weight[m.padding_idx].zero_()
            elif isinstance(m, nn.RMSNorm):
                m.weight.fill_(1.0)
        for ada in [b.ada for b in self.blocks] + [self.final.ada]:
            ada.weight.mul_(0.0 if zero_gates else ADA_INIT_SCALE)
        if zero_gates:
            self.final.linear.weight.zero_()

    # ---- inputs ---------------------------------------------------------------------------

    def cameras(self, c2w: Tensor, K: Tensor) -> ProjCams | None:
        """PRoPE cameras for poses c2w (..., 4, 4) seen with full-res pixel K (3, 3) or (..., 3, 3).
        None when use_prope is off."""
        if not self.dcfg.use_prope:
            return None
        h, w = self.cfg.latent_hw
        K_lat = latent_intrinsics(K.to(c2w.dtype), self.cfg.vae)             # latent-grid pixels
        return projective_cameras(c2w, K_lat, float(w), float(h))

    def frame_positions(self, frame_idx: Tensor) -> Tensor:
        """(T,) frame indices -> (T * tokens_per_frame, 3) float64 (t, y, x), row-major cells."""
        y, x = torch.meshgrid(torch.arange(self.hp, dtype=torch.float64, device=frame_idx.device),
                              torch.arange(self.wp, dtype=torch.float64, device=frame_idx.device), indexing="ij")
        yx = torch.stack([y, x], dim=-1).reshape(1, self.tpf, 2)                 # (1, tpf, 2)
        t = frame_idx.to(torch.float64).reshape(-1, 1, 1).expand(-1, self.tpf, 1)  # (T, tpf, 1)
        return torch.cat([t, yx.expand(t.shape[0], -1, -1)], dim=-1).reshape(-1, 3)  # (T*tpf, 3)

    def condition(self, prompt: Tensor) -> Tensor:
        """Prompt word ids (B, L) -> pooled conditioning (B, W); constant over a session."""
        return self.prompt_embed(prompt)

    def _frame_cond(self, t: Tensor, cond: Tensor) -> Tensor:
        return self.time_embed(t) + cond[:, None]                                 # (B, T, W)

    def _memory_cond(self, cond: Tensor) -> Tensor:
        clean = torch.zeros(cond.shape[0], 1, dtype=cond.dtype, device=cond.device)
        return self.time_embed(clean) + cond[:, None]                             # (B, 1, W)

    def _embed_frames(self, x: Tensor, canvas: Tensor | None) -> Tensor:
        """x (B, T, C, h, w) [+ canvas (B, T, C + 1, h, w)] -> (B, T, tpf, W)."""
        if self.dcfg.use_warped_latent:
            if canvas is None:   # nothing remembered: an empty canvas with mask 0 everywhere
                canvas = x.new_zeros(*x.shape[:2], self.latent_ch + 1, *x.shape[3:])
            x = torch.cat([x, canvas.to(x.dtype)], dim=2)                         # (B, T, 2C + 1, h, w)
        elif canvas is not None:
            raise ValueError("this DiT has use_warped_latent off; do not pass a memory canvas")
        return self.patch_embed(x)

    def _embed_memory(self, mem: MemoryTokens) -> Tensor:
        return self.mem_embed(mem.feats.to(self.mem_embed.weight.dtype))[:, None]  # (B, 1, M, W)

    def _frame_cams(self, cams: ProjCams | None) -> ProjCams | None:
        """Per-frame cameras (B, T) -> per-token (B, T * tpf)."""
        if cams is None or not self.dcfg.use_prope:
            return None
        return ProjCams(cams.P.repeat_interleave(self.tpf, dim=1), cams.P_inv.repeat_interleave(self.tpf, dim=1))

    def _head(self, h: Tensor, c: Tensor, x: Tensor, t: Tensor, canvas: Tensor | None) -> Tensor:
        """Frame tokens h (B, T, tpf, W) -> v (B, T, C, h, w) for noisy latents x (B, T, C, h, w)
        at t (B, T). With the canvas gate, x0 = x0_net + g * (canvas - x0_net), g = sigmoid(gate)
        times the cell's memory coverage (times t / GATE_T_FLOOR below that floor), and v is the
        velocity of that x0."""
        out = self.final(h, c)                                                    # (B, T, tpf, D + gate_dim)
        v = unpatchify(out[..., :out.shape[-1] - self.gate_dim], self.patch, self.hp, self.wp)
        if not self.gated or canvas is None:
            return v
        C, wd = self.latent_ch, torch.promote_types(v.dtype, torch.float32)     # bf16 runs blend in float32
        gate = unpatchify(out[..., -self.gate_dim:], self.patch, self.hp, self.wp)   # (B, T, 1, h, w)
        g = torch.sigmoid(gate.to(wd)) * canvas[:, :, C:].to(wd)                   # (B, T, 1, h, w)
        tt = t.to(wd)[:, :, None, None, None]                                     # (B, T, 1, 1, 1)
        x0_net = x.to(wd) - tt * v.to(wd)
        # v = (x - x0) / t = v_net + g * (x0_net - canvas) / t, damped below GATE_T_FLOOR (clean: none)
        pull = g * (x0_net - canvas[:, :, :C].to(wd)) / tt.clamp_min(GATE_T_FLOOR)
        return (v.to(wd) + pull).to(v.dtype)

    def _uses_memory(self, mem: MemoryTokens | None) -> bool:
        return mem is not None and len(mem) > 0 and self.dcfg.use_memory_rope

    # ---- full sequence ----------------------------------------------------------------------

    def forward_full(self, x: Tensor, t: Tensor, cams: ProjCams | None, prompt: Tensor, *,
                     frame_idx: Tensor | None = None, canvas: Tensor | None = None,
                     memory: list[MemoryTokens | None] | None = None,
                     window_chunks: int | None = None, sink_chunks: int | None = None,
                     frame_valid: Tensor | None = None) -> Tensor:
        """v for a whole sequence. x (B, T, C, h, w), T a multiple of chunk_frames; t (B, T);
        cams per frame (B, T) or None; prompt (B, L) ids; memory: one entry per chunk;
        frame_idx (T,) or, per batch row, (B, T); frame_valid (B, T) bool: frames no token may
        attend to (a batch's padding). window_chunks None: block-causal over all past chunks; an
        int: the streamer's sliding mask [sink | last window_chunks chunks | current]."""
        B, T = x.shape[:2]
        Fc = self.dcfg.chunk_frames
        if T % Fc:
            raise ValueError(f"forward_full: {T} frames is not a whole number of {Fc}-frame chunks")
        frame_idx = torch.arange(T, device=x.device) if frame_idx is None else frame_idx
        cond = self.condition(prompt)
        groups, conds = [self._embed_frames(x, canvas)], [self._frame_cond(t, cond)]
        if frame_idx.dim() == 1:
            pos = [self.frame_positions(frame_idx).expand(B, -1, -1)]             # (B, T*tpf, 3)
        else:
            pos = [torch.stack([self.frame_positions(f) for f in frame_idx])]     # (B, T*tpf, 3)
        fcams = self._frame_cams(cams)
        cam_parts = [fcams] if fcams is not None else []
        chunk_of = [torch.arange(T * self.tpf, device=x.device) // (Fc * self.tpf)]
        is_mem = [torch.zeros(T * self.tpf, dtype=torch.bool, device=x.device)]
        valid = [torch.ones(B, T * self.tpf, dtype=torch.bool, device=x.device) if frame_valid is None
                 else frame_valid.to(x.device).repeat_interleave(self.tpf, dim=1)]
        mems = [(c, m) for c, m in enumerate(memory or []) if self._uses_memory(m)]
        if mems:
            mem = _cat_memory([m for _, m in mems])
            groups.append(self._embed_memory(mem))
            conds.append(self._memory_cond(cond))
            pos.append(mem.pos.to(torch.float64))
            if fcams is not None:
                cam_parts.append(_need_cams(mem))
            chunk_of.append(torch.cat([torch.full((len(m),), c, device=x.device) for c, m in mems]))
            is_mem.append(torch.ones(len(mem), dtype=torch.bool, device=x.device))
            valid.append(mem.valid if mem.valid is not None else
                         torch.ones(B, len(mem), dtype=torch.bool, device=x.device))
        sink = self.dcfg.sink_chunks if sink_chunks is None else sink_chunks
        mask = full_mask(torch.cat(chunk_of), torch.cat(is_mem), sink, window_chunks)   # (N, N)
        n = mask.shape[0]
        mask = (mask[None] & torch.cat(valid, 1)[:, None, :]) | torch.eye(n, dtype=torch.bool, device=x.device)
        all_cams = ProjCams.cat(cam_parts) if cam_parts else None
        all_pos = torch.cat(pos, dim=1)                                           # (B, N, 3)

        def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            qe, ke, ve = encode_qkv(q, k, v, self.layout, all_cams, all_pos)
            o = F.scaled_dot_product_attention(qe, ke, ve, attn_mask=mask[:, None])  # (B, H, N, Dh)
            return decode_o(o, self.layout, all_cams)

        for blk in self.blocks:
            groups = blk(groups, conds, attend)
        return self._head(groups[0], conds[0], x, t, canvas)

    # ---- streaming ----------------------------------------------------------------------------

    def memory_kv(self, mem: MemoryTokens | None, cond: Tensor, cache: KVCache | None) -> KV | None:
        """Per-layer encoded K/V of the chunk's memory tokens, attending over [cache | memory].
        Computed once per chunk and reused by every denoising step and the clean pass."""
        if not self._uses_memory(mem):
            return None
        cams = _need_cams(mem) if self.dcfg.use_prope else None
        groups, conds = [self._embed_memory(mem)], [self._memory_cond(cond)]
        pos = mem.pos.to(torch.float64)                                           # (B, M, 3)
        out: KV = []
        for layer, blk in enumerate(self.blocks):
            groups = blk(groups, conds, self._cached_attend(layer, cache, None, cams, pos, mem.valid,
                                                            segment="memory", sink_kv=out))
        return out

    def forward_chunk(self, x: Tensor, t: Tensor, cams: ProjCams | None, cond: Tensor, *,
                      frame_idx: Tensor, canvas: Tensor | None = None, cache: KVCache | None = None,
                      mem_kv: KV | None = None, mem_valid: Tensor | None = None,
                      write: bool = False, output: bool = True) -> Tensor | None:
        """v for one chunk x (B, F, C, h, w) at t (B, F), over [cache | memory | chunk].
        write=True (the clean pass) writes this chunk's K/V into `cache` and commits it;
        output=False (a clean pass whose v nobody reads) stops at the last layer's K/V: its
        attention, MLP and the head would only make the unused v (~1/7 of the pass)."""
        if write and cache is None:
            raise ValueError("forward_chunk(write=True) needs a KVCache")
        if not (write or output):
            raise ValueError("forward_chunk(write=False, output=False) would compute nothing")
        groups, conds = [self._embed_frames(x, canvas)], [self._frame_cond(t, cond)]
        pos = self.frame_positions(frame_idx)                                     # (F*tpf, 3)
        fcams = self._frame_cams(cams)
        last = len(self.blocks) - 1
        for layer, blk in enumerate(self.blocks):
            if layer == last and not output:
                q, k, v = blk.qkv_heads(groups, blk.modulations(conds))           # (B, H, N, Dh) each
                _, ke, ve = encode_qkv(q, k, v, self.layout, fcams, pos)
                cache.write_chunk(layer, ke, ve)
                break
            attend = self._cached_attend(layer, cache, mem_kv, fcams, pos, mem_valid, segment="current",
                                         write=write)
            groups = blk(groups, conds, attend)
        if write:
            cache.commit(pos.float())
        return self._head(groups[0], conds[0], x, t, canvas) if output else None

    def _cached_attend(self, layer: int, cache: KVCache | None, mem_kv: KV | None, cams, pos: Tensor,
                       mem_valid: Tensor | None, *, segment: str, write: bool = False,
                       sink_kv: KV | None = None):
        """The attend callback of one layer of the streaming path (see module docstring)."""

        def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            view = cache.view(layer) if cache is not None else None   # read before write_chunk
            ck, cv = (view.k, view.v) if view is not None and view.valid_len else (None, None)
            qe, ke, ve = encode_qkv(q, k, v, self.layout, cams, pos)   # RoPE angles once for q and k
            mk, mv = mem_kv[layer] if mem_kv is not None else (None, None)
            # Every fresh query may see every key ([cache | memory | chunk] for the chunk, [cache |
            # memory] for memory tokens, which are then the fresh ones) except padded memory
            # tokens; a padded fresh token still sees itself, so no row is empty. The segments are
            # read in place (a fused Triton kernel on CUDA, SDPA over their concatenation elsewhere).
            o = kernel_attention(qe, ke, ve, cache_k=ck, cache_v=cv, mem_k=mk, mem_v=mv,
                                 mem_valid=mem_valid if segment == "current" else None,
                                 cur_valid=mem_valid if segment == "memory" else None)
            if write:
                cache.write_chunk(layer, ke, ve)
            if sink_kv is not None:
                sink_kv.append((ke, ve))
            return decode_o(o, self.layout, cams)

        return attend


def full_mask(chunk_of: Tensor, is_mem: Tensor, sink_chunks: int, window_chunks: int | None) -> Tensor:
    """(N, N) bool, True = query row may attend to key column, for tokens tagged with their
    chunk and whether they are memory tokens (memory tokens never see their chunk's frames)."""
    qa, kb = chunk_of[:, None], chunk_of[None, :]
    past = kb < qa
    if window_chunks is not None:
        past &= (kb < sink_chunks) | (kb >= qa - window_chunks)
    same = kb == qa
    qm, km = is_mem[:, None], is_mem[None, :]
    return (~qm & ~km & (same | past)) | (~qm & km & same) | (qm & ~km & past) | (qm & km & same)


def _need_cams(mem: MemoryTokens) -> ProjCams:
    if mem.cams is None:
        raise ValueError("PRoPE is on but the memory tokens carry no cameras; build them with DiT.cameras")
    return mem.cams


def _cat_memory(mems: list[MemoryTokens]) -> MemoryTokens:
    B, dev = mems[0].feats.shape[0], mems[0].feats.device
    cams = None if any(m.cams is None for m in mems) else ProjCams.cat([m.cams for m in mems])
    valid = torch.cat([m.valid if m.valid is not None else torch.ones(B, len(m), dtype=torch.bool, device=dev)
                       for m in mems], dim=1)
    return MemoryTokens(torch.cat([m.feats for m in mems], 1), torch.cat([m.pos for m in mems], 1), cams, valid)


def with_canvas_gate(state: dict[str, Tensor], dit: DiT) -> dict[str, Tensor]:
    """Weights of a DiT trained before the canvas gate, given its gate rows: zero weights and
    bias, so the gate starts at one half of the coverage everywhere (the canvas is then half
    of x0 where memory is sure, and training moves it from there). Others pass unchanged."""
    w, b = state.get("final.linear.weight"), state.get("final.linear.bias")
    want = dit.final.linear.weight.shape[0]
    if w is None or b is None or not dit.gated or w.shape[0] != want - dit.gate_dim:
        return state
    return {**state, "final.linear.weight": torch.cat([w, w.new_zeros(dit.gate_dim, w.shape[1])]),
            "final.linear.bias": torch.cat([b, b.new_zeros(dit.gate_dim)])}


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
