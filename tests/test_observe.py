"""The model source observes its context like the baseline: ground-truth frames go through
Streamer.observe (encode, clean pass into the KV cache, insert into memory), not generation.

With context_frames = k, the source's KV cache and memory after k frames are exactly those of a
streamer fed the same frames with `observe`, and the first generated frame is the same; k a
whole number of chunks (2 micro chunks) and a chunk and a half (the third frame's chunk is
part observed, part generated).
"""

import pytest
import torch
from micro_model import IMAGE, micro_streamer, orbit, same_frames

from worldplay.sources.model import ModelSource
from worldplay.world.render import Renderer

N_FRAMES = 12
SEED = 3          # the scene orbit() walks, and the streamer's seed (ModelSource passes its own)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def path():
    return orbit(N_FRAMES, scene_seed=SEED)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def state(s) -> tuple[dict, dict]:
    """(KV cache, memory) of a streamer, as tensors."""
    return ({k: v.clone() for k, v in s.cache.state_dict().items()},
            {k: v.clone() for k, v in s.memory.state_dict().items()})


@pytest.mark.parametrize("k", [4, 3])
def test_context_frames_are_observed_exactly_like_observe(path, k):
    scene, _, traj = path
    F = 2
    src = ModelSource("micro", seed=SEED, streamer=micro_streamer(), context_frames=k)
    shown = []
    for i in range(0, k, F):                          # every chunk that holds a context frame
        shown += src.frames(traj.c2w[i:i + F], traj.times[i:i + F])

    truth = [Renderer(scene, IMAGE).render(traj.c2w[i], float(traj.times[i])) for i in range(k)]
    ref = micro_streamer()
    ref.reset(None, scene.prompt, seed=SEED)
    ref.observe(truth)                                # whole chunks go in now; a half chunk waits
    assert len(ref.pending) == k % F
    ref_frames = ref.step(traj.c2w[k - k % F:k - k % F + F], traj.times[k - k % F:k - k % F + F]) if k % F else []

    s = src.streamer
    assert same_state(state(s)[0], state(ref)[0]) and same_state(state(s)[1], state(ref)[1])
    assert s.cache.chunks_written == (k + F - 1) // F and len(s.memory) > 0
    assert torch.equal(s.poses, ref.poses) and torch.equal(s.times, ref.times)
    assert same_frames(shown[:k], truth)              # the context is shown as it is: ground truth
    assert all(torch.equal(a.dynamic, b.dynamic) for a, b in zip(shown[:k], truth))
    if k % F:                                         # the rest of the straddling chunk was generated
        gen, ref_gen = shown[k], ref_frames[k % F]
    else:
        gen = src.frames(traj.c2w[k:k + F], traj.times[k:k + F])[0]
        ref_gen = ref.step(traj.c2w[k:k + F], traj.times[k:k + F])[0]
    assert same_frames([gen], [ref_gen]) and not same_frames([gen], [truth[-1]])


def test_more_context_changes_what_is_generated(path):
    """One real frame (TI2V) and four give different sessions: the extra frames are really used."""
    _, _, traj = path
    out = []
    for k in (1, 4):
        src = ModelSource("micro", seed=SEED, streamer=micro_streamer(), context_frames=k)
        frames = [f for i in range(0, 6, 2) for f in src.frames(traj.c2w[i:i + 2], traj.times[i:i + 2])]
        out.append(frames)
    assert same_frames(out[0][:1], out[1][:1]) and not same_frames(out[0][4:], out[1][4:])


def test_observed_frames_waiting_for_their_chunk_survive_a_save(path, tmp_path):
    scene, _, traj = path
    truth = [Renderer(scene, IMAGE).render(traj.c2w[i], float(traj.times[i])) for i in range(3)]
    a = micro_streamer()
    a.reset(None, scene.prompt, seed=SEED)
    a.observe(truth)                                  # one chunk in, one frame waiting
    a.save(tmp_path / "s.safetensors")
    b = micro_streamer(seed=99)
    b.load(tmp_path / "s.safetensors")
    assert len(b.pending) == 1 and torch.equal(b.z_pending, a.z_pending)
    assert same_frames(b.step(traj.c2w[2:4], traj.times[2:4]), a.step(traj.c2w[2:4], traj.times[2:4]))
