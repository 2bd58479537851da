"""`worldplay world make|show`: write dataset shards, or preview a scene as a PNG strip."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace

import torch

from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.fileio import check_writable
from worldplay.png import tile, write_png
from worldplay.world.dataset import make_dataset
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import make_trajectory

SHOW_FRAMES = 6            # views in a preview strip: enough to see the scene all round
SHOW_SECONDS = 8.0         # the strip samples one orbit of this length


def parse_size(text: str) -> ImageConfig:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not m:
        raise WorldplayError(f"--size {text!r} is not WIDTHxHEIGHT; use e.g. 640x360")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise WorldplayError(f"--size {text} is out of range; use 16..4096 on each side, e.g. 640x360")
    return replace(ImageConfig(), width=w, height=h)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="world_command", metavar="ACTION")
    mk = sub.add_parser("make", help="render scenes x trajectories into safetensors shards (resumable)")
    mk.add_argument("--scenes", type=int, required=True, help="number of scenes (consecutive seeds)")
    mk.add_argument("--frames", type=int, required=True, help="frames per trajectory")
    mk.add_argument("--out", required=True, help="output folder (created; existing complete shards are kept)")
    mk.add_argument("--start-seed", type=int, default=None,
                    help="first scene seed (default 0 for train, the first held-out seed for heldout)")
    mk.add_argument("--split", choices=("train", "heldout"), default="train",
                    help="train scenes or held-out evaluation scenes (split by seed)")
    mk.add_argument("--path", default=None,
                    help="comma-separated trajectory names (default: all of them)")
    mk.add_argument("--size", default="640x360", help="frame size WIDTHxHEIGHT (default 640x360)")
    mk.add_argument("--device", default="cpu", help="torch device for rendering (cpu or cuda)")
    sh = sub.add_parser("show", help="render a preview strip of one scene to a PNG")
    sh.add_argument("--scene", type=int, required=True, help="scene seed")
    sh.add_argument("--prompt", default=None, help="scene words (default: chosen by the seed)")
    sh.add_argument("--out", required=True, help="PNG file to write")
    sh.add_argument("--path", default="loop", help="trajectory the views are taken from (default loop)")
    sh.add_argument("--size", default="320x180", help="size of each view (default 320x180)")
    sh.add_argument("--device", default="cpu", help="torch device for rendering")
    p.set_defaults(_world_parser=p)


def run(args) -> int:
    if args.world_command == "make":
        return _make(args)
    if args.world_command == "show":
        return _show(args)
    args._world_parser.print_help()
    return 2


def _make(args) -> int:
    paths = [s.strip() for s in args.path.split(",") if s.strip()] if args.path else None
    summary = make_dataset(args.out, args.scenes, args.frames, args.start_seed, args.split, paths,
                           parse_size(args.size), args.device)
    print(f"world make: {summary['written']} shards written, {summary['skipped']} already complete "
          f"({summary['shards']} total) in {summary['out']} — seeds {summary['seeds'][0]}..{summary['seeds'][1]}, "
          f"paths {', '.join(summary['paths'])}")
    return 0


def _show(args) -> int:
    out = check_writable(args.out)
    image = parse_size(args.size)
    scene = make_scene(args.scene, args.prompt)
    n = int(SHOW_SECONDS * image.fps)
    traj = make_trajectory(args.path, scene, n, fps=image.fps, seed=args.scene, with_revisits=False)
    r = Renderer(scene, image=image, device=args.device)
    idx = torch.linspace(0, n - 1, SHOW_FRAMES).round().long()
    views = [r.render(traj.c2w[i], float(traj.times[i])).rgb.cpu() for i in idx]
    write_png(out, tile([views[: SHOW_FRAMES // 2], views[SHOW_FRAMES // 2:]]))
    print(f"world show: scene {scene.seed} \"{scene.prompt}\" -> {out}")
    return 0
