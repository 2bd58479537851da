"""MosaicWorld dataset shards: rendered trajectories on disk, reproducible from the seed alone.

One trajectory of one scene is written as one or more safetensors shards (each at most
MAX_SHARD_BYTES, so they stay easy to move and to check in), named
`s{seed:07d}_{path}_p{part:02d}-of-{parts:02d}.safetensors`, holding for its frames:

    rgb      (M, H, W, 3) uint8
    depth    (M, H, W)    float16 z-depth in metres (SKY_DEPTH on sky; fp16 keeps <0.05% error)
    dynamic  (M, H, ceil(W/8)) uint8, the moving-object mask packed 8 pixels a byte (np.packbits)
    c2w      (M, 4, 4)    float32 camera-to-world
    times    (M,)         float32 seconds
    index    (M,)         int64 frame numbers within the trajectory
    K        (3, 3)       float32 intrinsics for (H, W)

and a JSON header in the safetensors metadata (key "worldplay"): scene seed, split, prompt,
trajectory name, frame range, size, fps and the trajectory's revisit pairs.

Scenes are split by seed: seeds >= HELDOUT_SEED_START are held out for evaluation and never
written into a training set. Writing is resumable: every shard is written atomically, so a
shard that exists with a matching header is complete and is skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from worldplay.camera import intrinsics
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_path
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import PATHS, make_trajectory

HELDOUT_SEED_START = 1_000_000     # seeds at or above this are evaluation scenes only
MAX_SHARD_BYTES = 15 * 2 ** 20     # keep shards small enough to move/check in one by one
FORMAT = "worldplay.world/1"       # bumped when the shard layout changes
META_KEY = "worldplay"
SPLITS = ("train", "heldout")
DEPTH_DTYPE = torch.float16


def check_split(seeds: list[int], split: str) -> None:
    """Held-out scenes must never leak into training data (and vice versa)."""
    if split not in SPLITS:
        raise WorldplayError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if split == "train":
        bad = [s for s in seeds if s >= HELDOUT_SEED_START]
        if bad:
            raise WorldplayError(f"seed {bad[0]} is a held-out scene (seeds >= {HELDOUT_SEED_START:,} are for "
                                 f"evaluation); lower --start-seed or use --split heldout")
    else:
        bad = [s for s in seeds if s < HELDOUT_SEED_START]
        if bad:
            raise WorldplayError(f"seed {bad[0]} is a training scene; held-out seeds start at "
                                 f"{HELDOUT_SEED_START:,} (use --start-seed {HELDOUT_SEED_START} or --split train)")
    if any(s < 0 for s in seeds):
        raise WorldplayError("scene seeds must be >= 0; pick a non-negative --start-seed")


def bytes_per_frame(image: ImageConfig) -> int:
    h, w = image.height, image.width
    return h * w * 3 + h * w * 2 + h * math.ceil(w / 8) + 4 * 16 + 4 + 8


def frames_per_shard(image: ImageConfig) -> int:
    """How many frames fit in one shard under MAX_SHARD_BYTES (header room kept aside)."""
    return max(1, (MAX_SHARD_BYTES - 64 * 1024) // bytes_per_frame(image))


def shard_name(seed: int, path: str, part: int, parts: int) -> str:
    return f"s{seed:07d}_{path}_p{part:02d}-of-{parts:02d}.safetensors"


@dataclass(frozen=True)
class ShardPlan:
    seed: int
    path: str
    n_frames: int
    part: int
    parts: int
    start: int          # first frame of this part
    stop: int           # one past its last frame

    @property
    def name(self) -> str:
        return shard_name(self.seed, self.path, self.part, self.parts)


def plan(seed: int, path: str, n_frames: int, image: ImageConfig) -> list[ShardPlan]:
    per = frames_per_shard(image)
    parts = math.ceil(n_frames / per)
    per = math.ceil(n_frames / parts)    # even split: no tiny last shard
    return [ShardPlan(seed, path, n_frames, p, parts, p * per, min(n_frames, (p + 1) * per))
            for p in range(parts)]


def read_header(file: Path) -> dict:
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for truncated/garbage files
        raise WorldplayError(f"{file} is not a readable safetensors shard ({type(e).__name__}); delete it "
                             f"and run `worldplay world make` again to rewrite it") from e
    if META_KEY not in meta:
        raise WorldplayError(f"{file} has no worldplay header; it was not written by `worldplay world make`")
    return json.loads(meta[META_KEY])


def _matches(h: dict, sp: ShardPlan, image: ImageConfig, split: str) -> bool:
    return (h.get("format") == FORMAT and h["seed"] == sp.seed and h["trajectory"] == sp.path
            and h["n_frames"] == sp.n_frames and h["frames"] == [sp.start, sp.stop]
            and h["width"] == image.width and h["height"] == image.height
            and abs(h["fov_x_deg"] - image.fov_x_deg) < 1e-9 and abs(h["fps"] - image.fps) < 1e-9
            and h["split"] == split)


def check_folder(out: Path, n_frames: int, image: ImageConfig, split: str) -> None:
    """One folder, one setting: a training run reads every shard in it as one dataset."""
    want = _setting({"format": FORMAT, "n_frames": n_frames, "parts": len(plan(0, "", n_frames, image)),
                     "width": image.width, "height": image.height, "fov_x_deg": image.fov_x_deg,
                     "fps": image.fps, "split": split})
    for f in sorted(out.glob("s*_p*-of-*.safetensors")):
        h = read_header(f)
        if _setting(h) != want:
            raise WorldplayError(f"{out} already holds shards made with other settings ({f.name}: "
                                 f"{h['n_frames']} frames, {h['width']}x{h['height']}, split {h['split']}); "
                                 f"use a new --out folder or the same --frames/--size/--split")


def pending(out: Path, sp: ShardPlan, image: ImageConfig, split: str) -> bool:
    """True when the shard still has to be written; an existing shard made with other
    settings is an error (mixing two settings in one folder would silently corrupt training)."""
    file = out / sp.name
    if not file.exists():
        return True
    h = read_header(file)
    if not _matches(h, sp, image, split):
        raise WorldplayError(f"{file} was made with other settings ({h['n_frames']} frames, "
                             f"{h['width']}x{h['height']}, split {h['split']}); use a new --out folder or "
                             f"the same --frames/--size/--split")
    return False


def write_shard(out: Path, sp: ShardPlan, scene, traj, frames: list, image: ImageConfig, split: str) -> Path:
    """Write one part atomically from its rendered `frames` (list of Frame)."""
    K = intrinsics(image.width, image.height, image.fov_x_deg)
    dyn = np.stack([f.dynamic.cpu().numpy() for f in frames])                  # (M, H, W) bool
    tensors = {
        "rgb": torch.stack([f.rgb.cpu() for f in frames]).contiguous(),         # (M, H, W, 3)
        "depth": torch.stack([f.depth.cpu() for f in frames]).to(DEPTH_DTYPE).contiguous(),  # (M, H, W)
        "dynamic": torch.from_numpy(np.packbits(dyn, axis=-1)).contiguous(),    # (M, H, ceil(W/8))
        "c2w": traj.c2w[sp.start:sp.stop].float().contiguous(),
        "times": traj.times[sp.start:sp.stop].float().contiguous(),
        "index": torch.arange(sp.start, sp.stop, dtype=torch.int64),
        "K": K.contiguous(),
    }
    header = {
        "format": FORMAT, "seed": sp.seed, "split": split, "prompt": scene.prompt,
        "words": scene.prompt.split(), "trajectory": sp.path, "n_frames": sp.n_frames,
        "part": sp.part, "parts": sp.parts, "frames": [sp.start, sp.stop],
        "width": image.width, "height": image.height, "fov_x_deg": image.fov_x_deg, "fps": image.fps,
        "revisits": [list(r) for r in traj.revisits],
    }
    file = out / sp.name
    with atomic_path(file) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(header)})
    return file


def unpack_dynamic(bits: Tensor, width: int) -> Tensor:
    """(..., H, ceil(W/8)) packed uint8 -> (..., H, W) bool."""
    return torch.from_numpy(np.unpackbits(bits.numpy(), axis=-1, count=width).astype(bool))


def make_trajectory_shards(out: Path, todo: list[ShardPlan], image: ImageConfig, split: str,
                           device: str = "cpu", on_frame=None) -> list[Path]:
    """Render and write the parts `todo` (all of one scene and trajectory, from `plan`);
    returns written files. `on_frame()` is called after each rendered frame (progress bars)."""
    if not todo:
        return []
    seed, path, n_frames = todo[0].seed, todo[0].path, todo[0].n_frames
    scene = make_scene(seed)
    traj = make_trajectory(path, scene, n_frames, fps=image.fps, seed=seed)
    renderer = Renderer(scene, image=image, device=device)
    written = []
    for sp in todo:
        frames = []
        for i in range(sp.start, sp.stop):
            frames.append(renderer.render(traj.c2w[i], float(traj.times[i])))
            if on_frame is not None:
                on_frame()
        written.append(write_shard(out, sp, scene, traj, frames, image, split))
    return written


def make_dataset(out: str | Path, scenes: int, frames: int, start_seed: int | None = None,
                 split: str = "train", paths: list[str] | None = None, image: ImageConfig = ImageConfig(),
                 device: str = "cpu", progress: bool = True) -> dict:
    """`worldplay world make`: scenes x paths trajectories of `frames` frames into `out`."""
    if scenes < 1 or frames < 2:
        raise WorldplayError(f"need --scenes >= 1 and --frames >= 2 (got {scenes}, {frames})")
    start = (0 if split == "train" else HELDOUT_SEED_START) if start_seed is None else start_seed
    seeds = list(range(start, start + scenes))
    check_split(seeds, split)
    paths = list(paths or PATHS)
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise WorldplayError(f"unknown path {unknown[0]!r}; use names from: {', '.join(PATHS)}")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    check_folder(out, frames, image, split)
    plans = [plan(s, p, frames, image) for s in seeds for p in paths]       # one per (scene, path)
    todo = [[sp for sp in parts if pending(out, sp, image, split)] for parts in plans]
    todo_frames = sum(sp.stop - sp.start for parts in todo for sp in parts)
    written: list[Path] = []
    with tqdm(total=todo_frames, unit="frame", desc="world make", disable=not progress) as bar:
        for parts in todo:
            written += make_trajectory_shards(out, parts, image, split, device, on_frame=lambda: bar.update(1))
    total = sum(len(parts) for parts in plans)
    return {"out": str(out), "written": len(written), "skipped": total - len(written), "shards": total,
            "frames_rendered": todo_frames, "seeds": [seeds[0], seeds[-1]], "paths": paths}


# ---- reading ------------------------------------------------------------------------------

@dataclass
class StoredTrajectory:
    """All parts of one (scene, trajectory) on disk; frames are read lazily by index."""
    header: dict                        # the first part's header (shared fields)
    files: list[Path]                   # parts in order
    starts: list[int]                   # first frame of each part

    @property
    def n_frames(self) -> int:
        return self.header["n_frames"]

    def read(self, indices: list[int]) -> dict[str, Tensor]:
        """Frames at `indices` (any order) as rgb (F,H,W,3) uint8, depth (F,H,W) float32,
        dynamic (F,H,W) bool, c2w (F,4,4), times (F,)."""
        per_file: dict[int, list[tuple[int, int]]] = {}
        for k, i in enumerate(indices):
            if not 0 <= i < self.n_frames:
                raise WorldplayError(f"frame {i} is outside trajectory {self.header['trajectory']} "
                                     f"of scene {self.header['seed']} ({self.n_frames} frames)")
            per_file.setdefault(self._part_of(i), []).append((k, i))
        H, W = self.header["height"], self.header["width"]
        F = len(indices)
        out = {"rgb": torch.empty(F, H, W, 3, dtype=torch.uint8), "depth": torch.empty(F, H, W),
               "dynamic": torch.empty(F, H, W, dtype=torch.bool), "c2w": torch.empty(F, 4, 4),
               "times": torch.empty(F)}
        for part, items in per_file.items():
            start = self.starts[part]
            with safe_open(str(self.files[part]), framework="pt") as f:
                for name in ("rgb", "depth", "dynamic", "c2w", "times"):
                    sl = f.get_slice(name)
                    for k, i in items:
                        x = sl[i - start:i - start + 1][0]
                        if name == "dynamic":
                            x = unpack_dynamic(x, W)
                        out[name][k] = x.float() if name == "depth" else x
        return out

    def _part_of(self, i: int) -> int:
        return max(p for p, start in enumerate(self.starts) if i >= start)


def _setting(h: dict) -> tuple:
    return (h.get("format"), h["n_frames"], h["parts"], h["width"], h["height"], h["fov_x_deg"], h["fps"],
            h["split"])


def scan(folder: str | Path) -> list[StoredTrajectory]:
    """Group the shards in `folder` into complete trajectories (a missing part is an error)."""
    folder = Path(folder).expanduser()
    files = sorted(folder.glob("s*_p*-of-*.safetensors"))
    if not files:
        raise WorldplayError(f"no dataset shards in {folder}; make some with "
                             f"`worldplay world make --scenes N --frames M --out {folder}`")
    groups: dict[tuple[int, str], list[tuple[Path, dict]]] = {}
    for f in files:
        h = read_header(f)
        groups.setdefault((h["seed"], h["trajectory"]), []).append((f, h))
    settings = {_setting(h) for g in groups.values() for _, h in g}
    if len(settings) > 1:
        raise WorldplayError(f"{folder} mixes shards made with different settings (frames, size, split); "
                             f"keep one `worldplay world make` setting per folder")
    out = []
    for (seed, path), items in sorted(groups.items()):
        parts = {h["part"]: (f, h) for f, h in items}
        n = items[0][1]["parts"]
        missing = [p for p in range(n) if p not in parts]
        if missing:
            raise WorldplayError(f"{folder} lacks part {missing[0]} of scene {seed} path {path}; re-run the same "
                                 f"`worldplay world make` command to finish it")
        out.append(StoredTrajectory(parts[0][1], [parts[p][0] for p in range(n)],
                                    [parts[p][1]["frames"][0] for p in range(n)]))
    return out


class ClipDataset(torch.utils.data.Dataset):
    """Training clips: `context` frames around an earlier view and `target` frames that revisit it.

    For each revisit pair (i, j) of a stored trajectory, the target is frames i .. i+target-1
    and the context is `context` consecutive frames centred on j that end before i: the model
    builds memory from the context and must reproduce the target. Items are dicts with
    "context" and "target" (each rgb (F,H,W,3) uint8, depth (F,H,W), dynamic (F,H,W) bool,
    c2w (F,4,4), times (F,)), "K" (3,3), "seed", "prompt", "trajectory" and "indices".
    `every` keeps every n-th revisit pair (neighbouring pairs give near-identical clips).
    """

    def __init__(self, folder: str | Path, context: int = 4, target: int = 4, every: int = 1,
                 min_overlap: float = 0.0):
        if context < 1 or target < 1 or every < 1:
            raise WorldplayError(f"ClipDataset needs context, target, every >= 1 (got {context}, {target}, {every})")
        self.trajs = scan(folder)
        self.context, self.target = context, target
        self.items: list[tuple[int, list[int], list[int]]] = []
        for t, tr in enumerate(self.trajs):
            pairs = [r for r in tr.header["revisits"] if r[2] >= min_overlap]
            for i, j, _ in pairs[::every]:
                if i + target > tr.n_frames:
                    continue
                c0 = min(max(0, j - context // 2), i - context)
                if c0 < 0:
                    continue
                self.items.append((t, list(range(c0, c0 + context)), list(range(i, i + target))))
        if not self.items:
            raise WorldplayError(f"no clip of {context} context + {target} target frames fits the revisits in "
                                 f"{folder}; make longer trajectories (--frames) or ask for shorter clips")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict:
        t, ctx, tgt = self.items[k]
        tr = self.trajs[t]
        frames = tr.read(ctx + tgt)
        h = tr.header
        K = intrinsics(h["width"], h["height"], h["fov_x_deg"])
        n = len(ctx)
        return {"context": {name: x[:n] for name, x in frames.items()},
                "target": {name: x[n:] for name, x in frames.items()},
                "K": K, "seed": h["seed"], "prompt": h["prompt"], "trajectory": h["trajectory"],
                "indices": torch.tensor(ctx + tgt)}
