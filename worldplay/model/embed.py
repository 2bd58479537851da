"""The DiT's inputs: latent patches <-> tokens, timestep embedding, and prompt words.

Patch layout (shared with the mosaic memory, whose entries are exactly one token's patch):
a token's feature vector is the (C, p, p) latent block flattened channel-major, so a memory
feature of the tiny model is 16 x 2 x 2 = 64 numbers and `unpatchify` of a warped memory
canvas gives back a latent-grid image in the same space as the noisy latent.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from worldplay.errors import WorldplayError
from worldplay.model.presets import DiTConfig
from worldplay.vocab import VOCAB, split_words

PAD_ID = 0                        # prompt slot with no word; ignored by the pooling
WORDS: tuple[str, ...] = tuple(w for group in VOCAB.values() for w in group)
WORD_IDS: dict[str, int] = {w: i + 1 for i, w in enumerate(WORDS)}   # 0 is PAD_ID
TIME_SCALE = 1000.0               # t in [0, 1] -> the 0..1000 range sinusoidal embeddings are tuned for
MAX_PERIOD = 10000.0              # longest sinusoid period of the timestep embedding


# ---- patches --------------------------------------------------------------------------------

def patchify(z: Tensor, p: int) -> Tensor:
    """(B, F, C, h, w) latents -> (B, F, h/p * w/p, C*p*p) tokens, row-major over the grid."""
    B, F, C, h, w = z.shape
    z = z.reshape(B, F, C, h // p, p, w // p, p)             # (B, F, C, hp, p, wp, p)
    z = z.permute(0, 1, 3, 5, 2, 4, 6)                       # (B, F, hp, wp, C, p, p)
    return z.reshape(B, F, (h // p) * (w // p), C * p * p)   # (B, F, hp*wp, C*p*p)


def unpatchify(tokens: Tensor, p: int, hp: int, wp: int) -> Tensor:
    """(B, F, hp*wp, C*p*p) tokens -> (B, F, C, hp*p, wp*p) latents; inverse of `patchify`."""
    B, F, _, D = tokens.shape
    C = D // (p * p)
    z = tokens.reshape(B, F, hp, wp, C, p, p)                # (B, F, hp, wp, C, p, p)
    z = z.permute(0, 1, 4, 2, 5, 3, 6)                       # (B, F, C, hp, p, wp, p)
    return z.reshape(B, F, C, hp * p, wp * p)                # (B, F, C, h, w)


def token_features(z: Tensor, p: int) -> Tensor:
    """One frame's latent (C, h, w) -> (hp, wp, C*p*p): the memory entries of that frame."""
    C, h, w = z.shape
    return patchify(z[None, None], p).reshape(h // p, w // p, C * p * p)  # (hp, wp, D)


class PatchEmbed(nn.Module):
    """Latent-grid input channels (noisy latent [+ warped canvas + mask]) -> one token per patch."""

    def __init__(self, in_ch: int, patch: int, width: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(in_ch * patch * patch, width)

    def forward(self, x: Tensor) -> Tensor:
        """(B, F, in_ch, h, w) -> (B, F, hp*wp, width)."""
        return self.proj(patchify(x, self.patch))


# ---- timestep -------------------------------------------------------------------------------

def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features (..., dim) of flow time t (...,) in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = (t.float() * TIME_SCALE)[..., None] * freqs                 # (..., half)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1).to(t.dtype if t.is_floating_point()
                                                                        else torch.float32)


class TimestepEmbed(nn.Module):
    """Per-frame flow time -> a width vector (the adaLN conditioning of that frame's tokens)."""

    def __init__(self, width: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        """t (B, F) -> (B, F, width)."""
        w = self.mlp[0].weight
        return self.mlp(timestep_embedding(t, self.freq_dim).to(w.dtype))


# ---- prompt ---------------------------------------------------------------------------------

def prompt_ids(prompt: str | None, cfg: DiTConfig) -> Tensor:
    """Scene words -> (prompt_len,) long ids, PAD_ID-padded. Unknown words are an error."""
    if len(WORDS) >= cfg.vocab_size:
        raise WorldplayError(f"DiT vocab_size={cfg.vocab_size} is too small for {len(WORDS)} scene words "
                             f"plus padding; raise it to at least {len(WORDS) + 1}")
    words = split_words(prompt or "")
    unknown = [w for w in words if w not in WORD_IDS]
    if unknown:
        raise WorldplayError(f"prompt word {unknown[0]!r} is not in the model's vocabulary; "
                             f"use scene words such as: {', '.join(WORDS)}")
    if len(words) > cfg.prompt_len:
        raise WorldplayError(f"prompt has {len(words)} words; this model reads at most {cfg.prompt_len}")
    ids = [WORD_IDS[w] for w in words] + [PAD_ID] * (cfg.prompt_len - len(words))
    return torch.tensor(ids, dtype=torch.long)


class PromptEmbed(nn.Module):
    """Word ids -> one pooled width vector (mean over the words present; zeros if none)."""

    def __init__(self, vocab_size: int, width: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width, padding_idx=PAD_ID)
        self.proj = nn.Linear(width, width)

    def forward(self, ids: Tensor) -> Tensor:
        """ids (B, L) -> (B, width)."""
        present = (ids != PAD_ID).to(self.proj.weight.dtype)[..., None]          # (B, L, 1)
        pooled = (self.embed(ids) * present).sum(1) / present.sum(1).clamp_min(1.0)  # (B, width)
        return self.proj(pooled)
