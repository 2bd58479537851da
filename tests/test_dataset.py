"""Dataset shards: round trip against a fresh render, resumability, split by seed, clips."""

import pytest
import torch

import worldplay.world.dataset as ds
from worldplay.cli import main
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.world.dataset import HELDOUT_SEED_START, ClipDataset, make_dataset, read_header, scan
from worldplay.world.render import Renderer
from worldplay.world.scene import make_scene
from worldplay.world.trajectories import make_trajectory

SIZE = ImageConfig(width=80, height=45)   # tiny frames: the round trip does not depend on size
FRAMES = 64                               # orbit closes its first lap here, so it has revisits
SEED = 3


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    mp = pytest.MonkeyPatch()
    mp.setattr(ds, "MAX_SHARD_BYTES", 64 * 1024 + 25 * ds.bytes_per_frame(SIZE))  # 25 frames a shard
    rc = main(["world", "make", "--scenes", "1", "--frames", str(FRAMES), "--size", "80x45",
               "--path", "orbit", "--start-seed", str(SEED), "--out", str(out)])
    assert rc == 0
    yield out, mp
    mp.undo()


def test_shards_split_and_carry_header(shards):
    out, _ = shards
    files = sorted(out.glob("*.safetensors"))
    assert [f.name for f in files] == [f"s{SEED:07d}_orbit_p{p:02d}-of-03.safetensors" for p in range(3)]
    h = read_header(files[1])
    assert h["seed"] == SEED and h["trajectory"] == "orbit" and h["split"] == "train"
    assert h["frames"] == [22, 44] and h["n_frames"] == FRAMES
    assert h["prompt"] == make_scene(SEED).prompt and h["words"] == h["prompt"].split()
    traj = make_trajectory("orbit", make_scene(SEED), FRAMES, fps=SIZE.fps, seed=SEED)
    assert [tuple(r) for r in h["revisits"]] == [tuple(r) for r in traj.revisits]


def test_frames_match_a_fresh_render(shards):
    out, _ = shards
    (stored,) = scan(out)
    scene = make_scene(SEED)
    traj = make_trajectory("orbit", scene, FRAMES, fps=SIZE.fps, seed=SEED)
    r = Renderer(scene, image=SIZE)
    idx = [0, 21, 22, 50, 63]                       # both sides of a shard boundary
    got = stored.read(idx)
    for k, i in enumerate(idx):
        f = r.render(traj.c2w[i], float(traj.times[i]))
        assert torch.equal(got["rgb"][k], f.rgb)
        assert torch.equal(got["depth"][k], f.depth.half().float())   # exact after fp16 rounding
        assert torch.equal(got["dynamic"][k], f.dynamic)
        assert torch.equal(got["c2w"][k], traj.c2w[i].float())
        assert float(got["times"][k]) == float(traj.times[i])


def test_resume_skips_complete_shards_and_refills_missing(shards):
    out, _ = shards
    files = sorted(out.glob("*.safetensors"))
    before = files[0].stat().st_mtime_ns
    files[2].unlink()
    summary = make_dataset(out, 1, FRAMES, SEED, "train", ["orbit"], SIZE, progress=False)
    assert summary["written"] == 1 and summary["skipped"] == 2 and summary["frames_rendered"] == 20
    assert files[0].stat().st_mtime_ns == before and files[2].exists()
    with pytest.raises(WorldplayError, match="other settings"):
        make_dataset(out, 1, FRAMES + 2, SEED, "train", ["orbit"], SIZE, progress=False)
    with pytest.raises(WorldplayError, match="other settings"):   # other scene, other length: still refused
        make_dataset(out, 1, 8, SEED + 1, "train", ["orbit"], SIZE, progress=False)


def test_clip_dataset_pairs_context_with_revisiting_target(shards):
    out, _ = shards
    data = ClipDataset(out, context=3, target=2)
    assert len(data) > 0
    item = data[0]
    assert item["context"]["rgb"].shape == (3, 45, 80, 3) and item["target"]["rgb"].shape == (2, 45, 80, 3)
    assert item["target"]["depth"].dtype == torch.float32 and item["K"].shape == (3, 3)
    ctx, tgt = item["indices"][:3].tolist(), item["indices"][3:].tolist()
    pairs = {i: j for i, j, _ in read_header(sorted(out.glob("*.safetensors"))[0])["revisits"]}
    assert tgt[0] in pairs and ctx[0] <= pairs[tgt[0]] <= ctx[-1] < tgt[0]
    batch = torch.utils.data.default_collate([data[0], data[len(data) - 1]])
    assert batch["target"]["c2w"].shape == (2, 2, 4, 4)


def test_split_by_seed_is_enforced(tmp_path):
    with pytest.raises(WorldplayError, match="held-out"):
        make_dataset(tmp_path, 2, 8, HELDOUT_SEED_START - 1, "train", ["orbit"], SIZE, progress=False)
    with pytest.raises(WorldplayError, match="training scene"):
        make_dataset(tmp_path, 1, 8, 0, "heldout", ["orbit"], SIZE, progress=False)
    with pytest.raises(WorldplayError, match="unknown path"):
        make_dataset(tmp_path, 1, 8, 0, "train", ["nope"], SIZE, progress=False)
    assert main(["world", "make", "--scenes", "1", "--frames", "8", "--size", "big", "--out", str(tmp_path)]) == 2


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(WorldplayError, match="world make"):
        ClipDataset(tmp_path)
