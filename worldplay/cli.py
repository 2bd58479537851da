"""`worldplay play|record|bench|eval|train|world|download|info`.

Each subcommand lives in its own module, worldplay/commands/<name>.py, exposing
`add_arguments(parser)` and `run(args) -> int`; this file only wires them up and turns
`WorldplayError` into a one-line message (exit 2). Only the module of the command being run is
imported (its arguments are declared then), so `worldplay --help` stays fast without torch or
pygame, and one broken feature cannot take the others down.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from worldplay.errors import WorldplayError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "play": ("worldplay.commands.play", "walk a world in a window (WASD + mouse)"),
    "record": ("worldplay.commands.record", "record a scripted walk to an H.264 mp4, headless"),
    "bench": ("worldplay.commands.bench", "measure frames/s and per-stage timings, print and write JSON"),
    "eval": ("worldplay.commands.eval", "run the evaluation protocol (the paper's table) on a frame source"),
    "train": ("worldplay.commands.train", "train the VAE / teacher / causal student (resumable, time-boxed)"),
    "world": ("worldplay.commands.world", "MosaicWorld scenes and datasets (`world make`, `world show`)"),
    "download": ("worldplay.commands.download", "fetch a checkpoint listed in checkpoints.toml from its hub"),
    "info": ("worldplay.commands.info", "versions, device, and whether CUDA/Triton are usable"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand with its one-line help; the full arguments of `command` only."""
    p = argparse.ArgumentParser(prog="worldplay", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(_module=mod)
        if name == command:
            importlib.import_module(mod).add_arguments(sp)
    return p


def command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line: its first word (the top level has only -h)."""
    words = [a for a in argv if not a.startswith("-")]
    return words[0] if words and words[0] in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except WorldplayError as e:
        print(f"worldplay {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error; silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"worldplay {args.command}: interrupted", file=sys.stderr)
        return 130
