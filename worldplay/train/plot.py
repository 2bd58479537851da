"""`python -m worldplay.train.plot OUT.png RUN [RUN ...]`: loss curves of training runs as a PNG.

One panel per run folder (its losses.csv): the optimised loss and the logged parts against
training minutes, smoothed over a window so the trend reads through the per-step noise.
matplotlib (the `plots` extra) draws it: the README's pictures are made once, not in CI.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from worldplay.errors import WorldplayError
from worldplay.train.run import LOSSES

SMOOTH = 20   # logged rows averaged per plotted point


def _smooth(xs: list[float], n: int = SMOOTH) -> list[float]:
    out, acc = [], []
    for x in xs:
        acc = (acc + [x])[-n:]
        out.append(sum(acc) / len(acc))
    return out


def read_losses(run: Path) -> dict[str, list[float]]:
    path = run / LOSSES
    if not path.exists():
        raise WorldplayError(f"{run} has no {LOSSES}; point at a training run folder")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows if r.get(k) not in (None, "")] for k in (rows[0] if rows else {})}


def plot_runs(out: Path, runs: list[Path]) -> Path:
    import matplotlib  # matplotlib: a heavy optional dependency (the plots extra), only for README pictures
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # matplotlib, after choosing its backend

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.4), squeeze=False)
    for ax, run in zip(axes[0], runs):
        d = read_losses(run)
        minutes = [s / 60 for s in d["seconds"]]
        for key in [k for k in d if k not in ("step", "seconds", "lr")]:
            ax.plot(minutes, _smooth(d[key]), label=key, lw=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("training minutes (2-core CPU)")
        ax.set_title(f"{run.name}: {int(d['step'][-1]) if d['step'] else 0} steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m worldplay.train.plot OUT.png RUN [RUN ...]")
    print(plot_runs(Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]))
