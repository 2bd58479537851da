"""The one training loop every stage runs: time box, EMA, logging, samples, exact resume.

A stage (train/vae.py, train/causal.py, train/forcing.py) supplies the module it trains and
three callbacks: `loss(step)` for one optimisation step's losses (key "loss" is optimised, the
rest are logged), `validate(ema_module)` for held-out numbers, and `sample(ema_module, path)`
for a PNG strip. Its data position is an int (`data_pos` / `seek`), so a resumed run reads
the same batches an uninterrupted one would: with the RNG states restored, losses match
step for step (tests/test_train.py).
"""

from __future__ import annotations

import copy
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from worldplay.errors import WorldplayError
from worldplay.train.run import (EMA, LossLog, RunState, Schedule, TimeBox, generator_tensor, load_optimizer,
                                 load_run, optimizer_tensors, save_run)
from worldplay.train.sharding import full, like, shard_module


@dataclass(frozen=True)
class LoopConfig:
    minutes: float | None = None        # time box of this part; ends with a checkpoint
    steps: int | None = None            # or a total step count (tests, exact comparisons)
    resume: bool = False                # continue the run in the folder (weights, optimizer, RNG, data)
    save_minutes: float = 5.0           # checkpoint this often: an interruption loses at most this
    sample_minutes: float = 5.0         # PNG strip + validation this often
    log_every: int = 10                 # steps per losses.csv row (averaged)
    seed: int = 0                       # the run's RNG seed (noise, batch choice)
    progress: bool = True               # tqdm bar with loss, steps/s and time left
    fsdp: bool = False                  # under torchrun, shard the module over the ranks (sharding.py):
                                        # for models too large to hold whole on every rank (base)
    bf16: bool = False                  # with fsdp: gather parameters in bf16, reduce gradients in fp32
    schedule: Schedule = field(default_factory=Schedule)


class Stage(Protocol):
    name: str
    loss_names: list[str]               # the extra losses.csv columns `loss` returns
    module: nn.Module                   # what the optimiser trains and the EMA tracks
    generator: torch.Generator          # every random draw of the stage
    config: dict                        # the stage's own settings (stored, checked on resume)

    def loss(self, step: int) -> dict[str, Tensor]: ...
    def data_pos(self) -> int: ...
    def seek(self, pos: int) -> None: ...
    def shard(self, rank: int, world: int) -> None: ...   # data parallel: draw this rank's share
    def validate(self, module: nn.Module) -> dict[str, float]: ...
    def sample(self, module: nn.Module, path: Path) -> None: ...


@dataclass
class LoopResult:
    step: int
    seconds: float
    losses: list[float]                 # every step's optimised loss in this part (for tests)
    validation: dict[str, float]


def _ema_module(stage: Stage, ema: EMA, template: nn.Module | None = None,
                shadow: dict[str, Tensor] | None = None) -> nn.Module:
    """The stage's module with EMA weights, in eval mode (a copy; training weights untouched).
    A sharded run passes its whole-module `template` (on the meta device) and the gathered EMA."""
    if template is None:
        m = copy.deepcopy(stage.module)
        ema.copy_to(m)
        return m.eval()
    m = copy.deepcopy(template)
    m.load_state_dict({k: v.to(torch.float32) for k, v in shadow.items()}, assign=True)
    device = next(iter(shadow.values())).device
    return m.to(device).eval()


def world_rank() -> tuple[int, int]:
    """(world size, rank) under torchrun; (1, 0) in a plain process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def average_gradients(module: nn.Module, world: int) -> None:
    """Data parallelism (DDP's all-reduce): every rank steps with the mean gradient of all ranks,
    so the ranks' weights stay identical. Stages call model methods other than forward(), which
    DistributedDataParallel's wrapper would not see, hence the explicit reduce."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


def broadcast_weights(module: nn.Module) -> None:
    for t in module.state_dict().values():
        dist.broadcast(t, src=0)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def train(stage: Stage, folder: Path, cfg: LoopConfig, init: str = "scratch",
          on_save: Callable[[nn.Module, RunState], None] | None = None) -> LoopResult:
    """Run `stage` until the time box or step count ends; checkpoint into `folder`."""
    folder = Path(folder)
    s = cfg.schedule
    world, rank = world_rank()
    main = rank == 0
    config = json.loads(json.dumps(stage.config))   # as state.json stores it (tuples become lists)
    state = RunState(stage=stage.name, config=config, init=init)
    tensors: dict[str, Tensor] | None = None
    if cfg.resume:
        tensors, state = load_run(folder, stage.name)
        if state.config != config:
            raise WorldplayError(f"--resume: {folder} was started with other {stage.name} settings "
                                 f"({state.config}); resume with those or use another --out")
        stage.module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if world > 1:
        broadcast_weights(stage.module)   # every rank starts from rank 0's weights
    sharded = cfg.fsdp and world > 1
    # validation and samples run on rank 0 on a whole copy; its storage is filled only then
    template = copy.deepcopy(stage.module).to("meta") if sharded and main else None
    if sharded:
        shard_module(stage.module, cfg.bf16)
    opt = torch.optim.AdamW([p for p in stage.module.parameters() if p.requires_grad], lr=s.lr,
                            weight_decay=s.weight_decay, betas=(0.9, 0.99))
    ema = EMA(stage.module, s.ema)
    if tensors is not None:
        ema.shadow = {k[4:]: like(v.float(), ema.shadow[k[4:]]) for k, v in tensors.items() if k.startswith("ema.")}
        if sharded:   # moments are saved whole; they are not re-sharded, so a sharded resume starts Adam afresh
            print(f"train {stage.name}: --resume under --fsdp restores weights, EMA, data and RNG; "
                  f"the optimizer moments start afresh", flush=True)
        else:
            load_optimizer(opt, tensors)
        stage.generator.set_state(tensors["rng.stage"])
        torch.set_rng_state(tensors["rng.torch"])
        stage.seek(state.data_pos)
    else:
        stage.generator.manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
    if world > 1:   # each rank draws its own batches and noise (resuming under torchrun reseeds)
        stage.generator.manual_seed(cfg.seed + 1_000_003 * rank + state.step)
        stage.shard(rank, world)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "samples").mkdir(exist_ok=True)
    if main:
        log = LossLog(folder, ["loss", *stage.loss_names], state.step if cfg.resume else None)
    box = TimeBox(cfg.minutes, cfg.steps, state.step)
    start_seconds, t_start = state.seconds, time.monotonic()
    last_save = last_sample = time.monotonic()
    losses: list[float] = []
    acc: dict[str, float] = {}
    validation: dict[str, float] = {}

    def checkpoint() -> None:
        if not (main or sharded):   # a sharded run's ranks all join the gathers
            return
        weights, shadow = full(stage.module.state_dict()), full(ema.shadow)
        moments = optimizer_tensors(opt)
        if not main:
            return
        state.seconds = start_seconds + time.monotonic() - t_start
        state.data_pos = stage.data_pos()
        tensors = {**{f"model.{k}": v for k, v in weights.items()}, **{f"ema.{k}": v for k, v in shadow.items()},
                   **moments, "rng.stage": generator_tensor(stage.generator), "rng.torch": torch.get_rng_state()}
        save_run(folder, tensors, state)
        if on_save is not None:
            on_save(_ema_module(stage, ema, template, shadow), state)

    def look(tag: str) -> dict[str, float]:
        shadow = full(ema.shadow) if sharded else None   # every rank joins the gather
        if not main:
            return {}
        m = _ema_module(stage, ema, template, shadow)
        with torch.no_grad():
            val = stage.validate(m)
            stage.sample(m, folder / "samples" / f"{tag}.png")
        return val

    signal.signal(signal.SIGTERM, _interrupt)   # `kill` ends a background run like Ctrl-C: saved
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"train {stage.name}", unit="step",
               disable=not (cfg.progress and main), dynamic_ncols=True)
    stage.module.train()
    try:
        while not box.done(state.step):
            lr = s.lr_at(state.step, box.progress(state.step))
            for g in opt.param_groups:
                g["lr"] = lr
            parts = stage.loss(state.step)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                raise WorldplayError(f"train {stage.name}: loss became {loss.item()} at step {state.step}; "
                                     f"lower the learning rate or resume from the last checkpoint")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1 and not sharded:   # FSDP reduce-scatters the gradients itself
                average_gradients(stage.module, world)
            torch.nn.utils.clip_grad_norm_(stage.module.parameters(), s.clip)
            opt.step()
            ema.update(stage.module, state.step)
            state.step += 1
            losses.append(float(loss.detach()))
            for k, v in parts.items():
                acc[k] = acc.get(k, 0.0) + float(v.detach())
            if state.step % cfg.log_every == 0 and not main:
                acc = {}
            elif state.step % cfg.log_every == 0:
                log.add({"step": state.step, "lr": lr,
                         "seconds": start_seconds + time.monotonic() - t_start,
                         **{k: v / cfg.log_every for k, v in acc.items()}})
                bar.set_postfix_str(f"loss {acc['loss'] / cfg.log_every:.4f} lr {lr:.1e} {box.left(state.step)}")
                acc = {}
            bar.update(1)
            now = time.monotonic()
            if now - last_sample >= cfg.sample_minutes * 60:
                validation = look(f"step{state.step:07d}")
                bar.write(f"step {state.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in validation.items()))
                last_sample = time.monotonic()
            if now - last_save >= cfg.save_minutes * 60:
                checkpoint()
                last_save = time.monotonic()
    except KeyboardInterrupt:   # Ctrl-C ends the part like the time box: with a checkpoint
        bar.write(f"train {stage.name}: interrupted at step {state.step}; saving")
    finally:
        bar.close()
    checkpoint()
    validation = look(f"step{state.step:07d}")
    if not main:
        return LoopResult(state.step, state.seconds, losses, validation)
    print(f"train {stage.name}: step {state.step}, {state.seconds / 60:.1f} min in all; "
          + ", ".join(f"{k} {v:.4g}" for k, v in validation.items()) + f"; saved {folder}", flush=True)
    return LoopResult(state.step, state.seconds, losses, validation)

