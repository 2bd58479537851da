"""`worldplay eval --source SPEC[,SPEC...] [--quick | --long] [--json r.json] [--out DIR]`: the paper's table."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from worldplay.errors import WorldplayError
from worldplay.eval.protocol import LONG, QUICK, ProtocolConfig, protocol_dict, run_protocol
from worldplay.eval.report import markdown, write_json, write_report
from worldplay.fileio import check_writable
from worldplay.procstats import peak_rss_mb
from worldplay.sources.registry import make_source, source_specs
from worldplay.sources.spec import SPEC_HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="world", metavar="SPEC[,SPEC...]",
                   help=f"frame sources to score, comma-separated, one table row each: {SPEC_HELP}")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="2 held-out scenes x 2 paths (orbit, look-away) x 128 frames "
                           "(a few minutes on a 2-core CPU)")
    size.add_argument("--long", action="store_true",
                      help="1 held-out scene, the loop path, 960 frames (two laps, 60 s): adds revisit PSNR "
                           "over the first and the last 25 %% of revisit frames (drift)")
    p.add_argument("--scenes", type=int, default=None, help="override the number of held-out scenes")
    p.add_argument("--frames", type=int, default=None, help="override frames per trajectory")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    p.add_argument("--out", default=None, help="folder for report.md, report.json and strip.png")
    p.add_argument("--device", default="cpu", help="torch device for sources and ground truth (cpu or cuda)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")


def protocol_config(args):
    cfg = QUICK if args.quick else LONG if args.long else ProtocolConfig()
    if args.scenes is not None:
        if args.scenes < 1:
            raise WorldplayError(f"--scenes must be >= 1 (got {args.scenes})")
        cfg = replace(cfg, scenes=args.scenes)
    if args.frames is not None:
        if args.frames < 24:
            raise WorldplayError(f"--frames must be >= 24 so trajectories can leave and come back (got {args.frames})")
        cfg = replace(cfg, frames=args.frames)
    return cfg


def run(args) -> int:
    specs = source_specs(args.source)      # every spec checked first: a bad one fails in one line
    if args.json:
        check_writable(args.json)          # fail before minutes of work, not after
    cfg = protocol_config(args)
    sources = [make_source(s, 0, None, args.device) for s in specs]   # build all before minutes of scoring
    names = [s.text for s in specs]        # rows show the specs as typed
    rows, pairs = [], {}
    for name, src in zip(names, sources):
        strip: list = []
        rows.append(run_protocol(src, cfg, args.device, progress=not args.no_progress, strip=strip))
        rows[-1]["method"] = name
        pairs[name] = strip
    proto = protocol_dict(cfg)
    rss = peak_rss_mb()
    print(markdown(rows, proto, args.device, rss))
    print(f"peak resident memory: {rss:.0f} MB")
    if args.json:
        print(f"wrote {write_json(args.json, rows, proto, args.device, rss)}")
    if args.out:
        for f in write_report(Path(args.out), rows, proto, args.device, pairs, rss):
            print(f"wrote {f}")
    return 0
