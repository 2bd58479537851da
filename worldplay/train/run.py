"""What every training stage shares: a run folder that survives interruption.

A run folder holds
    ckpt.safetensors   weights ("model.*"), EMA weights ("ema.*"), optimizer moments ("opt.*")
                       and RNG states ("rng.*"): everything needed to continue bit for bit
    state.json         step, elapsed seconds, data position, the stage config and the sha256 of
                       the ckpt it belongs to (written after the ckpt, so a crash between the two
                       is detected instead of pairing a new ckpt with an old step count)
    losses.csv         one row per logged step (appended; truncated back to `step` on resume)
    samples/           PNG strips written every few minutes so a run can be judged while it goes

Both files are written atomically (temp + rename). Only safetensors and JSON are read back.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_path, atomic_write_bytes

CKPT, STATE, LOSSES = "ckpt.safetensors", "state.json", "losses.csv"
FORMAT = "worldplay.train/1"


@dataclass(frozen=True)
class Schedule:
    lr: float = 1e-3              # AdamW peak learning rate (small models, short runs: high is fine)
    warmup: int = 200             # steps of linear warm-up from 0 (Adam's moments settle first)
    final_frac: float = 0.1       # the rate ends at lr * final_frac (cosine), over the run's budget
    weight_decay: float = 0.01    # mild: these models underfit rather than overfit
    ema: float = 0.999            # EMA decay of the shipped weights (~1000-step horizon)
    clip: float = 1.0             # gradient-norm clip: one bad batch cannot wreck a long run

    def lr_at(self, step: int, progress: float) -> float:
        """Warm-up by step, then cosine in `progress` in [0, 1] (of steps or of the time box)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        p = min(max(progress, 0.0), 1.0)
        return self.lr * (self.final_frac + (1 - self.final_frac) * 0.5 * (1 + math.cos(math.pi * p)))


class EMA:
    """Exponential moving average of a module's float parameters (the weights that ship)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))   # early steps follow the weights closely
        for k, v in module.state_dict().items():
            self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict({k: v.to(module.state_dict()[k].dtype) for k, v in self.shadow.items()})


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    """AdamW state as flat named tensors: opt.<param index>.<exp_avg|exp_avg_sq|step>. Sharded
    moments are gathered whole (a collective: every rank of a sharded run calls this)."""
    out = {}
    for i, s in opt.state_dict()["state"].items():
        for name, t in s.items():
            t = t.full_tensor() if isinstance(t, DTensor) else t
            out[f"opt.{i}.{name}"] = t.detach().cpu().reshape(-1) if t.dim() == 0 else t.detach().cpu()
    return out


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for key, t in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = t.reshape(()) if name == "step" else t
    sd["state"] = state
    opt.load_state_dict(sd)


def generator_tensor(g: torch.Generator) -> Tensor:
    return g.get_state().clone()


@dataclass
class RunState:
    stage: str
    step: int = 0
    seconds: float = 0.0           # training wall time so far, over every resumed part
    data_pos: int = 0              # how far the stage's data stream has been read
    config: dict | None = None     # the stage config it was started with (checked on resume)
    ckpt_sha256: str = ""
    init: str = ""                 # where the weights came from (a registry name, a file, "scratch")
    format: str = FORMAT


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_run(folder: Path, tensors: dict[str, Tensor], state: RunState) -> None:
    """Checkpoint atomically: the weights file first, then the state naming its hash."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / CKPT
    with atomic_path(ckpt) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    state.ckpt_sha256 = _sha(ckpt)
    atomic_write_bytes(folder / STATE, json.dumps(asdict(state), indent=2).encode())


def load_run(folder: Path, stage: str) -> tuple[dict[str, Tensor], RunState]:
    """The run's tensors and state; a clear error if the folder is not a run of this stage."""
    ckpt, st = folder / CKPT, folder / STATE
    if not ckpt.exists() or not st.exists():
        raise WorldplayError(f"--resume: {folder} holds no {stage} run ({CKPT} + {STATE}); "
                             f"start one without --resume or pick the right --out")
    try:
        raw = json.loads(st.read_text())
        state = RunState(**raw)
    except (ValueError, TypeError) as e:
        raise WorldplayError(f"--resume: {st} is not a worldplay training state ({e}); "
                             f"delete the folder to start over") from e
    if state.stage != stage:
        raise WorldplayError(f"--resume: {folder} is a {state.stage!r} run, not {stage!r}; pick another --out")
    if _sha(ckpt) != state.ckpt_sha256:
        raise WorldplayError(f"--resume: {ckpt} does not match {st} (interrupted while saving?); "
                             f"delete {st} and {ckpt} to start over")
    return load_file(str(ckpt)), state


class LossLog:
    """losses.csv of the run: appended as training goes, cut back to the resumed step."""

    def __init__(self, folder: Path, columns: list[str], resume_step: int | None):
        self.path = folder / LOSSES
        self.columns = ["step", "seconds", "lr", *columns]
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows(rows)

    def add(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: _fmt(row.get(k)) for k in self.columns})


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


class TimeBox:
    """Ends a run cleanly: after `minutes` of this part (None: no limit) or at `steps` total."""

    def __init__(self, minutes: float | None, steps: int | None, start_step: int):
        self.deadline = time.monotonic() + minutes * 60 if minutes else None
        self.minutes, self.steps, self.start_step = minutes, steps, start_step
        self.t0 = time.monotonic()

    def done(self, step: int) -> bool:
        if self.steps is not None and step >= self.steps:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline

    def progress(self, step: int) -> float:
        """Fraction of the budget spent: by steps when given, else by time (for the LR schedule)."""
        if self.steps is not None:
            return step / max(self.steps, 1)
        if self.minutes:
            return (time.monotonic() - self.t0) / (self.minutes * 60)
        return 0.0

    def left(self, step: int) -> str:
        if self.deadline is not None:
            return f"{max(self.deadline - time.monotonic(), 0) / 60:.1f} min left"
        if self.steps is not None:
            return f"{self.steps - step} steps left"
        return ""
