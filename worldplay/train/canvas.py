"""The Warped Latent canvases of the cached trajectories, made once the way the streamer makes them.

A canvas is a VAE encoding of the memory's keyframes reprojected into a view (stream/recall.py),
so it needs full-resolution frames, which the latent cache (latents.py) does not keep. The
trajectory is rendered again (the renderer is exact and deterministic), walked forward with a
MosaicMemory whose keyframes it fills as the streamer would, and every chunk's canvas is made
from the keyframes before its KV window, which is what the streamer's memory gives it (entries
still in the window are attention's). One file per trajectory beside its latents,
`{name}.canvas.safetensors`:

    canvas  (N, C + 1, h, w) float16   encoded canvas + coverage per latent cell (0 before memory)

Tied to the VAE (its hash; its latent statistics are stored), the keyframe settings, the
window and this format's version: a file made otherwise is rebuilt (a canvas is a pure function
of those and the trajectory, so nothing is lost).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_path
from worldplay.memory.memory import MosaicMemory
from worldplay.model.presets import ModelConfig
from worldplay.model.vae import RGBDVAE
from worldplay.stream.recall import pixel_canvas
from worldplay.stream.streamer import WINDOW_EPS, memory_config_for
from worldplay.train.latents import Clip, full_res_K, vae_hash
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import make_trajectory

META = "worldplay.canvas/2"   # 2: magnified points splat 2x2 (views.py); older caches are rebuilt


def _settings(cfg: ModelConfig) -> str:
    """What a canvas depends on besides the VAE: the window and the keyframe settings."""
    m = memory_config_for(cfg).to_dict()
    keys = {k: v for k, v in m.items() if k.startswith("keyframe")}
    return json.dumps({"window_chunks": cfg.dit.window_chunks, "chunk": cfg.dit.chunk_frames, **keys},
                      sort_keys=True)


@torch.no_grad()
def canvas_trajectory(vae: RGBDVAE, cfg: ModelConfig, clip: Clip) -> torch.Tensor:
    """(N, C + 1, h, w) float16 canvases of `clip` (seed and path from its name)."""
    seed, path = clip.name.split("_", 1)
    scene = make_scene(int(seed))
    v, dev = cfg.vae, vae.latent_std.device
    renderer = Renderer(scene, image=ImageConfig(width=v.width, height=v.height), device=dev)
    traj = make_trajectory(path, scene, len(clip), seed=int(seed))
    if not torch.allclose(traj.c2w.float(), clip.c2w, atol=1e-5):
        raise WorldplayError(f"{clip.name}: the trajectory renders differently from its cached latents; "
                             f"delete the latent cache and rebuild it")
    memory = MosaicMemory(memory_config_for(cfg, capacity=1), dev)
    K = full_res_K(cfg).to(dev)
    Fc, lag = cfg.dit.chunk_frames, cfg.dit.window_chunks * cfg.dit.chunk_frames
    C, (h, w) = v.latent_ch, cfg.latent_hw
    out = torch.zeros(len(clip), C + 1, h, w, dtype=torch.float16)
    for a in range(0, len(clip) - len(clip) % Fc, Fc):
        if a - lag > 0:   # keyframes from before the window, as the streamer's min_age keeps them
            cv = pixel_canvas(vae, memory, traj.c2w[a:a + Fc].to(dev), K,
                              float(traj.times[a - lag]) - WINDOW_EPS, torch.float32)
            if cv is not None:
                out[a:a + Fc] = cv[0].half().cpu()
        for i in range(a, a + Fc):
            f = renderer.render(traj.c2w[i], float(traj.times[i]))
            memory.views.add(f.rgb, f.depth, f.c2w, K, f.t, f.dynamic)
    return out


def attach_canvases(folder: Path, clips: list[Clip], vae: RGBDVAE, cfg: ModelConfig, progress: bool = True) -> None:
    """Give every clip its `canvas`, made now for those not yet in `folder` or made by another
    VAE, keyframe setting or version (a derived cache: rebuilt, never mixed), written atomically
    so a stopped build resumes; renormalised to `vae`'s current latent statistics."""
    meta = {"format": META, "vae": vae_hash(vae), "settings": _settings(cfg)}
    C = cfg.vae.latent_ch
    for clip in tqdm(clips, desc="canvases", unit="traj", disable=not progress):
        file = folder / f"{clip.name}.canvas.safetensors"
        if not file.exists() or _meta(file) != meta:
            canvas = canvas_trajectory(vae.eval(), cfg, clip)
            with atomic_path(file) as tmp:
                save_file({"canvas": canvas, "latent_mean": vae.latent_mean.float().cpu(),
                           "latent_std": vae.latent_std.float().cpu()}, str(tmp), metadata=meta)
        t = load_file(str(file))
        covered = t["canvas"][:, C:].float()                                      # (N, 1, h, w)
        z = vae.renormalize(t["canvas"][:, :C], t["latent_mean"], t["latent_std"]) * (covered > 0)
        clip.canvas = torch.cat([z, covered], dim=1).half()                       # (N, C + 1, h, w)


def _meta(file: Path) -> dict:
    try:
        with safe_open(str(file), "pt") as f:
            return f.metadata() or {}
    except Exception:   # a damaged file is rebuilt like a stale one
        return {}
