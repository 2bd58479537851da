"""Flow-matching sampling (DESIGN §3).

Convention: x_t = (1 - t)·x0 + t·ε with t in [0, 1], t = 1 pure noise, t = 0 data.
The network always predicts the velocity v = ε − x0 (= dx_t/dt along the straight path).

Two ways to walk the schedule from t = 1 to 0, both taking the network's v:
- "euler": integrate the probability-flow ODE, x_next = x + (t_next − t)·v. Deterministic after
  the initial noise. Used by the bidirectional teacher with many steps.
- "x0-renoise": the few-step student (Self-Forcing style). Turn v into a clean estimate
  x0̂ = x − t·v, then jump to t_next by re-noising it with *fresh* noise:
  x_next = (1 − t_next)·x0̂ + t_next·ε'. Fresh noise makes each step a draw from the forward
  process at t_next, which is what the student saw in training. ε' comes from the caller's
  torch.Generator, so a seed still fixes the output.
At the last step (t_next = 0) both return x0̂ exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from worldplay.errors import WorldplayError

Mode = Literal["euler", "x0-renoise"]
MODES: tuple[str, ...] = ("euler", "x0-renoise")
ModelFn = Callable[[Tensor, Tensor], Tensor]   # (x_t (B, ...), t (B,)) -> v (B, ...)


def shift_t(t: Tensor, shift: float) -> Tensor:
    """SD3/Wan timestep shift t' = s·t / (1 + (s − 1)·t): s > 1 moves steps toward noise."""
    return shift * t / (1.0 + (shift - 1.0) * t)


@dataclass(frozen=True)
class FlowSchedule:
    steps: int = 4        # network evaluations per sample; the tiny student uses 4
    shift: float = 3.0    # timestep shift; 1.0 is the plain uniform grid

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise WorldplayError(f"sampling steps={self.steps}; use at least 1")
        if self.shift <= 0:
            raise WorldplayError(f"timestep shift={self.shift} must be positive (1.0 = no shift)")

    def timesteps(self, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
        """(steps + 1,) from exactly 1 down to exactly 0, strictly decreasing."""
        grid = torch.linspace(1.0, 0.0, self.steps + 1, dtype=torch.float64)
        return shift_t(grid, self.shift).to(device=device, dtype=dtype)

    def pairs(self) -> list[tuple[float, float]]:
        """[(t, t_next), ...] as Python floats, for loops that call the network per step."""
        ts = self.timesteps(dtype=torch.float64).tolist()
        return list(zip(ts[:-1], ts[1:]))


def add_noise(x0: Tensor, noise: Tensor, t: Tensor | float) -> Tensor:
    """Forward process x_t = (1 − t)·x0 + t·ε; a tensor t is per sample (B,) or per frame (B, F)."""
    t = _as_batch(t, x0)
    return (1.0 - t) * x0 + t * noise


def x0_from_v(x: Tensor, v: Tensor, t: Tensor | float) -> Tensor:
    """x0̂ = x_t − t·v, exact when v = ε − x0."""
    return x - _as_batch(t, x) * v


def euler_step(x: Tensor, v: Tensor, t: float, t_next: float) -> Tensor:
    """One probability-flow ODE step: x_next = x + (t_next − t)·v."""
    return x + (t_next - t) * v


def renoise_step(x: Tensor, v: Tensor, t: float, t_next: float,
                 generator: torch.Generator | None) -> Tensor:
    """Student step: predict x0̂ = x − t·v, then re-noise to t_next with fresh seeded noise."""
    x0 = x0_from_v(x, v, t)
    if t_next <= 0.0:
        return x0
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (1.0 - t_next) * x0 + t_next * eps


def step(x: Tensor, v: Tensor, t: float, t_next: float, mode: Mode = "euler",
         generator: torch.Generator | None = None) -> Tensor:
    """One step of either mode; the streamer calls this between its own network calls."""
    if mode == "euler":
        return euler_step(x, v, t, t_next)
    if mode == "x0-renoise":
        return renoise_step(x, v, t, t_next, generator)
    raise WorldplayError(f"unknown sampling mode {mode!r}; use one of {', '.join(MODES)}")


def sample(model_fn: ModelFn, shape: tuple[int, ...], steps: int | FlowSchedule,
           generator: torch.Generator | None, mode: Mode = "euler", shift: float = 1.0,
           noise: Tensor | None = None, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Draw x0 of `shape` (batch first) by walking t from 1 to 0.

    `model_fn(x_t, t)` gets t as a (B,) tensor and returns v. `noise` replaces the initial
    draw (then `generator` only feeds re-noising). Same generator state = same output.
    """
    schedule = steps if isinstance(steps, FlowSchedule) else FlowSchedule(steps, shift)
    if mode not in MODES:
        raise WorldplayError(f"unknown sampling mode {mode!r}; use one of {', '.join(MODES)}")
    if noise is None:
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    else:
        x = noise.to(device=device or noise.device, dtype=dtype)
    batch = x.shape[0]
    for t, t_next in schedule.pairs():
        t_vec = torch.full((batch,), t, device=x.device, dtype=x.dtype)  # (B,)
        v = model_fn(x, t_vec)
        x = step(x, v, t, t_next, mode, generator)
    return x


def _as_batch(t: Tensor | float, like: Tensor) -> Tensor | float:
    """A (B,) or (B, F) t gets trailing ones, (B, [F,] 1, ..., 1), so it scales each sample (or each
    frame of each sample); floats pass through."""
    if isinstance(t, Tensor) and 0 < t.dim() < like.dim():
        return t.view(*t.shape, *([1] * (like.dim() - t.dim())))  # (B, [F,] 1, ..., 1)
    return t
