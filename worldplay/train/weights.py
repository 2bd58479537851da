"""Weights for a stage to start from: a run folder's EMA, a registry model or a .safetensors file."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

from worldplay.checkpoints import load_checkpoint
from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_path, atomic_write_bytes
from worldplay.model.vae import RGBDVAE
from worldplay.train.run import CKPT, STATE

DIT_MARK = "blocks."   # every DiT state dict has transformer blocks; the VAE's has none
VAE_FILE = "vae.safetensors"   # a DiT run's VAE, with the latent statistics its latents were made with
VAE_STATE = "vae_state.json"   # and the training state of the run that VAE came from (export reports it)


def run_state(folder: Path, part: str) -> Path:
    """The state file saying how `part` ("vae" or "dit") of a run folder was trained: a DiT run
    keeps its VAE's run state beside its own (VAE_STATE); any other run has only its own."""
    return folder / VAE_STATE if part == "vae" and (folder / VAE_STATE).exists() else folder / STATE


def save_vae(vae: RGBDVAE, folder: Path, source: str | None = None) -> Path:
    """Keep the exact VAE (weights and latent statistics) a DiT run trains on beside the run,
    with the state of the VAE run it came from (when `source` is a run folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / VAE_FILE) as tmp:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in vae.state_dict().items()}, str(tmp))
    src = Path(source) if source else None
    src_state = None if src is None else run_state(src, "vae")
    if src_state is not None and src_state.exists() and src.resolve() != folder.resolve():
        atomic_write_bytes(folder / VAE_STATE, src_state.read_bytes())
    return folder / VAE_FILE


def _prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def weights_from(source: str, part: str) -> dict[str, Tensor]:
    """`part` ("vae" or "dit") float32 weights from a run folder (its EMA) or a checkpoint.

    A run folder is read from its EMA weights, a registry name or .safetensors file through the
    registry's checks. What is missing is said in one line with the fix."""
    p = Path(source)
    if part == "vae" and p.is_dir() and (p / VAE_FILE).exists():
        return load_file(str(p / VAE_FILE))
    if p.is_dir() and (p / CKPT).exists():
        ema = _prefixed(load_file(str(p / CKPT)), "ema.")
        is_dit = any(k.startswith(DIT_MARK) for k in ema)
        if ema and is_dit == (part == "dit"):
            return ema
        raise WorldplayError(f"{source} is a training run without {part} weights; point at the {part} run")
    _, state, _ = load_checkpoint(source)
    if state is None:
        raise WorldplayError(f"{source} has random weights; start without --init to train from scratch")
    out = {k: v.float() for k, v in _prefixed(state, f"{part}.").items()}
    if not out:
        raise WorldplayError(f"{source} holds no {part} weights; pick a full worldplay checkpoint")
    return out
