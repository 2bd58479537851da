"""The Mosaic Forcing streamer, ModelSource and bench on the micro model (fast, CPU)."""

import json

import pytest
import torch
from micro_model import MICRO, micro_config, micro_streamer, orbit, run_chunks, same_frames

from worldplay import cli
from worldplay.errors import WorldplayError
from worldplay.model.dit import DiT
from worldplay.model.presets import get_preset
from worldplay.sources.capabilities import HasMemory, HasScene, HasSession, HasSpawn, ObservesContext, Prefetching
from worldplay.sources.model import ModelSource
from worldplay.sources.protocol import FrameSource
from worldplay.stream.bench import bench_streamer
from worldplay.stream.flops import flops_per_frame
from worldplay.stream.session import STAGES

N_FRAMES = 16   # 8 chunks of 2: the micro ring (2 chunks + sink) rolls over and memory gets retrieved


@pytest.fixture(scope="module")
def path():
    return orbit(N_FRAMES)


def test_same_seed_and_inputs_give_identical_frames(path):
    scene, first, traj = path
    runs = []
    for seed in (5, 5, 6):
        s = micro_streamer(seed=seed)
        s.reset(first, scene.prompt)
        runs.append(run_chunks(s, traj, 0, 8))
    assert same_frames(runs[0], runs[1])
    assert not torch.equal(runs[0][1].rgb, runs[2][1].rgb)        # the seed drives the noise
    f = runs[0][3]
    assert f.rgb.shape == (MICRO.vae.height, MICRO.vae.width, 3) and f.rgb.dtype == torch.uint8
    assert f.depth.shape == (MICRO.vae.height, MICRO.vae.width) and bool((f.depth > 0).all())
    assert torch.equal(f.c2w, traj.c2w[3]) and f.t == pytest.approx(float(traj.times[3]))


def test_first_frame_is_the_conditioning_frame(path):
    scene, first, traj = path
    s = micro_streamer()
    s.reset(first, scene.prompt)
    frames = s.step(traj.c2w[:2], traj.times[:2])
    assert torch.equal(frames[0].rgb, first.rgb) and torch.equal(frames[0].c2w, first.c2w)
    assert not torch.equal(frames[1].rgb, first.rgb)


def test_kv_cache_is_allocated_once_and_memory_kv_once_per_chunk(path, monkeypatch):
    scene, first, traj = path
    s = micro_streamer()
    ptrs = (s.cache.k.data_ptr(), s.cache.v.data_ptr())
    calls = {"memory_kv": 0, "forward_chunk": 0}
    for name in calls:
        orig = getattr(s.dit, name)

        def counted(*a, _orig=orig, _name=name, **kw):
            calls[_name] += 1
            return _orig(*a, **kw)
        monkeypatch.setattr(s.dit, name, counted)
    s.reset(first, scene.prompt)
    run_chunks(s, traj, 0, N_FRAMES)
    s.reset(first, scene.prompt)
    run_chunks(s, traj, 0, 4)
    chunks = N_FRAMES // 2 + 2
    assert calls["memory_kv"] == chunks                                  # once per chunk, not per step
    assert calls["forward_chunk"] == chunks * (MICRO.dit.steps + 1)       # S steps + one clean pass
    assert (s.cache.k.data_ptr(), s.cache.v.data_ptr()) == ptrs and s.cache.chunks_written == 2
    assert set(s.stats["ms"]) == set(STAGES) and all(v >= 0 for v in s.stats["ms"].values())


def test_memory_modes(path):
    scene, first, traj = path
    out, mems = {}, {}
    for mode in ("full", "rope", "latent", "off"):
        s = micro_streamer(memory_mode=mode)
        s.reset(first, scene.prompt)
        used = []
        frames = []
        for i in range(0, N_FRAMES, 2):
            frames += s.step(traj.c2w[i:i + 2], traj.times[i:i + 2])
            used.append(s.stats["memory_tokens"])
        out[mode], mems[mode] = frames, (len(s.memory), used)
    assert mems["off"][0] == 0 and mems["full"][0] > 0
    assert max(mems["full"][1]) > 0 and max(mems["latent"][1]) == 0     # canvas only: no tokens
    # before anything is old enough to retrieve (the KV window still holds it) all modes agree;
    # once memory is retrieved, each path changes what is generated
    first_used = next(i for i, n in enumerate(mems["full"][1]) if n > 0)
    assert first_used >= MICRO.dit.window_chunks
    k = 2 * first_used
    for mode in ("full", "rope", "latent"):
        assert same_frames(out[mode][:k], out["off"][:k])
        assert not same_frames(out[mode][k:], out["off"][k:])


def test_streamer_errors(path):
    scene, first, traj = path
    s = micro_streamer()
    with pytest.raises(WorldplayError, match="reset"):
        s.step(traj.c2w[:2], traj.times[:2])
    s.reset(first, scene.prompt)
    with pytest.raises(WorldplayError, match=r"\(2, 4, 4\)"):
        s.step(traj.c2w[:3], traj.times[:3])
    with pytest.raises(WorldplayError, match="memory mode"):
        micro_streamer(memory_mode="sometimes")
    small = type(first)(first.rgb[:10], first.depth[:10], first.dynamic[:10], first.c2w)
    with pytest.raises(WorldplayError, match="first frame"):
        s.reset(small, scene.prompt)


def test_model_source_is_a_frame_source_and_lookahead_is_exact(path):
    scene, _, traj = path
    plain = ModelSource("micro", seed=3, streamer=micro_streamer(), label="micro")
    ahead = ModelSource("micro", seed=3, streamer=micro_streamer(), label="micro", lookahead=True)
    assert isinstance(plain, FrameSource) and plain.chunk == 2
    assert all(isinstance(plain, c) for c in (HasScene, HasSpawn, HasMemory, HasSession, Prefetching, ObservesContext))
    a, b = [], []
    for i in range(0, 8, 2):
        a += plain.frames(traj.c2w[i:i + 2], traj.times[i:i + 2])
        b += ahead.frames(traj.c2w[i:i + 2], traj.times[i:i + 2])
        if i + 2 < 8:
            ahead.prefetch(traj.c2w[i + 2:i + 4], traj.times[i + 2:i + 4])
    ahead.close()
    assert same_frames(a, b)
    assert plain.hud()["chunk"] == "4" and "patches" in plain.hud()["memory"]
    plain.reset()
    again = plain.frames(traj.c2w[:2], traj.times[:2])
    assert same_frames(again, a[:2])                                      # reset starts the same session


def test_bench_streamer_reports_every_field():
    res = bench_streamer(micro_streamer(), seconds=0.01)
    for key in ("fps", "chunk_latency_p50_ms", "chunk_latency_p95_ms", "peak_memory_mb", "dit_params",
                "vae_params", "tokens_per_chunk", "tokens_per_chunk_incl_memory", "gflops_per_frame",
                *(f"ms_{s}" for s in STAGES)):
        assert key in res, key
    assert res["fps"] > 0 and res["chunks_measured"] >= 2 and res["resolution"] == "160x96"
    assert res["dit_params"] == sum(p.numel() for p in DiT(MICRO).parameters())
    with pytest.raises(WorldplayError, match="triton"):
        bench_streamer(micro_streamer(), seconds=0.01, kernels="triton")


def test_bench_cli_memory_mode_is_a_source_spec(capsys):
    assert cli.main(["bench", "--memory", "off"]) == 2
    assert "--source model@off" in capsys.readouterr().err
    assert cli.main(["bench", "--source", "model@sometimes"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown mode 'sometimes'" in err and "model[:NAME|:PATH][@full|rope|latent|off]" in err


def test_bench_cli_benches_a_list_side_by_side(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert cli.main(["bench", "--source", "world,floor", "--seconds", "0.05", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["source", "fps"] and "floor" in table
    rows = json.loads(out.read_text())["rows"]
    assert [r["source"] for r in rows] == ["world", "floor"] and all(r["fps"] > 0 for r in rows)


def test_flops_from_config_alone():
    tiny, base = flops_per_frame(get_preset("tiny")), flops_per_frame(get_preset("base"))
    assert tiny["tokens_per_chunk"] == 960 and tiny["tokens_per_chunk_incl_memory"] == 1200
    assert base["gflops_per_frame"] > 100 * tiny["gflops_per_frame"]
    off = flops_per_frame(get_preset("tiny"), memory="off")
    assert off["memory_tokens"] == 0 and off["gflops_per_frame"] < tiny["gflops_per_frame"]
    two = flops_per_frame(micro_config(), steps=1)
    assert two["dit_forwards_per_chunk"] == 2
