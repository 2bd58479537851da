"""The DiT's training data: rendered revisit trajectories encoded once with the trained VAE.

Encoding is the expensive part of a frame for the DiT, and the VAE is frozen by then, so every
trajectory is rendered and encoded once and cached (DESIGN §11). One file per trajectory,
`{seed:07d}_{path}.safetensors` in the cache folder, written atomically (a stopped build resumes
where it was):

    z        (N, C, h, w) float16  clean latents
    depth    (N, hp, wp)  float32  median depth per DiT token patch (what the memory lifts with)
    dynamic  (N, hp, wp)  float32  moving-object fraction per patch (for reports; training
                                   builds memory without it, as inference must)
    c2w      (N, 4, 4)    float32
    times    (N,)         float64 seconds
    prompt   (L,)         int64    the scene words' ids

The cache is tied to the VAE that made it: the header stores the VAE weights' hash, and a
mismatching cache is an error, not a silent mix of latent spaces.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from worldplay.camera import intrinsics
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_path
from worldplay.memory.lift import per_patch
from worldplay.memory.memory import MosaicMemory
from worldplay.model.embed import prompt_ids, token_features
from worldplay.model.presets import ModelConfig
from worldplay.model.vae import RGBDVAE, frames_to_tensor
from worldplay.stream.streamer import memory_config_for
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import make_trajectory

META = "worldplay.latents/1"
ENCODE_BATCH = 8   # frames per VAE call: amortises per-call overhead, bounds memory


@dataclass(frozen=True)
class LatentSet:
    scenes: int = 32                # training scenes (seeds first_seed..): variety beats length here
    paths: tuple[str, ...] = ("orbit", "look-away", "loop", "figure-eight", "out-and-back", "random-walk")
    per_scene: int = 2              # paths per scene (cycled through `paths`)
    frames: int = 128               # 8 s at 16 FPS: the paths leave and come back
    first_seed: int = 0             # training seeds; held-out scenes start at 1,000,000


def vae_hash(vae: RGBDVAE) -> str:
    """The VAE's weights, not its latent statistics: a cache converts between those (load_clip)."""
    h = hashlib.sha256()
    for k, v in sorted(vae.state_dict().items()):
        if k.startswith("latent_"):
            continue
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Clip:
    """One cached trajectory (see module docstring for the shapes)."""
    z: Tensor
    depth: Tensor
    dynamic: Tensor
    c2w: Tensor
    times: Tensor
    prompt: Tensor
    revisits: list[tuple[int, int, float]]
    name: str
    canvas: Tensor | None = None     # (N, C + 1, h, w) float16 Warped Latent per frame (canvas.py)

    def __len__(self) -> int:
        return int(self.z.shape[0])


@torch.no_grad()
def encode_trajectory(vae: RGBDVAE, cfg: ModelConfig, seed: int, path: str, frames: int) -> Clip:
    """Render and encode one trajectory on the VAE's device; the cache is kept on the CPU."""
    scene = make_scene(seed)
    v, dev = cfg.vae, next(vae.parameters()).device
    renderer = Renderer(scene, image=ImageConfig(width=v.width, height=v.height), device=dev)
    traj = make_trajectory(path, scene, frames, seed=seed)
    mcfg = memory_config_for(cfg)
    zs, depths, dyns = [], [], []
    for a in range(0, frames, ENCODE_BATCH):
        fr = [renderer.render(traj.c2w[i], float(traj.times[i])) for i in range(a, min(a + ENCODE_BATCH, frames))]
        rgb = frames_to_tensor(torch.stack([f.rgb for f in fr]))                     # (B, 3, H, W)
        depth = torch.stack([f.depth.float() for f in fr])                          # (B, H, W)
        zs.append(vae.encode(rgb, depth).half().cpu())                               # (B, C, h, w)
        depths += [per_patch(f.depth.cpu(), mcfg, "depth", "median") for f in fr]
        dyns += [per_patch(f.dynamic.cpu().float(), mcfg, "dynamic mask", "mean").nan_to_num(0.0) for f in fr]
    ids = prompt_ids(scene.prompt, cfg.dit)
    return Clip(torch.cat(zs), torch.stack(depths), torch.stack(dyns), traj.c2w.float(),
                traj.times.double(), ids, traj.revisits, f"{seed:07d}_{path}")


def save_clip(folder: Path, clip: Clip, vae: RGBDVAE, vae_id: str) -> Path:
    out = folder / f"{clip.name}.safetensors"
    meta = {"format": META, "vae": vae_id, "revisits": json.dumps(clip.revisits)}
    tensors = {"z": clip.z, "depth": clip.depth, "dynamic": clip.dynamic, "c2w": clip.c2w,
               "times": clip.times, "prompt": clip.prompt,
               "latent_mean": vae.latent_mean.float().cpu(), "latent_std": vae.latent_std.float().cpu()}
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    return out


def load_clip(path: Path, vae: RGBDVAE, vae_id: str) -> Clip:
    """One cached trajectory, its latents normalised with `vae`'s current latent statistics
    (`vae_id` is `vae_hash(vae)`, computed once by the caller)."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != META:
            raise WorldplayError(f"{path} is not a worldplay latent cache file; delete it and rebuild")
        if meta.get("vae") != vae_id:
            raise WorldplayError(f"{path} was encoded with another VAE ({meta.get('vae')}, not {vae_id}); "
                                 f"delete the cache folder and rebuild it with this VAE")
        t = {k: f.get_tensor(k) for k in f.keys()}
    revisits = [tuple(r) for r in json.loads(meta.get("revisits", "[]"))]
    # Files from before latent statistics existed hold raw latents: their statistics are the
    # identity. Converting those too matters: a calibrated VAE would otherwise be handed raw
    # latents (std 1.5-3.3 per channel) and calibrate_on, seeing it calibrated, would not fix them.
    C = t["z"].shape[1]
    mean = t.get("latent_mean", torch.zeros(C))
    std = t.get("latent_std", torch.ones(C))
    z = vae.renormalize(t["z"], mean, std).half()
    return Clip(z, t["depth"], t["dynamic"], t["c2w"], t["times"], t["prompt"], revisits, path.stem)


def build_cache(folder: Path, vae: RGBDVAE, cfg: ModelConfig, spec: LatentSet = LatentSet(),
                progress: bool = True) -> list[Clip]:
    """Encode every trajectory of `spec` not yet in `folder`; return all of them."""
    folder.mkdir(parents=True, exist_ok=True)
    vae_id = vae_hash(vae)
    jobs = [(spec.first_seed + s, spec.paths[(s * spec.per_scene + k) % len(spec.paths)])
            for s in range(spec.scenes) for k in range(spec.per_scene)]
    clips = []
    for seed, path in tqdm(jobs, desc="encode latents", unit="traj", disable=not progress):
        file = folder / f"{seed:07d}_{path}.safetensors"
        if file.exists():
            clips.append(load_clip(file, vae, vae_id))
            continue
        clip = encode_trajectory(vae.eval(), cfg, seed, path, spec.frames)
        save_clip(folder, clip, vae, vae_id)
        clips.append(clip)
    return clips


def insert_frame(memory: MosaicMemory, clip: Clip, f: int, K: Tensor, patch: int,
                 z: Tensor | None = None, depth: Tensor | None = None) -> None:
    """Lift frame f of `clip` into memory as the streamer inserts its own frames: its latent
    (or `z`, the model's version of it) with its depth (or `depth`, e.g. the decoded one)."""
    z = clip.z[f] if z is None else z
    memory.insert(token_features(z.float(), patch), clip.depth[f] if depth is None else depth, clip.c2w[f], K,
                  float(clip.times[f]))


def calibrate_on(vae: RGBDVAE, clips: list[Clip], also: list[Clip] = ()) -> None:
    """Give an uncalibrated VAE latent statistics from cached clips (made with it), and renormalise
    those and `also` in place: from here on its latents are zero-mean, unit-variance per channel."""
    if vae.calibrated or not clips:
        return
    mean, std = vae.calibrate(torch.cat([c.z[::4] for c in clips]))
    for c in [*clips, *also]:
        c.z = vae.renormalize(c.z, mean.cpu(), std.cpu()).half()


def full_res_K(cfg: ModelConfig) -> Tensor:
    """The pixel intrinsics every trajectory is rendered with (the product's default camera)."""
    return intrinsics(cfg.vae.width, cfg.vae.height)
