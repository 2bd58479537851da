"""Training stages: loss falls on a fixed batch, resume is exact, time boxes end with a
loadable checkpoint, two torchrun/gloo ranks end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from micro_model import MICRO
from train_micro import CAUSAL, VAE_MICRO, causal_stage, forcing_stage, vae_stage

from worldplay.errors import WorldplayError
from worldplay.train.loop import LoopConfig, train
from worldplay.train.run import CKPT, STATE, load_run
from worldplay.train.weights import weights_from

QUIET = dict(progress=False, sample_minutes=1e9, save_minutes=1e9, log_every=1)


def _fit_fixed(stage, steps: int, lr: float) -> tuple[float, float]:
    """Optimise the stage's loss on one fixed draw (same generator state every step)."""
    opt = torch.optim.Adam(stage.module.parameters(), lr=lr)
    state = stage.generator.manual_seed(7).get_state()
    pos = stage.data_pos()
    first = last = None
    for _ in range(steps):
        stage.generator.set_state(state)
        stage.seek(pos)          # the same example again (forcing: the same fresh rollout)
        loss = stage.loss(0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
        last = float(loss.detach())
    return first, last


def test_vae_loss_falls_on_a_fixed_batch(one_thread):
    first, last = _fit_fixed(vae_stage(replace(VAE_MICRO, refresh=0)), 25, 3e-3)
    assert last < 0.5 * first


def test_causal_loss_falls_on_a_fixed_batch(tmp_path, one_thread):
    first, last = _fit_fixed(causal_stage(tmp_path / "lat"), 25, 3e-3)
    assert last < 0.7 * first


def test_forcing_trains_on_its_own_rollouts(tmp_path, one_thread):
    stage = forcing_stage(tmp_path / "lat")
    result = train(stage, tmp_path / "run", LoopConfig(steps=4, **QUIET))
    assert all(torch.isfinite(torch.tensor(result.losses)))
    live = [r for r in stage.rollouts if r is not None]
    assert live and all(r.made >= 1 for r in live)                          # it generated chunks
    chunk = live[0].chunk - 1                                               # its context is its own output
    assert not torch.equal(live[0].context, live[0].clip.z[chunk * 2:(chunk + 1) * 2].float())
    first, last = _fit_fixed(forcing_stage(tmp_path / "lat"), 25, 3e-3)
    assert last < 0.7 * first


def test_forcing_episodes_start_anywhere_observing_what_came_before(tmp_path, one_thread):
    stage = forcing_stage(tmp_path / "lat")
    Fc, starts = stage.Fc, set()
    for q in range(12):
        ro = stage._start(q)
        starts.add(ro.chunk)
        assert 1 <= ro.chunk < len(ro.clip) // Fc                                  # a chunk left to generate
        assert torch.equal(ro.context, ro.clip.z[(ro.chunk - 1) * Fc:ro.chunk * Fc].float())   # observed
        assert (len(ro.memory) > 0) == (ro.chunk > 1)                             # and all before it in memory
    assert len(starts) > 2


@pytest.mark.parametrize("make", ["vae", "causal"])
def test_resume_is_exact(tmp_path, make, one_thread):
    build = (lambda: vae_stage()) if make == "vae" else (lambda: causal_stage(tmp_path / "lat"))
    straight = train(build(), tmp_path / "a", LoopConfig(steps=6, **QUIET)).losses
    train(build(), tmp_path / "b", LoopConfig(steps=3, **QUIET))
    resumed = train(build(), tmp_path / "b", LoopConfig(steps=6, resume=True, **QUIET)).losses
    assert resumed == pytest.approx(straight[3:], rel=1e-5, abs=1e-7)
    rows = (tmp_path / "b" / "losses.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(i) for i in range(1, 7)]   # no step logged twice


def test_time_box_ends_with_a_loadable_checkpoint(tmp_path, one_thread):
    result = train(vae_stage(), tmp_path / "run", LoopConfig(minutes=0.02, **QUIET))
    tensors, state = load_run(tmp_path / "run", "vae")
    assert state.step == result.step >= 1
    assert any(k.startswith("ema.") for k in tensors)
    assert weights_from(str(tmp_path / "run"), "vae").keys() == vae_stage().module.state_dict().keys()
    assert (tmp_path / "run" / "samples").glob("*.png")


def test_resume_refuses_a_mismatched_run(tmp_path, one_thread):
    train(vae_stage(), tmp_path / "run", LoopConfig(steps=1, **QUIET))
    with pytest.raises(WorldplayError, match="other vae settings"):
        train(vae_stage(replace(VAE_MICRO, batch=3)), tmp_path / "run", LoopConfig(steps=2, resume=True, **QUIET))
    state = json.loads((tmp_path / "run" / STATE).read_text())
    (tmp_path / "run" / CKPT).write_bytes(b"not a checkpoint")
    with pytest.raises(WorldplayError, match="does not match"):
        train(vae_stage(), tmp_path / "run", LoopConfig(steps=2, resume=True, **QUIET))
    assert state["step"] == 1


def _torchrun(worker: str, out: Path, port: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(Path(__file__).parent / worker), str(out)]
    done = subprocess.run(cmd, env=env, timeout=240, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_torchrun_gloo_ranks_end_identical(tmp_path):
    _torchrun("ddp_worker.py", tmp_path, 29517)
    from safetensors.torch import load_file
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(str(tmp_path / "start.safetensors"))
    assert any(not torch.equal(a[k], start[k]) for k in a)          # it trained
    assert (tmp_path / "run" / CKPT).exists()                       # rank 0 saved the run


def test_fsdp_sharded_run_trains_and_saves_whole_weights(tmp_path):
    """--fsdp: the DiT sharded over 2 gloo ranks trains, both ranks gather the same weights,
    and rank 0's checkpoint holds them whole (a plain DiT loads its EMA)."""
    _torchrun("fsdp_worker.py", tmp_path, 29518)
    from safetensors.torch import load_file

    from worldplay.model.dit import DiT
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(str(tmp_path / "start.safetensors"))
    assert any(not torch.equal(a[k], start[k]) for k in a)
    ckpt = load_file(str(tmp_path / "run" / CKPT))
    assert all(torch.equal(ckpt[f"model.{k}"], a[k]) for k in a)
    DiT(MICRO).load_state_dict({k[4:]: v for k, v in ckpt.items() if k.startswith("ema.")})
    assert any(k.startswith("opt.") for k in ckpt)                  # moments gathered whole too


def test_a_batch_is_the_mean_of_its_rows(tmp_path, one_thread):
    """Batched clips (the GPU setting) give the mean of the same clips' one-by-one losses."""
    one = causal_stage(tmp_path / "lat")
    two = causal_stage(tmp_path / "lat", replace(CAUSAL, batch=2))
    rows = []
    for k in range(2):
        one.generator.manual_seed(3) if k == 0 else None
        rows.append(float(one.loss(0)["loss"].detach()))
    two.generator.manual_seed(3)
    both = float(two.loss(0)["loss"].detach())
    assert both == pytest.approx(sum(rows) / 2, rel=1e-4)


def test_moving_objects_weigh_more_in_the_loss(tmp_path, one_thread):
    """A token that shows a moving object weighs 1 + moving_weight on each of its latent cells."""
    stage = causal_stage(tmp_path / "lat", replace(CAUSAL, moving_weight=16.0))
    ex, _ = stage.example(0)
    idx, p = stage.frames(ex)[0], stage.cfg.dit.patch                     # [sink | context | target]
    T = len(idx)
    ex.clip.dynamic.zero_()
    ex.clip.dynamic[idx[-1], 1, 2] = 0.25                                  # part of one token, last frame
    cw = stage.cell_weights(ex)                                            # (1, T, h, w)
    assert cw.shape[:2] == (1, T) and cw.shape[2:] == ex.clip.z.shape[2:]
    hot = torch.zeros_like(cw, dtype=torch.bool)
    hot[0, T - 1, p:2 * p, 2 * p:3 * p] = True
    assert torch.all(cw[hot] == 17.0) and torch.all(cw[~hot] == 1)
    assert torch.equal(stage.moving_cells(ex), hot[0])


def test_cached_latents_reach_the_dit_normalised_whatever_wrote_them(tmp_path):
    """A cache written by an uncalibrated VAE (raw latents; older files had no statistics at all)
    is read by the calibrated VAE as unit-scale latents, not raw ones."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from worldplay.model.vae import RGBDVAE
    from worldplay.train.latents import Clip, load_clip, save_clip, vae_hash

    vae = RGBDVAE(seed=0)
    g = torch.Generator().manual_seed(0)
    raw = (torch.randn(6, vae.cfg.latent_ch, 3, 5, generator=g) * 2.5 + 1.5).half()     # (T, C, h, w)
    n = raw.shape[0]
    clip = Clip(raw, torch.ones(n, 2, 2), torch.zeros(n, 2, 2), torch.eye(4).expand(n, 4, 4).clone(),
                torch.arange(n, dtype=torch.float64), torch.zeros(8, dtype=torch.long), [], "c")
    vid = vae_hash(vae)
    path = save_clip(tmp_path, clip, vae, vid)             # written before calibration: raw latents
    old = tmp_path / "old.safetensors"                     # the same file as older versions wrote it
    t = {k: v for k, v in load_file(str(path)).items() if not k.startswith("latent_")}
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    save_file(t, str(old), metadata=meta)
    vae.calibrate(raw.float())                              # now calibrated: stats of these latents
    for p in (path, old):
        z = load_clip(p, vae, vid).z.float()
        assert z.mean().abs() < 0.05 and (z.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05, p.name


def test_export_counts_the_shipped_steps_a_run_continued_from(tmp_path):
    """A run started with --init from shipped weights reports their steps plus its own, so the
    HUD's step count stays the whole training behind the weights."""
    from worldplay.checkpoints import TRAINING_KEY, save_checkpoint
    from worldplay.train.export import _steps
    shipped = {"dit": {"steps": 100, "minutes": 5.0, "init": "scratch", "runs": ["runs/a"]}}
    files = save_checkpoint({"dit.w": torch.zeros(2)}, tmp_path / "ship", "m", "tiny", root=tmp_path,
                            meta={TRAINING_KEY: json.dumps(shipped)})
    run = tmp_path / "run"
    run.mkdir()
    init = str(tmp_path / files[0]["path"])
    (run / STATE).write_text(json.dumps({"step": 30, "seconds": 120.0, "init": init}))
    out = _steps(str(run), "dit")
    assert out["steps"] == 130 and out["minutes"] == 7.0
    assert out["runs"] == ["runs/a", str(run)] and out["init"] == "scratch"
    (run / STATE).write_text(json.dumps({"step": 30, "seconds": 120.0, "init": "scratch"}))
    assert _steps(str(run), "dit")["steps"] == 30


def test_clips_carry_the_streamers_sink_at_every_distance(tmp_path, one_thread):
    """With a sink, a clip that does not start at frame 0 gets the trajectory's first chunk in
    front (no memory, as the streamer's first chunk had none), at its true RoPE distance or
    further back; a clip that starts at frame 0 has its sink already."""
    stage = causal_stage(tmp_path / "lat", replace(CAUSAL, targets_per_episode=8, sink_far=500))
    S, Fc, ctx = MICRO.dit.sink_frames, stage.Fc, stage.c.context_chunks
    seen = {"none": 0, "true": 0, "far": 0}
    for k in range(24):
        ex, ep = stage.example(k)
        a = (ex.chunk - ctx) * Fc
        idx, rel, s = stage.frames(ex)
        x0, _, frame_idx, _, _, mems = stage.inputs(ex, ep.memory)
        assert x0.shape[1] == len(idx) == s + (ctx + 1) * Fc and torch.equal(frame_idx, rel)
        if ex.sink_at is None:
            assert a == 0 and s == 0
            seen["none"] += 1
            continue
        assert s == S and torch.equal(idx[:S], torch.arange(S)) and mems[:S // Fc] == [None] * (S // Fc)
        assert torch.equal(x0[0, :S], ex.clip.z[:S].float())
        assert torch.equal(rel[S:], torch.arange((ctx + 1) * Fc))                 # the clip at 0, 1, ...
        assert -500 <= ex.sink_at <= -a and torch.equal(rel[:S], ex.sink_at + torch.arange(S))
        seen["true" if ex.sink_at == -a else "far"] += 1
    assert min(seen.values()) > 0, seen
