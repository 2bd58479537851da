"""A checkpoint (registry name or file) -> the model's modules, for the sources that run them.

The `model` source builds a streamer from both modules; the `vae` source needs only the VAE.
Checkpoint tensors are named "dit.<param>" and "vae.<param>"; every shape is checked before
anything is loaded. Random registry entries (tiny-random, base-random) are built from their
seed. `None` names the registry's default model.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch

from worldplay.checkpoints import CheckpointInfo, check_shapes, load_checkpoint, load_registry, shapes_of
from worldplay.errors import WorldplayError
from worldplay.model.dit import DiT
from worldplay.model.presets import ModelConfig
from worldplay.model.vae import RGBDVAE

DIT_PREFIX, VAE_PREFIX = "dit.", "vae."   # checkpoint tensor names: "dit.<param>", "vae.<param>"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@dataclass
class Weights:
    cfg: ModelConfig
    dit: DiT | None        # None when only the VAE was asked for
    vae: RGBDVAE
    info: CheckpointInfo
    sha256: str | None     # fingerprint of the files; None for random weights (the streamer hashes them)


def with_chunk(cfg: ModelConfig, chunk: int | None) -> ModelConfig:
    """The config with another chunk length F (the sink keeps its number of chunks); None keeps it."""
    if chunk is None:
        return cfg
    if chunk < 1:
        raise WorldplayError(f"chunk {chunk}: frames per chunk must be at least 1")
    return dataclasses.replace(cfg, dit=dataclasses.replace(cfg.dit, chunk_frames=chunk,
                                                                    sink_frames=cfg.dit.sink_chunks * chunk))


def with_context(cfg: ModelConfig, window: int | None, sink: int | None = None) -> ModelConfig:
    """The config with another attention context: `window` past chunks in the rolling KV window,
    `sink` first chunks kept forever; None keeps the model's."""
    d = cfg.dit
    if window is not None:
        d = dataclasses.replace(d, window_chunks=int(window))
    if sink is not None:
        d = dataclasses.replace(d, sink_frames=int(sink) * d.chunk_frames)
    return dataclasses.replace(cfg, dit=d)


def default_model() -> str:
    """checkpoints.toml's `default` entry: what `model` and `vae` mean without a name."""
    return load_registry().default


def load_weights(model: str | None = None, *, chunk: int | None = None, with_dit: bool = True,
                 registry=None) -> Weights:
    """DiT and VAE of a registry name or checkpoint path (None: the registry's default).
    with_dit=False skips building the DiT (the `vae` source: base's DiT alone is 1.3B parameters)."""
    name = model if model is not None else default_model()
    cfg, state, info = load_checkpoint(name, registry=registry)
    cfg = with_chunk(cfg, chunk)
    modules = {VAE_PREFIX: RGBDVAE(cfg.vae, seed=info.seed or 0)}
    if with_dit:
        modules[DIT_PREFIX] = DiT(cfg, seed=info.seed or 0)
    sha = None
    if state is not None:
        expected = {prefix + k: s for prefix, m in modules.items() for k, s in shapes_of(m).items()}
        kept = {k: v for k, v in state.items() if with_dit or not k.startswith(DIT_PREFIX)}
        check_shapes(kept, expected, cfg.name)
        for prefix, m in modules.items():
            m.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        sha = hashlib.sha256("".join(h for _, h in info.files).encode()).hexdigest()
    return Weights(cfg, modules.get(DIT_PREFIX), modules[VAE_PREFIX], info, sha)


def parse_dtype(text: str) -> torch.dtype:
    """'float32' | 'bfloat16' | 'float16' (also 'fp32', 'bf16', 'fp16') -> the torch dtype."""
    alias = DTYPE_ALIASES.get(text, text)
    if alias not in DTYPES:
        raise WorldplayError(f"dtype {text!r}; use one of: {', '.join(DTYPES)}")
    return DTYPES[alias]
