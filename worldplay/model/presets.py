"""Model size presets: the VAE and DiT shapes, and the `PRESETS` registry.

A preset fixes every tensor shape of a model, so a checkpoint is tied to exactly one preset
(checkpoints.py checks this). `tiny` ships and is trained on CPU; `base` has a Wan2.1-1.3B-like
DiT and exists to benchmark GPUs (random weights, labelled so wherever it is shown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from worldplay.errors import WorldplayError

DEPTH_MIN = 0.1     # metres; nearer surfaces are clamped (the eye stays above the ground)
DEPTH_MAX = 100.0   # metres; matches world.frame.SKY_DEPTH so sky encodes to exactly +1


@dataclass(frozen=True)
class VAEConfig:
    in_ch: int = 4                 # RGB + normalised log-depth: every frame carries its own depth
    latent_ch: int = 16            # Wan-like channel count; enough for RGB-D at 16x
    downsample: int = 16           # total: 640x384 -> 40x24 latents
    shuffle: int = 4               # pixel (un)shuffle at the edges, so no conv runs at full or half
                                   # resolution (they cost ~90% of the FLOPs; decode must be fast on CPU)
    widths: tuple[int, ...] = (64, 96, 128)  # channels per level, 1/shuffle -> 1/downsample
    blocks: tuple[int, ...] = (0, 1, 1)      # residual blocks per level; few at the largest level
    mid_blocks: int = 2            # extra blocks at the latent resolution, where they are cheap
    groups: int = 8                # GroupNorm groups; divides every width
    width: int = 640               # frame width in pixels (the product's output size)
    height: int = 360              # frame height in pixels
    pad_height: int = 384          # padded inside to a multiple of downsample * patch (32)
    depth_min: float = DEPTH_MIN   # log-depth range mapped to [-1, 1]; log spacing gives near
    depth_max: float = DEPTH_MAX   # surfaces (which the player sees large) the most precision

    def __post_init__(self) -> None:
        levels = round(math.log2(max(self.downsample // max(self.shuffle, 1), 1)))
        if self.shuffle < 1 or 2 ** levels * self.shuffle != self.downsample:
            raise WorldplayError(f"VAE downsample={self.downsample} must be shuffle={self.shuffle} "
                                 f"times a power of two; use 8 or 16 with shuffle 4")
        if len(self.widths) != levels + 1 or len(self.blocks) != levels + 1:
            raise WorldplayError(f"VAE widths/blocks need {levels + 1} entries for downsample "
                                 f"{self.downsample} / shuffle {self.shuffle} (one per level)")
        if any(w % self.groups for w in self.widths):
            raise WorldplayError(f"VAE widths {self.widths} must all be divisible by groups={self.groups}")
        if self.pad_height < self.height or self.pad_height % self.downsample:
            raise WorldplayError(f"VAE pad_height={self.pad_height} must be >= height and a multiple "
                                 f"of downsample={self.downsample}")
        if self.width % self.downsample:
            raise WorldplayError(f"VAE width={self.width} must be a multiple of downsample={self.downsample}")

    @property
    def pad_top(self) -> int:
        """Rows added above the frame (the rest go below); latent row r starts at pixel row
        r * downsample - pad_top, which geometry on the latent grid must account for."""
        return (self.pad_height - self.height) // 2

    @property
    def latent_hw(self) -> tuple[int, int]:
        """(h, w) of the latent grid of one padded frame."""
        return self.pad_height // self.downsample, self.width // self.downsample


@dataclass(frozen=True)
class DiTConfig:
    patch: int = 2                 # 2x2 latent patches: 20x12 = 240 tokens per tiny frame
    width: int = 256               # hidden size; ~5M params at depth 6 trains on CPU
    depth: int = 6                 # transformer blocks
    heads: int = 4                 # head_dim 64: room for a PRoPE block and RoPE over (t, y, x)
    ffn: int = 1024                # 4x width, the usual MLP ratio
    qk_norm: bool = True           # RMSNorm on q, k keeps logits bounded over long rollouts (Wan)
    chunk_frames: int = 4          # F: frames generated per causal chunk
    steps: int = 2                 # S: denoising steps per chunk; the forcing stage trains these and 2
                                   # keeps the shipped model real time on a 2-core CPU (README levers)
    teacher_steps: int = 24        # Euler steps of the bidirectional teacher (data / distillation)
    shift: float = 3.0             # timestep shift: spend the few steps near noise, where layout forms
    window_chunks: int = 1         # past clean chunks kept in the rolling KV window: the one before,
                                   # as in training's 2-chunk clips; the memory carries the long range
    sink_frames: int = 4           # first frames kept in the cache forever (attention sink + anchor):
                                   # a walk's first chunk keeps its look when memory has nothing to
                                   # show; trained at every distance (train/causal.py)
    memory_tokens: int = 240       # retrieved memory patches per chunk (one frame's worth)
    vocab_size: int = 64           # scene words for the prompt embedding (MosaicWorld's vocabulary)
    prompt_len: int = 8            # words per prompt, padded
    prope_frac: float = 0.5        # fraction of each head's dims under PRoPE; the rest carry RoPE
    use_memory_rope: bool = True   # ablation: memory tokens at warped (reprojected) positions
    use_warped_latent: bool = True # ablation: splatted memory canvas + mask on the input channels
    use_prope: bool = True         # ablation: camera-relative attention (PRoPE)
    canvas_gate: bool = True       # the head also gives a gate per latent cell that blends the canvas
                                   # into the predicted x0: copying what memory shows is then one
                                   # number per cell, not an identity map learned through every layer

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise WorldplayError(f"DiT width={self.width} is not divisible by heads={self.heads}")
        if self.sink_frames % self.chunk_frames:
            raise WorldplayError(f"DiT sink_frames={self.sink_frames} must be a whole number of "
                                 f"chunks of {self.chunk_frames} frames")
        if self.prope_dims % 4:
            raise WorldplayError(f"DiT prope_frac={self.prope_frac} gives {self.prope_dims} PRoPE dims "
                                 f"per head; it must be a multiple of 4 (4x4 projective blocks)")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def prope_dims(self) -> int:
        """Per-head dims transformed by PRoPE (whole 4-dim projective blocks)."""
        return int(round(self.head_dim * self.prope_frac))

    @property
    def sink_chunks(self) -> int:
        return self.sink_frames // self.chunk_frames


@dataclass(frozen=True)
class ModelConfig:
    name: str = "tiny"                                       # preset name, stored in checkpoints
    vae: VAEConfig = field(default_factory=VAEConfig)       # frame <-> latent
    dit: DiTConfig = field(default_factory=DiTConfig)       # the causal video generator
    labelled_random: bool = False   # True: random weights only; every display must say so
    label: str = "tiny"             # what the HUD / bench print for this model

    def __post_init__(self) -> None:
        h, w = self.vae.latent_hw
        if h % self.dit.patch or w % self.dit.patch:
            raise WorldplayError(f"preset {self.name}: latent grid {h}x{w} is not divisible by "
                                 f"DiT patch {self.dit.patch}; change pad_height or patch")

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.vae.latent_hw

    @property
    def tokens_hw(self) -> tuple[int, int]:
        """(h, w) token grid of one frame after patching."""
        h, w = self.vae.latent_hw
        return h // self.dit.patch, w // self.dit.patch

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.tokens_hw
        return h * w

    @property
    def tokens_per_chunk(self) -> int:
        return self.tokens_per_frame * self.dit.chunk_frames


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    # Wan2.1-1.3B DiT shape over an 8x VAE (960 tokens per frame, like a real 480p model's load).
    "base": ModelConfig(
        name="base",
        vae=VAEConfig(downsample=8, shuffle=2, widths=(128, 256, 256), blocks=(1, 2, 2),
                      mid_blocks=2, groups=32),
        # Wan-like streaming: 4 steps over a 3-chunk window (a GPU has the time; tiny is tuned for CPUs)
        dit=DiTConfig(width=1536, depth=30, heads=12, ffn=8960, shift=5.0, memory_tokens=960, steps=4,
                      window_chunks=3, sink_frames=4),
        labelled_random=True,
        label="base (random weights, benchmark only)",
    ),
}


def get_preset(name: str) -> ModelConfig:
    """The preset called `name`, or a one-line error listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise WorldplayError(f"unknown model preset {name!r}; known presets: "
                             f"{', '.join(sorted(PRESETS))}") from None
