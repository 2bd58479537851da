"""Scripted camera paths that stress revisits: orbits, loops, out-and-back, figure-eights,
seeded random walks that come home, and turning away and back.

Every path is a smooth function of the phase s = t / T_cycle, built from a ground-plane
offset around `scene.center` plus a yaw (DESIGN.md conventions: +y up, yaw 0 looks along -z,
positive yaw turns right). A seeded rotation about the centre varies the paths per seed.
`revisits` lists, for each frame, the best earlier frame (at least `min_gap_s` before) whose
view it sees again, with a geometric overlap score — the frames eval measures memory on.
Path files (JSON) give either explicit poses or timed key events; see `load_path_file`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from worldplay.camera import intrinsics, make_pose, pixel_grid, so3_exp, so3_log, unproject
from worldplay.config import ImageConfig
from worldplay.controls import CameraState, FirstPersonCamera, InputFrame
from worldplay.errors import WorldplayError

WALK_SPEED = 1.5           # m/s, mean speed of constant-speed paths (a relaxed walk)
EASED_MEAN_SPEED = 1.2     # m/s, mean of eased segments; their peak is twice this (still a walk)
TURN_RATE = math.radians(60.0)  # rad/s, mean rate of an in-place turn (a slow look around)
MIN_CYCLE_S = 4.0          # shorter recordings play the first part of a 4 s cycle, not a sprint
MAX_SPEED = 2.5            # m/s; paths are slowed (their cycle stretched) to stay at walking pace
MAX_TURN_RATE = math.radians(120.0)  # rad/s; a brisk head turn, not a whip pan
CAP_SAMPLES, CAP_ITERS = 512, 4      # phase samples and refinements when fitting those limits
MIN_RADIUS, MAX_RADIUS = 0.3, 0.85  # x scene.radius: the free annulus (a centrepiece may stand inside)
FIG8_LENGTH = 6.1          # arc length of the unit Gerono lemniscate, metres per metre of size
FIG8_OFFSET, FIG8_SIZE = 0.58, 0.45  # crossing point and max half-width (x radius): lobes stay in 0.3..0.87
CHORD_OFFSET = 0.45        # x radius: out-and-back walks a chord this far from the centre
STAND_OFFSET = 0.6         # x radius: where look-away stands (the scene's spawn distance)
DIFF_EPS = 1e-4            # phase step for numeric tangents (curves are smooth closed forms)


@dataclass(frozen=True)
class RevisitConfig:
    depths: tuple[float, ...] = (3.0, 6.0, 12.0)  # metres: near, mid and far content of a view
    grid: tuple[int, int] = (8, 5)   # (cols, rows) of sample pixels: coarse keeps 1-min paths fast
    min_gap_s: float = 1.0           # a revisit must come back after leaving, not be the next frame
    min_overlap: float = 0.5         # below this a frame sees mostly new content
    min_rise: float = 0.25           # overlap with j must have dipped this far and come back (not a slow drift)
    near: float = 0.05               # metres; points closer than this are behind the lens
    block: int = 16                  # target frames scored at once (bounds memory on long paths)


@dataclass
class Trajectory:
    name: str
    c2w: Tensor                      # (N, 4, 4) camera-to-world
    times: Tensor                    # (N,) seconds
    revisits: list[tuple[int, int, float]] = field(default_factory=list)  # (i, j < i, overlap)

    def __len__(self) -> int:
        return self.c2w.shape[0]


def direction(yaw: Tensor) -> Tensor:
    """Unit ground-plane (x, z) heading (..., 2) for yaw (...): yaw 0 -> -z, +pi/2 -> +x."""
    return torch.stack([torch.sin(yaw), -torch.cos(yaw)], dim=-1)


def poses_from(pos: Tensor, yaw: Tensor, pitch: Tensor) -> Tensor:
    """Batched `camera.yaw_pitch_pose`: positions (N, 3), yaw/pitch (N,) -> c2w (N, 4, 4)."""
    cy, sy, cp, sp = torch.cos(yaw), torch.sin(yaw), torch.cos(pitch), torch.sin(pitch)
    fwd = torch.stack([sy * cp, sp, -cy * cp], dim=-1)                     # (N, 3)
    right = torch.stack([cy, torch.zeros_like(cy), sy], dim=-1)            # (N, 3), no roll
    down = torch.linalg.cross(fwd, right)
    return make_pose(torch.stack([right, down, fwd], dim=-1), pos)


def ease(u: Tensor) -> Tensor:
    """0 -> 1 with zero speed at both ends (so segments join without a jolt); peak speed 2x mean."""
    u = u.clamp(0.0, 1.0)
    return u - torch.sin(2 * math.pi * u) / (2 * math.pi)


def _laps(T: float, R: float, rmax_frac: float, length_per_m: float) -> tuple[int, float]:
    """Whole laps in T and the curve size (m) that keeps them near walking speed."""
    laps = max(1, math.floor(WALK_SPEED * T / (length_per_m * rmax_frac * R)))
    size = WALK_SPEED * T / (length_per_m * laps)
    return laps, min(max(size, MIN_RADIUS * R), rmax_frac * R)


def _follow(curve: Callable[[Tensor], Tensor], s: Tensor) -> tuple[Tensor, Tensor]:
    """Offsets (N, 2) of a ground-plane curve and the yaw (N,) of walking along it."""
    d = curve(s + DIFF_EPS) - curve(s - DIFF_EPS)                          # (N, 2) tangent
    return curve(s), torch.atan2(d[:, 0], -d[:, 1])


# ---- the paths: each maps (phase s (N,), T_cycle, R, generator) -> offsets (N, 2), yaw, pitch ----

def _orbit(s, T, R, g):
    laps, r = _laps(T, R, 0.6, 2 * math.pi)
    theta = 2 * math.pi * laps * s
    return r * direction(theta), theta + math.pi, torch.zeros_like(s)      # look at the centre


def _loop(s, T, R, g):
    laps, r = _laps(T, R, 0.7, 2 * math.pi)
    theta = 2 * math.pi * laps * s
    return r * direction(theta), theta + math.pi / 2, torch.zeros_like(s)  # look along the walk


def _out_and_back(s, T, R, g):
    # Walk out along a chord clear of the centrepiece, turn around, walk back, then turn on round
    # to the first heading: the closing frames revisit the opening view after the whole trip.
    turn = min(math.pi / TURN_RATE / T, 0.3)                               # phase spent per turn
    walk = (1.0 - 2 * turn) / 2
    dist = min(EASED_MEAN_SPEED * walk * T, 2 * math.sqrt(MAX_RADIUS ** 2 - CHORD_OFFSET ** 2) * R)
    out, back = ease(s / walk), ease((s - walk - turn) / walk)
    along = -dist / 2 + dist * (out - back)                                # metres along +x heading
    yaw = math.pi / 2 + math.pi * (ease((s - walk) / turn) + ease((s - 2 * walk - turn) / turn))
    return torch.stack([along, torch.full_like(s, CHORD_OFFSET * R)], -1), yaw, torch.zeros_like(s)


def _figure_eight(s, T, R, g):
    laps, a = _laps(T, R, FIG8_SIZE, FIG8_LENGTH)

    def curve(u):  # Gerono lemniscate crossing itself at FIG8_OFFSET, lobes along the annulus
        th = 2 * math.pi * laps * u
        return torch.stack([a * torch.sin(th), FIG8_OFFSET * R + 0.5 * a * torch.sin(2 * th)], -1)
    p, yaw = _follow(curve, s)
    return p, yaw, torch.zeros_like(s)


def _random_walk(s, T, R, g):
    def rnd(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64).float()
    k = torch.arange(1, 4, dtype=torch.float32)                            # (3,) harmonics
    amp = (rnd(3) - 0.5) * 0.4 / k                                         # |sum| < 0.37: stays in the annulus
    phase = rnd(3) * 2 * math.pi
    wobble, wobble_phase = 0.3 * rnd(1), rnd(1) * 2 * math.pi              # speed varies, never stops
    spread = amp.abs().sum().item()
    r_lo, r_hi = MIN_RADIUS * R / (1 - spread), MAX_RADIUS * R / (1 + spread)
    laps = max(1, math.floor(WALK_SPEED * T / (2 * math.pi * r_hi)))
    r0 = min(max(WALK_SPEED * T / (2 * math.pi * laps), r_lo), r_hi)

    def curve(u):  # star-shaped closed curve: r > 0 everywhere so the tangent never vanishes
        u = 2 * math.pi * laps * u
        phi = u + wobble * torch.sin(u + wobble_phase)
        r = r0 * (1 + (amp * torch.cos(k * phi[:, None] + phase)).sum(-1))  # (N,)
        return r[:, None] * direction(phi)
    p, yaw = _follow(curve, s)
    gaze_amp, gaze_phase = math.radians(35) * (rnd(1) * 2 - 1), rnd(1) * 2 * math.pi  # glance around
    gaze = gaze_amp * torch.sin(2 * math.pi * laps * 2 * s + gaze_phase)
    pitch = math.radians(6) * torch.sin(2 * math.pi * laps * 3 * s)
    return p, yaw + gaze, pitch


def _look_away(s, T, R, g):
    # Stand in the annulus facing the centre (yaw 0 looks along -z), turn to look outward, turn back.
    turn = min(math.pi / TURN_RATE / T, 0.4)
    hold = (1.0 - 2 * turn) / 3
    yaw = math.pi * (ease((s - hold) / turn) - ease((s - 2 * hold - turn) / turn))
    return torch.tensor([0.0, STAND_OFFSET * R]).expand(s.shape[0], 2), yaw, torch.zeros_like(s)


PATHS: dict[str, Callable] = {
    "orbit": _orbit, "loop": _loop, "out-and-back": _out_and_back,
    "figure-eight": _figure_eight, "random-walk": _random_walk, "look-away": _look_away,
}


def make_trajectory(name: str, scene, n_frames: int, fps: float = 16.0, seed: int = 0,
                    with_revisits: bool = True) -> Trajectory:
    """`n_frames` poses at `fps` along the named path around `scene.center` within `scene.radius`.
    `with_revisits=False` skips the O(N^2) revisit search (recording does not need it)."""
    if name not in PATHS:
        raise WorldplayError(f"unknown path {name!r}; use one of: {', '.join(PATHS)} (or a .json path file)")
    if n_frames < 1 or fps <= 0:
        raise WorldplayError(f"path {name!r} needs n_frames >= 1 and fps > 0 (got {n_frames}, {fps})")
    fn, R = PATHS[name], float(scene.radius)
    g = torch.Generator().manual_seed(int(seed))
    turn = float(torch.rand(1, generator=g, dtype=torch.float64)) * 2 * math.pi  # seeded heading
    times = torch.arange(n_frames, dtype=torch.float32) / fps
    T = _cycle_seconds(name, n_frames / fps, R, seed)
    off, yaw, pitch = fn(times / T, T, R, torch.Generator().manual_seed(int(seed)))
    off = off.float() @ torch.tensor([[math.cos(turn), math.sin(turn)],     # rotate about the centre
                                      [-math.sin(turn), math.cos(turn)]])   # so headings gain `turn`
    cx, cy, cz = (float(v) for v in scene.center)
    pos = torch.stack([cx + off[:, 0], torch.full_like(off[:, 0], cy), cz + off[:, 1]], -1)  # (N, 3)
    c2w = poses_from(pos, yaw.float() + turn, pitch.float())
    return Trajectory(name, c2w, times, find_revisits(c2w, fps) if with_revisits else [])


def _cycle_seconds(name: str, seconds: float, R: float, seed: int) -> float:
    """Seconds one cycle of the path takes: the recording's length, stretched (so a short recording
    plays part of the path) until peak speed and turn rate are those of a person walking."""
    T = max(seconds, MIN_CYCLE_S)
    if name == "orbit":  # keeps one lap per MIN_CYCLE_S so short clips still close the loop
        return T
    s = torch.arange(CAP_SAMPLES, dtype=torch.float32) / CAP_SAMPLES
    for _ in range(CAP_ITERS):
        off, yaw, _ = PATHS[name](s, T, R, torch.Generator().manual_seed(int(seed)))
        ds = T / CAP_SAMPLES                                               # seconds per sample
        speed = (off[1:] - off[:-1]).norm(dim=-1).max() / ds
        dyaw = torch.remainder(yaw[1:] - yaw[:-1] + math.pi, 2 * math.pi) - math.pi
        factor = max(float(speed) / MAX_SPEED, float(dyaw.abs().max()) / ds / MAX_TURN_RATE)
        if factor <= 1.0 + 1e-3:
            break
        T *= factor
    return T


# ---- revisits -----------------------------------------------------------------------------

def view_overlap(c2w_a: Tensor, c2w_b: Tensor, cfg: RevisitConfig = RevisitConfig(),
                 image: ImageConfig = ImageConfig()) -> Tensor:
    """Fraction (A, B) of each view b's sample points (coarse pixel grid x a few depths) inside
    view a's frustum. Geometry only (no occlusion): it says whether the same place is in view,
    which is what a memory must recall; the renderer's depth decides what is actually visible."""
    K = intrinsics(image.width, image.height, image.fov_x_deg)
    cols, rows = cfg.grid
    uv = pixel_grid(rows, cols) * torch.tensor([image.width / cols, image.height / rows])
    uv = uv.reshape(1, -1, 2).repeat(1, len(cfg.depths), 1)                 # (1, M, 2)
    depth = torch.tensor(cfg.depths).repeat_interleave(rows * cols)[None]  # (1, M)
    pts = unproject(uv, depth, c2w_b.float(), K)                           # (B, M, 3)
    B, M = pts.shape[:2]
    tx = math.tan(math.radians(image.fov_x_deg) / 2)                       # frustum half-widths at z = 1
    ty = tx * image.height / image.width
    R, t = c2w_a[:, :3, :3].float(), c2w_a[:, :3, 3].float()
    out = []
    for i in range(0, R.shape[0], cfg.block):
        pc = (pts.reshape(1, B * M, 3) - t[i:i + cfg.block, None]) @ R[i:i + cfg.block]  # (b, B*M, 3) camera
        z = pc[..., 2]
        inside = (z > cfg.near) & (pc[..., 0].abs() <= tx * z) & (pc[..., 1].abs() <= ty * z)
        out.append(inside.reshape(-1, B, M).float().mean(-1))              # (b, B)
    return torch.cat(out)


def find_revisits(c2w: Tensor, fps: float, cfg: RevisitConfig = RevisitConfig()) -> list[tuple[int, int, float]]:
    """For each frame i, the earlier frame j it overlaps most among those it came back to:
    i - j >= min_gap_s * fps, overlap >= min_overlap, and a frame between overlapped j at least
    `min_rise` less (so walking straight on, which only ever loses view of j, never counts)."""
    n, gap = c2w.shape[0], max(1, math.ceil(cfg.min_gap_s * fps))
    O = torch.zeros(n, n)                                                  # O[i, j] = j seen from i, j < i
    for i in range(0, n, cfg.block):                                       # lower triangle only: half the work
        O[i:i + cfg.block, :i + cfg.block] = view_overlap(c2w[i:i + cfg.block], c2w[:i + cfg.block], cfg)
    k = torch.arange(n)
    after = k[:, None] > k[None, :]
    # left[i, j]: the least overlap with j over frames j < k <= i (inf when there are none)
    left = torch.cummin(torch.where(after, O, torch.full_like(O, math.inf)), dim=0).values
    came_back = torch.cat([torch.full((1, n), math.inf), left[:-1]]) <= O - cfg.min_rise
    ok = (k[:, None] - k[None, :] >= gap) & (O >= cfg.min_overlap) & came_back
    best, j = torch.where(ok, O, torch.full_like(O, -1.0)).max(-1)
    return [(int(i), int(j[i]), round(float(best[i]), 4)) for i in range(n) if best[i] >= cfg.min_overlap]


def resolve_path(spec: str, scene, n_frames: int | None, fps: float = 16.0, seed: int = 0,
                 with_revisits: bool = True) -> Trajectory:
    """A registered path name, or a .json path file (its own length when n_frames is None)."""
    if spec in PATHS:
        if n_frames is None:
            raise WorldplayError(f"path {spec!r} needs a length; pass --seconds")
        return make_trajectory(spec, scene, n_frames, fps, seed, with_revisits)
    if not (spec.lower().endswith(".json") or Path(spec).expanduser().exists()):
        raise WorldplayError(f"unknown path {spec!r}; use one of: {', '.join(PATHS)} or a .json path file")
    traj = load_path_file(spec, fps, with_revisits)
    if n_frames is None or n_frames == len(traj):
        return traj
    if len(traj) < n_frames:
        raise WorldplayError(f"path file {spec} has {len(traj)} frames ({len(traj) / fps:.2f} s at {fps:g} fps)"
                             f" but {n_frames} were asked for; lower --seconds")
    return Trajectory(traj.name, traj.c2w[:n_frames], traj.times[:n_frames],
                      [r for r in traj.revisits if r[0] < n_frames])


# ---- path files ---------------------------------------------------------------------------

KEYS: dict[str, tuple[str, float]] = {  # key name -> (InputFrame field, amount)
    "w": ("forward", 1.0), "s": ("forward", -1.0), "d": ("strafe", 1.0), "a": ("strafe", -1.0),
    "space": ("vertical", 1.0), "c": ("vertical", -1.0), "shift": ("sprint", 1.0),
    "right": ("turn", 1.0), "left": ("turn", -1.0), "up": ("look", 1.0), "down": ("look", -1.0),
}
START_FIELDS = ("x", "y", "z", "yaw", "pitch")
RIGID_TOL = 1e-3  # how far from orthonormal a hand-written rotation may be (rounding in JSON)


def load_path_file(path, fps: float = 16.0, with_revisits: bool = True) -> Trajectory:
    """Read a JSON path file and sample it at `fps`. Two forms:

    - `{"poses": [[16 floats, row-major] or [[4 floats] x 4], ...], "fps": 16}`: camera-to-world
      matrices at the file's fps (default `fps`), resampled when it differs;
    - `{"events": [{"t": 0.0, "keys": ["w"], "mouse_dx": 0, "mouse_dy": 0}, ...],
       "start": {"x", "y", "z", "yaw", "pitch"}, "seconds": S}`: keys are held until the next
      event, mouse motion (pixels) applies once at its event, integrated by FirstPersonCamera.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WorldplayError(f"path file {p} does not exist; give an existing .json file or a path name "
                             f"({', '.join(PATHS)})")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise WorldplayError(f"path file {p} cannot be read ({e}); check its permissions and encoding") from e
    except json.JSONDecodeError as e:
        raise WorldplayError(f"path file {p} is not valid JSON ({e.msg} at line {e.lineno}); fix the file") from e
    if fps <= 0:
        raise WorldplayError(f"fps must be > 0 to sample path file {p} (got {fps})")
    if isinstance(data, dict) and "poses" in data:
        c2w = _poses_json(p, data, fps)
    elif isinstance(data, dict) and "events" in data:
        c2w = _events_json(p, data, fps)
    else:
        raise WorldplayError(f"path file {p} needs a top-level object with \"poses\" or \"events\"; see "
                             "worldplay.world.trajectories.load_path_file for the format")
    times = torch.arange(c2w.shape[0], dtype=torch.float32) / fps
    return Trajectory(f"file:{p.name}", c2w, times, find_revisits(c2w, fps) if with_revisits else [])


def _number(p: Path, value, what: str, positive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        raise WorldplayError(f"path file {p}: {what} must be a {'positive ' * positive}number, got {value!r}")
    return float(value)


def _poses_json(p: Path, data: dict, fps: float) -> Tensor:
    poses = data["poses"]
    src_fps = _number(p, data.get("fps", fps), "\"fps\"", positive=True)
    if not isinstance(poses, list) or not poses:
        raise WorldplayError(f"path file {p}: \"poses\" must be a non-empty list of 4x4 matrices")
    mats = []
    for i, m in enumerate(poses):
        flat = [v for row in m for v in row] if isinstance(m, list) and all(isinstance(r, list) for r in m) else m
        if not isinstance(flat, list) or len(flat) != 16:
            raise WorldplayError(f"path file {p}: pose {i} must be 16 numbers or a 4x4 nested list")
        mats.append([_number(p, v, f"pose {i} entries") for v in flat])
    c2w = torch.tensor(mats, dtype=torch.float64).reshape(-1, 4, 4)        # (N, 4, 4)
    R = c2w[:, :3, :3]
    err = (R.transpose(-1, -2) @ R - torch.eye(3, dtype=R.dtype)).abs().amax((-1, -2))
    bottom = (c2w[:, 3] - torch.tensor([0, 0, 0, 1.0], dtype=R.dtype)).abs().amax(-1)
    bad = ((err > RIGID_TOL) | (bottom > RIGID_TOL) | (torch.linalg.det(R) <= 0)).nonzero()
    if len(bad):
        raise WorldplayError(f"path file {p}: pose {int(bad[0])} is not a rigid camera-to-world matrix "
                             "(rotation must be orthonormal with det +1, last row 0 0 0 1)")
    return _resample(c2w, src_fps, fps).float()


def _resample(c2w: Tensor, src_fps: float, fps: float) -> Tensor:
    """Poses (N, 4, 4) at src_fps -> the same motion at fps (linear position, geodesic rotation)."""
    if abs(src_fps - fps) < 1e-9 or c2w.shape[0] == 1:
        return c2w
    n = int(math.floor((c2w.shape[0] - 1) * fps / src_fps + 1e-6)) + 1
    x = torch.arange(n, dtype=c2w.dtype) * (src_fps / fps)                 # source frame index
    i0 = x.floor().long().clamp(max=c2w.shape[0] - 2)
    w = (x - i0)[:, None]                                                  # (n, 1)
    a, b = c2w[i0], c2w[i0 + 1]
    rel = so3_log(a[:, :3, :3].transpose(-1, -2) @ b[:, :3, :3])           # (n, 3)
    R = a[:, :3, :3] @ so3_exp(rel * w)
    return make_pose(R, a[:, :3, 3] * (1 - w) + b[:, :3, 3] * w)


def _events_json(p: Path, data: dict, fps: float) -> Tensor:
    seconds = _number(p, data.get("seconds"), "\"seconds\"", positive=True)
    start = data.get("start", {})
    if not isinstance(start, dict) or set(start) - set(START_FIELDS):
        raise WorldplayError(f"path file {p}: \"start\" must be an object with keys from {', '.join(START_FIELDS)}")
    state = CameraState(**{k: _number(p, v, f"start.{k}") for k, v in start.items()})
    events = data["events"]
    if not isinstance(events, list):
        raise WorldplayError(f"path file {p}: \"events\" must be a list of {{\"t\", \"keys\", ...}} objects")
    parsed, last_t = [], 0.0
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            raise WorldplayError(f"path file {p}: event {i} must be an object like {{\"t\": 0, \"keys\": [\"w\"]}}")
        t = _number(p, ev.get("t"), f"event {i} \"t\"")
        if t < last_t:
            raise WorldplayError(f"path file {p}: event {i} has t={t} before the previous event; sort by t >= 0")
        keys = ev.get("keys", [])
        keys = [k.lower() if isinstance(k, str) else k for k in keys] if isinstance(keys, list) else [keys]
        unknown = [k for k in keys if not isinstance(k, str) or k not in KEYS]
        if unknown:
            raise WorldplayError(f"path file {p}: event {i} has unknown keys {unknown}; use {', '.join(KEYS)}")
        inp = InputFrame()
        for k in keys:
            name, amount = KEYS[k]
            setattr(inp, name, True if name == "sprint" else getattr(inp, name) + amount)
        parsed.append((t, inp, _number(p, ev.get("mouse_dx", 0), f"event {i} mouse_dx"),
                       _number(p, ev.get("mouse_dy", 0), f"event {i} mouse_dy")))
        last_t = t
    cam, dt, held = FirstPersonCamera(start=state), 1.0 / fps, InputFrame()
    poses = [cam.c2w()]
    for k in range(1, max(1, round(seconds * fps))):
        t0 = (k - 1) * dt                                                  # this tick covers [t0, t0 + dt)
        tick = InputFrame(**vars(held))
        for t, inp, dx, dy in parsed:
            if t0 - 1e-9 <= t < t0 + dt - 1e-9:
                held = inp
                tick = InputFrame(**{**vars(inp), "mouse_dx": tick.mouse_dx + dx, "mouse_dy": tick.mouse_dy + dy})
        poses.append(cam.update(tick, dt))
    return torch.stack(poses)                                              # (N, 4, 4)
