"""Whole-session save/load: resuming gives exactly the frames an uninterrupted run gives."""

import pytest
import torch
from micro_model import micro_streamer, orbit, run_chunks, same_frames

from worldplay.errors import WorldplayError
from worldplay.memory.memory import MosaicMemory
from worldplay.sources.model import ModelSource

N_FRAMES = 16


def started(path):
    """A micro streamer reset onto the path's scene and first frame."""
    scene, first, _ = path
    s = micro_streamer()
    s.reset(first, scene.prompt)
    return s


@pytest.fixture(scope="module")
def path():
    return orbit(N_FRAMES)


@pytest.fixture(scope="module")
def uninterrupted(path):
    scene, first, traj = path
    s = started(path)
    return run_chunks(s, traj, 0, N_FRAMES)


@pytest.mark.parametrize("stop_at", [0, 10])   # before the first chunk; after the ring rolled over
def test_save_load_continue_equals_uninterrupted(path, uninterrupted, tmp_path, stop_at):
    scene, first, traj = path
    a = started(path)
    head = run_chunks(a, traj, 0, stop_at)
    f = tmp_path / "session.safetensors"
    a.save(f)
    b = micro_streamer(seed=99)                    # the seed comes from the file
    b.load(f)
    assert b.chunk == a.chunk and b.frame == a.frame and len(b.memory) == len(a.memory)
    assert torch.equal(b.poses, a.poses)
    tail = run_chunks(b, traj, stop_at, N_FRAMES)
    assert same_frames(head + tail, uninterrupted)
    assert same_frames(run_chunks(a, traj, stop_at, N_FRAMES), tail)   # saving does not disturb a run


def test_memory_in_a_session_file_reads_as_a_memory(path, tmp_path):
    scene, first, traj = path
    s = started(path)
    run_chunks(s, traj, 0, 6)
    f = tmp_path / "s.safetensors"
    s.save(f)
    assert len(MosaicMemory.load(f)) == len(s.memory) > 0


def test_loading_a_session_of_another_checkpoint_is_a_clear_error(path, tmp_path):
    scene, first, traj = path
    s = started(path)
    run_chunks(s, traj, 0, 4)
    f = tmp_path / "s.safetensors"
    s.save(f)
    other = micro_streamer(weights_seed=2)
    with pytest.raises(WorldplayError, match="another checkpoint"):
        other.load(f)
    with pytest.raises(WorldplayError, match="steps"):
        micro_streamer(steps=1).load(f)
    mem_only = tmp_path / "m.safetensors"
    s.memory.save(mem_only)
    with pytest.raises(WorldplayError, match="not a streaming session"):
        micro_streamer().load(mem_only)
    with pytest.raises(WorldplayError, match="not found"):
        micro_streamer().load(tmp_path / "missing.safetensors")


def test_model_source_save_and_load(path, tmp_path):
    _, _, traj = path
    a = ModelSource("micro", seed=3, streamer=micro_streamer())
    b = ModelSource("micro", seed=3, streamer=micro_streamer())
    ref = []
    for i in range(0, 8, 2):
        ref += a.frames(traj.c2w[i:i + 2], traj.times[i:i + 2])
    for i in range(0, 4, 2):
        b.frames(traj.c2w[i:i + 2], traj.times[i:i + 2])
    b.save(tmp_path / "b.safetensors")
    c = ModelSource("micro", seed=3, streamer=micro_streamer())
    c.load(tmp_path / "b.safetensors")
    tail = c.frames(traj.c2w[4:6], traj.times[4:6]) + c.frames(traj.c2w[6:8], traj.times[6:8])
    assert same_frames(tail, ref[4:])


def test_a_session_damaged_past_the_header_leaves_the_running_one_unchanged(path, uninterrupted, tmp_path):
    from worldplay.session_file import load_session, save_session

    scene, first, traj = path
    a = started(path)
    run_chunks(a, traj, 0, 8)
    good = tmp_path / "good.safetensors"
    a.save(good)
    tensors, meta = load_session(good)
    tensors["cache.k"] = tensors["cache.k"][..., :-1].contiguous()   # header fine, a tensor wrong
    bad = tmp_path / "bad.safetensors"
    save_session(bad, tensors, meta)

    b = started(path)
    head = run_chunks(b, traj, 0, 4)
    with pytest.raises(WorldplayError, match="bad.safetensors.*unchanged"):
        b.load(bad)
    tail = run_chunks(b, traj, 4, N_FRAMES)       # goes on as if the load was never asked
    assert same_frames(head + tail, uninterrupted)
