"""The model that ships in assets/: registered as the default, hashes match, it generates."""

import hashlib

import torch

from worldplay.checkpoints import ROOT, load_checkpoint, load_registry
from worldplay.sources.model import build_streamer
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import make_trajectory


def test_default_entry_is_trained_and_its_shards_match(one_thread):
    reg = load_registry()
    entry = reg.get(reg.default)
    assert entry.source == "assets" and not entry.random
    assert sum(f.bytes for f in entry.files) <= 40 * 2 ** 20
    for f in entry.files:
        data = (ROOT / f.path).read_bytes()
        assert len(data) == f.bytes <= 15 * 2 ** 20
        assert hashlib.sha256(data).hexdigest() == f.sha256
    _, state, info = load_checkpoint(reg.default)
    assert state is not None and info.steps is not None and info.steps > 0
    assert all(v.dtype == torch.float16 for v in state.values())


def test_default_model_generates_a_chunk_that_is_not_noise(one_thread):
    streamer, info = build_streamer(load_registry().default)
    scene = make_scene(1_000_000)
    traj = make_trajectory("orbit", scene, 4, seed=0, with_revisits=False)
    first = Renderer(scene).render(traj.c2w[0], 0.0)
    streamer.reset(first, scene.prompt)
    frames = streamer.step(traj.c2w, traj.times)
    assert len(frames) == 4
    for f in frames:
        assert torch.isfinite(f.depth).all()
        assert float(f.rgb.float().std()) >= 10.0                      # not a flat grey frame
    # a trained model continues the scene: its frame stays near the ground truth one
    gt = Renderer(scene).render(traj.c2w[1], float(traj.times[1])).rgb.float()
    err = (frames[1].rgb.float() - gt).abs().mean()
    noise = (torch.rand_like(gt) * 255 - gt).abs().mean()
    assert err < 0.5 * noise
