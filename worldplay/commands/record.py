"""`worldplay record`: render a scripted walk through a world to an H.264 mp4, headless.

    worldplay record --source world --scene 7 --prompt "desert dusk pillars" \\
        --path orbit --seconds 10 --out walk.mp4
    worldplay record --source model:tiny-random@full --context 16 --path loop --out model.mp4

Everything is checked before the first frame is rendered (path name or file, output folder,
scene words, device), so a typo costs a second, not a render. Ctrl-C keeps a playable mp4 of
the frames recorded so far.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from tqdm import tqdm

from worldplay.client.recorder import Mp4Recorder
from worldplay.config import ImageConfig
from worldplay.devices import resolve_device
from worldplay.errors import WorldplayError
from worldplay.fileio import check_writable
from worldplay.procstats import peak_rss_mb, rss_mb
from worldplay.sources.capabilities import Prefetching, Reports, close_source, set_context
from worldplay.sources.registry import client_spec, make_source, source_spec
from worldplay.sources.spec import SPEC_HELP
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import resolve_path

DEFAULT_SECONDS = 10.0   # a named path with no --seconds: long enough to close an orbit or loop
MAX_FPS = 120.0          # beyond this the request is a typo, not a frame rate
EXIT_INTERRUPTED = 130   # shell convention for Ctrl-C
REPORT_EVERY = 960       # frames between size reports: one a minute of video at 16 FPS
FLAT_STD = 10.0          # a frame whose pixel std is below this is flat grey, not a picture


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="world", metavar="SPEC", help=f"what to record (default world): {SPEC_HELP}")
    p.add_argument("--context", type=int, default=None, metavar="N",
                   help="start from N real frames: the source observes the path's first N frames as ground "
                        "truth before it generates (model: default 1)")
    p.add_argument("--report-every", type=int, default=REPORT_EVERY, metavar="N",
                   help=f"print memory entries, KV cache size and RSS every N frames (default {REPORT_EVERY}; 0: only at the end)")
    p.add_argument("--scene", type=int, default=0, metavar="SEED", help="scene seed (default 0)")
    p.add_argument("--prompt", nargs="+", metavar="WORD", default=None,
                   help="scene words, e.g. --prompt desert dusk pillars (default: picked from the seed)")
    p.add_argument("--path", default="orbit", metavar="PATH",
                   help="orbit, loop, out-and-back, figure-eight, random-walk, look-away, or a .json path file")
    p.add_argument("--seconds", type=float, default=None,
                   help=f"length (default {DEFAULT_SECONDS:g} s; a path file's own length)")
    p.add_argument("--out", required=True, help="output .mp4 file (written atomically)")
    p.add_argument("--fps", type=float, default=ImageConfig.fps, help="frames per second of the video")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def _validate(args) -> tuple:
    """Everything that can fail before rendering: (source, trajectory, out path)."""
    if not 1 <= args.fps <= MAX_FPS:
        raise WorldplayError(f"--fps {args.fps:g} is out of range; use 1..{MAX_FPS:g} (default 16)")
    if args.seconds is not None and not args.seconds > 0:
        raise WorldplayError(f"--seconds must be > 0 (got {args.seconds:g})")
    out = check_writable(args.out)
    if out.suffix.lower() != ".mp4":
        raise WorldplayError(f"--out {out} must end in .mp4 (the recorder writes H.264 mp4)")
    spec = source_spec(args.source)
    device = resolve_device(args.device)
    seconds = args.seconds
    if seconds is None and not args.path.lower().endswith(".json"):
        seconds = DEFAULT_SECONDS
    n = None if seconds is None else max(1, round(seconds * args.fps))
    # Trajectories need only the scene's geometry (10 ms to build); this also checks the words.
    if isinstance(args.prompt, list):
        args.prompt = " ".join(args.prompt)
    scene = make_scene(args.scene, args.prompt)
    traj = resolve_path(args.path, scene, n, args.fps, args.scene, with_revisits=False)
    spec, note = client_spec(spec, device)
    if note:
        print(note, file=sys.stderr)
    source = make_source(spec, args.scene, args.prompt, device)
    if args.context is not None:
        set_context(source, args.context)
    return source, traj, out


class Watch:
    """What a long recording prints every `every` frames and at the end: the source's sizes,
    process memory, and frames that are broken (NaN depth, or flat: pixel std below FLAT_STD)."""

    def __init__(self, source, every: int, write):
        self.source, self.every, self.write = source, every, write
        self.frames = self.flat = self.nan = 0
        self.min_std = float("inf")

    def add(self, f) -> None:
        std = float(f.rgb.float().std())
        self.min_std = min(self.min_std, std)
        self.flat += std < FLAT_STD
        self.nan += not bool(f.depth.isfinite().all())
        self.frames += 1
        if self.every and self.frames % self.every == 0:
            self.write(f"frame {self.frames}: {self.line()}")

    def line(self) -> str:
        sizes = self.source.report() if isinstance(self.source, Reports) else {}
        # counts print whole (68 keyframes, 58,729 entries), sizes with a decimal (6.6 MB)
        parts = [f"{k} {v:,.0f}" if v >= 100 or float(v).is_integer() else f"{k} {v:.1f}" for k, v in sizes.items()]
        parts += [f"RSS {rss_mb():.0f} MB (peak {peak_rss_mb():.0f})", f"flat frames {self.flat}",
                  f"NaN frames {self.nan}", f"min pixel std {self.min_std:.1f}"]
        return ", ".join(parts)


def _render(source, traj, out, fps: float, progress: bool, watch: Watch) -> tuple[int, float, bool]:
    """Render `traj` through `source` into `out`: (frames written, seconds, interrupted).
    On Ctrl-C the recorder finalises the frames it has, so the file is still playable."""
    n, chunk, image = len(traj), max(1, int(source.chunk)), ImageConfig()
    start = time.perf_counter()
    rec = Mp4Recorder(out, fps=fps, width=image.width, height=image.height)
    try:
        with rec, tqdm(total=n, unit="frame", file=sys.stderr, disable=not progress, desc="record") as bar:
            ahead = isinstance(source, Prefetching)   # it generates the next chunk while this one encodes
            for i in range(0, n, chunk):
                idx = torch.arange(i, i + chunk).clamp(max=n - 1)   # a short last chunk repeats the final pose
                frames = source.frames(traj.c2w[idx], traj.times[idx])[: n - i]
                if ahead and i + chunk < n:
                    nxt = torch.arange(i + chunk, i + 2 * chunk).clamp(max=n - 1)
                    source.prefetch(traj.c2w[nxt], traj.times[nxt])
                for f in frames:
                    rec.write(f.rgb)
                    watch.add(f)
                bar.update(len(frames))
    except KeyboardInterrupt:
        return rec.frames_written, time.perf_counter() - start, True
    return rec.frames_written, time.perf_counter() - start, False


def run(args) -> int:
    source, traj, out = _validate(args)
    watch = Watch(source, args.report_every, lambda line: print(line, file=sys.stderr, flush=True))
    try:
        done, secs, interrupted = _render(source, traj, out, args.fps, not args.no_progress, watch)
    finally:
        close_source(source)   # joins a generation worker
    if interrupted:
        msg = (f"interrupted: kept a playable {out} with the first {done} of {len(traj)} frames "
               f"({done / args.fps:.1f} s)" if done else f"interrupted before the first frame; {out} was not written")
        print(f"worldplay record: {msg}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"recorded {done} frames ({done / args.fps:.1f} s at {args.fps:g} fps) of path {traj.name} "
          f"from source {source.name} to {out}; rendered at {done / max(secs, 1e-9):.1f} frames/s")
    print(f"end: {watch.line()}")
    return 0
