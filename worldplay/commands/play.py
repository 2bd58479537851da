"""`worldplay play`: walk a world in a window (WASD + mouse), or offscreen with --headless.

Without a display (and without --headless) this fails with one line saying what to use
instead, before any scene is built.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from worldplay.client.app import App
from worldplay.client.input import controls_text
from worldplay.client.window import NO_DISPLAY
from worldplay.config import ClientConfig, ControlsConfig, ImageConfig
from worldplay.devices import resolve_device
from worldplay.errors import WorldplayError
from worldplay.fileio import check_writable
from worldplay.sources.capabilities import HasSession, Prefetching, close_source, set_context
from worldplay.sources.registry import client_spec, make_source, source_spec
from worldplay.sources.spec import SPEC_HELP

HEADLESS_SECONDS = 10.0   # world seconds a --headless run plays when --seconds is not given
SCALES = (1, 2)           # window = 640x360 times this


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="model", metavar="SPEC",
                   help=f"what to show (default model: checkpoints.toml's default; world is the "
                        f"ground-truth renderer): {SPEC_HELP}")
    p.add_argument("--context", type=int, default=None, metavar="N",
                   help="start from N real frames: the source observes N ground-truth frames before it "
                        "generates (model: default 1, the first frame)")
    p.add_argument("--session", default=None, metavar="FILE",
                   help="resume a saved session file (F6 saves one into sessions/) with the --source "
                        "model it was saved with")
    p.add_argument("--side-by-side", action="store_true",
                   help="show ground truth at the same pose beside each frame (B toggles)")
    p.add_argument("--scene", type=int, default=0, metavar="SEED", help="scene seed (default 0)")
    p.add_argument("--prompt", nargs="+", metavar="WORD",
                   help="scene words, e.g. --prompt desert dusk pillars (default: picked from the seed)")
    p.add_argument("--device", default="cpu", help="torch device for the source: cpu or cuda")
    p.add_argument("--scale", type=int, default=1, choices=SCALES, help="window is 640x360 times this")
    p.add_argument("--fullscreen", action="store_true", help="start fullscreen (F11 toggles)")
    p.add_argument("--booth", action="store_true",
                   help="demo booth: fullscreen, attract loop when idle, Esc does not quit "
                        "(Ctrl+Shift+Q does)")
    p.add_argument("--idle-seconds", type=float, default=None, metavar="S",
                   help=f"booth: start the attract loop after S seconds without input "
                        f"(default {ClientConfig.booth_idle_seconds:g})")
    p.add_argument("--headless", action="store_true",
                   help=f"no window: run the loop offscreen (needs no display; plays "
                        f"{HEADLESS_SECONDS:g} s unless --seconds is given)")
    p.add_argument("--seconds", type=float, default=None, metavar="S",
                   help="stop after S seconds of world time")
    p.add_argument("--record", metavar="FILE.mp4", help="record the session to this mp4 from the start")
    p.add_argument("--sensitivity", type=float, default=1.0, metavar="X",
                   help="mouse sensitivity multiplier (default 1.0; 0.5 = half as fast)")
    p.add_argument("--invert-y", action="store_true", help="mouse up looks down (flight style)")


def has_display() -> bool:
    """On Linux a window needs X11 or Wayland (or an explicit SDL driver); elsewhere assume yes
    and let opening the window decide."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"))


def _validate(args: argparse.Namespace) -> None:
    if args.seconds is not None and args.seconds <= 0:
        raise WorldplayError(f"--seconds {args.seconds:g} must be > 0")
    if args.sensitivity <= 0:
        raise WorldplayError(f"--sensitivity {args.sensitivity:g} must be > 0 (1.0 is the default speed)")
    if args.idle_seconds is not None and args.idle_seconds <= 0:
        raise WorldplayError(f"--idle-seconds {args.idle_seconds:g} must be > 0")
    if args.record is not None and not args.record.lower().endswith(".mp4"):
        raise WorldplayError(f"--record {args.record}: give a file name ending in .mp4")


def run(args: argparse.Namespace) -> int:
    _validate(args)
    if not args.headless and not has_display():
        raise WorldplayError(NO_DISPLAY)
    if args.record:
        check_writable(args.record)
    prompt = " ".join(args.prompt) if args.prompt else None
    spec = source_spec(args.source)          # a bad spec or device fails before any scene is built
    device = resolve_device(args.device)
    base = ClientConfig()
    client = ClientConfig(scale=args.scale, fullscreen=args.fullscreen or args.booth,
                          booth_idle_seconds=args.idle_seconds or base.booth_idle_seconds,
                          side_by_side=args.side_by_side)
    controls = ControlsConfig(mouse_sensitivity=ControlsConfig.mouse_sensitivity * args.sensitivity,
                              invert_y=args.invert_y)
    spec, note = client_spec(spec, device)
    if note:
        print(note)
    source = make_source(spec, args.scene, prompt, device)
    try:
        if args.context is not None:
            set_context(source, args.context)
        if args.session is not None:
            if not isinstance(source, HasSession):
                raise WorldplayError(f"--session {args.session}: source {source.name!r} keeps no session; "
                                     f"use --source model[:NAME] (the model the session was saved with)")
            source.load(args.session)     # the app starts at the session's last pose
        return _play(args, source, client, controls, prompt)
    finally:
        close_source(source)              # joins a generation worker


def _play(args, source, client: ClientConfig, controls: ControlsConfig, prompt: str | None) -> int:
    seconds = args.seconds if args.seconds is not None or not args.headless else HEADLESS_SECONDS
    print(controls_text(client.booth_quit_combo, booth=args.booth))
    t0 = time.perf_counter()
    with App(source, client, controls, ImageConfig(), headless=args.headless, booth=args.booth,
             seed=args.scene, prompt=prompt) as app:
        if args.record:
            app.capture.start(args.record)
        app.run(seconds=seconds)
        wall = time.perf_counter() - t0
        rate = (f"model {source.gen_fps:.1f} frames/s generated" if isinstance(source, Prefetching)
                else f"source {app.source_ms:.0f} ms/frame")
        print(f"played {app.frames_shown} frames ({app.sim_t:.1f} s of world time) in {wall:.1f} s "
              f"({app.frames_shown / max(wall, 1e-9):.1f} frames/s), {rate}")
    return 0
