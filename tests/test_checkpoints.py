"""Registry, safetensors shards, hashes and every user-facing checkpoint error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from worldplay import checkpoints as ck
from worldplay.commands.download import download
from worldplay.errors import WorldplayError

SHARD_MB = 0.02   # ~20 KiB: forces the dummy model (~50 KiB) across several shards


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.mlp = nn.Linear(dim, dim)


class Dummy(nn.Module):
    def __init__(self, dim: int = 32, depth: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.blocks = nn.ModuleList(Block(dim) for _ in range(depth))


def write_registry(root: Path, models: list[str], default: str | None = None) -> Path:
    path = root / "checkpoints.toml"
    head = f'default = "{default}"\n\n' if default else ""
    path.write_text(head + "\n".join(models))
    return path


@pytest.fixture
def saved(tmp_path):
    """A dummy model saved as an assets entry of a registry in tmp_path."""
    model = Dummy()
    files = ck.save_checkpoint(model.state_dict(), tmp_path / "assets", "toy", "tiny",
                               shard_mb=SHARD_MB, root=tmp_path)
    reg = write_registry(tmp_path, [ck.registry_entry("toy", "tiny", files, "a toy")])
    return model, files, reg


def test_save_load_round_trip_across_shards(saved, tmp_path):
    model, files, reg = saved
    assert len(files) >= 2
    for f in files:
        assert f["path"].startswith("assets/toy-0000")
        assert f["bytes"] <= SHARD_MB * ck.MIB
        assert ck.sha256_file(tmp_path / f["path"]) == f["sha256"]
    cfg, state, info = ck.load_checkpoint("toy", registry=reg, expected_shapes=ck.shapes_of(model))
    assert cfg.name == "tiny" and not info.random and info.label == "toy"
    assert [h for _, h in info.files] == [f["sha256"] for f in files]
    ref = model.state_dict()
    assert set(state) == set(ref)
    for k in ref:
        assert torch.equal(state[k], ref[k])
    fresh = Dummy(seed=1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.blocks[2].mlp.weight, model.blocks[2].mlp.weight)


def test_registry_entry_text_parses_back(saved):
    _, files, reg = saved
    entry = ck.load_registry(reg).get("toy")
    assert entry.source == "assets" and entry.description == "a toy"
    assert [(f.path, f.sha256, f.bytes) for f in entry.files] == \
        [(f["path"], f["sha256"], f["bytes"]) for f in files]


def test_load_from_folder_reads_preset_from_metadata(saved, tmp_path):
    model, _, reg = saved
    cfg, state, info = ck.load_checkpoint(tmp_path / "assets", registry=reg)
    assert cfg.name == "tiny" and info.source == "file" and len(info.files) >= 2
    assert torch.equal(state["blocks.0.attn.qkv.weight"], model.blocks[0].attn.qkv.weight)


def test_resave_with_fewer_shards_removes_stale_ones(saved, tmp_path):
    model, files, _ = saved
    again = ck.save_checkpoint(model.state_dict(), tmp_path / "assets", "toy", "tiny", root=tmp_path)
    assert len(again) == 1
    assert sorted(p.name for p in (tmp_path / "assets").iterdir()) == ["toy-00001.safetensors"]


def test_missing_shard(saved, tmp_path):
    _, files, reg = saved
    (tmp_path / files[1]["path"]).unlink()
    with pytest.raises(WorldplayError, match=r"assets/toy-00002\.safetensors is missing; restore it from git"):
        ck.load_checkpoint("toy", registry=reg)


def test_sha_mismatch(saved, tmp_path):
    _, files, reg = saved
    p = tmp_path / files[0]["path"]
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF                       # same size, one flipped byte in the tensor data
    p.write_bytes(bytes(data))
    with pytest.raises(WorldplayError, match=r"assets/toy-00001\.safetensors is corrupt or modified "
                                             r"\(sha256 [0-9a-f]{16}\.\.\. != expected "
                                             + files[0]["sha256"][:16]):
        ck.load_checkpoint("toy", registry=reg)


def test_truncated_file_reports_size(saved, tmp_path):
    _, files, reg = saved
    p = tmp_path / files[0]["path"]
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(WorldplayError, match=r"toy-00001\.safetensors is corrupt or modified \(size 100"):
        ck.verify("toy", reg)


def test_shape_mismatch_names_tensor_and_preset(saved):
    _, _, reg = saved
    wider = ck.shapes_of(Dummy(dim=48))
    with pytest.raises(WorldplayError, match=r"toy-0000\d\.safetensors: tensor 'blocks\.0\.attn\.qkv\.weight' "
                                             r"has shape \(96, 32\) but preset tiny expects \(144, 48\); "
                                             r"the checkpoint was made for another preset"):
        ck.load_checkpoint("toy", registry=reg, expected_shapes=wider)


def test_missing_and_unexpected_tensors(saved):
    _, _, reg = saved
    deeper = ck.shapes_of(Dummy(depth=4))
    with pytest.raises(WorldplayError, match=r"lacks tensor 'blocks\.3\.attn\.qkv\.weight'"):
        ck.load_checkpoint("toy", registry=reg, expected_shapes=deeper)
    shallower = ck.shapes_of(Dummy(depth=2))
    with pytest.raises(WorldplayError, match=r"tensor 'blocks\.2\.attn\.qkv\.bias' is not part of preset tiny"):
        ck.load_checkpoint("toy", registry=reg, expected_shapes=shallower)


def test_pickle_file_is_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    torch.save(Dummy().state_dict(), path)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must never run"))
    with pytest.raises(WorldplayError, match=r"model\.pt is not a safetensors file \(pickle checkpoints "
                                             r"are refused for safety\); convert it"):
        ck.load_checkpoint(path, preset="tiny")


def test_listed_pickle_with_matching_hash_is_refused(tmp_path):
    path = tmp_path / "assets" / "old.pt"
    path.parent.mkdir()
    torch.save({"w": torch.zeros(3)}, path)
    entry = ck.registry_entry("old", "tiny", [{"path": "assets/old.pt", "sha256": ck.sha256_file(path),
                                               "bytes": path.stat().st_size}])
    reg = write_registry(tmp_path, [entry])
    with pytest.raises(WorldplayError, match=r"assets/old\.pt is not a safetensors file"):
        ck.load_checkpoint("old", registry=reg)


def test_unknown_name_lists_models(saved):
    _, _, reg = saved
    with pytest.raises(WorldplayError, match=r"unknown model 'tiny-trained'; models in checkpoints\.toml: toy"):
        ck.load_checkpoint("tiny-trained", registry=reg)
    with pytest.raises(WorldplayError, match=r"checkpoint file nowhere/x\.safetensors not found"):
        ck.load_checkpoint("nowhere/x.safetensors", registry=reg)


def test_preset_disagreement(saved):
    _, _, reg = saved
    with pytest.raises(WorldplayError, match=r"model 'toy' is preset 'tiny', not 'base'"):
        ck.load_checkpoint("toy", preset="base", registry=reg)


def test_shipped_registry_found_from_any_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reg = ck.load_registry()
    assert reg.path == ck.ROOT / "checkpoints.toml"
    assert reg.default in reg.models
    cfg, state, info = ck.load_checkpoint(reg.default)
    if info.random:
        assert state is None and info.seed is not None and "random" in info.label
    base = ck.load_checkpoint("base-random")[0]
    assert base.labelled_random and "benchmark only" in base.label


def test_bad_registry_errors(tmp_path):
    p = write_registry(tmp_path, ['[[model]]\nname = "x"\npreset = "huge"\nsource = "random"'])
    with pytest.raises(WorldplayError, match=r"unknown preset 'huge'; known presets: base, tiny"):
        ck.load_registry(p)
    p.write_text("default = [")
    with pytest.raises(WorldplayError, match=r"is not valid TOML"):
        ck.load_registry(p)
    with pytest.raises(WorldplayError, match=r"registry .*nope\.toml is missing"):
        ck.load_registry(tmp_path / "nope.toml")


def test_tensor_over_shard_limit(tmp_path):
    with pytest.raises(WorldplayError, match=r"tensor 'big' is .* over the 0\.01 MiB shard limit"):
        ck.save_checkpoint({"big": torch.zeros(10_000)}, tmp_path, "big", "tiny", shard_mb=0.01)


# ---- download (hub access replaced by a local fake) -------------------------------------------

def hub_registry(tmp_path: Path, files: list[dict]) -> Path:
    rows = ",\n".join(f'  {{ path = "{Path(f["path"]).name}", sha256 = "{f["sha256"]}", bytes = {f["bytes"]} }}'
                      for f in files)
    return write_registry(tmp_path, [f'[[model]]\nname = "toy-hub"\npreset = "tiny"\n'
                                     f'source = {{ hub = "org/toy", revision = "abc123" }}\nfiles = [\n{rows}\n]\n'])


def test_download_fetches_verifies_and_skips_present(saved, tmp_path, monkeypatch):
    import huggingface_hub

    _, files, _ = saved
    reg = ck.load_registry(hub_registry(tmp_path, files))
    dest = tmp_path / "dl"
    with pytest.raises(WorldplayError, match=r"toy-00001\.safetensors is missing; run `worldplay download toy-hub`"):
        ck.load_checkpoint("toy-hub", registry=reg, download_dir=dest)
    calls = []

    def fake(repo_id, filename, revision=None, local_dir=None, **kw):
        calls.append((repo_id, filename, revision))
        target = Path(local_dir) / filename
        target.write_bytes((tmp_path / "assets" / filename).read_bytes())
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    msg = download("toy-hub", dest, reg)
    assert f"{len(files)} file(s) downloaded" in msg
    assert calls[0] == ("org/toy", "toy-00001.safetensors", "abc123")
    assert "0 file(s) downloaded" in download("toy-hub", dest, reg)
    _, state, _ = ck.load_checkpoint("toy-hub", registry=reg, download_dir=dest)
    assert "blocks.0.mlp.weight" in state


def test_download_rejects_a_bad_file_and_reports_hub_errors(saved, tmp_path, monkeypatch):
    import huggingface_hub

    _, files, _ = saved
    reg = ck.load_registry(hub_registry(tmp_path, files))

    def tampered(repo_id, filename, local_dir=None, **kw):
        src = (tmp_path / "assets" / filename).read_bytes()
        (Path(local_dir) / filename).write_bytes(src[:-1] + bytes([src[-1] ^ 1]))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", tampered)
    with pytest.raises(WorldplayError, match=r"corrupt or modified .*re-download with `worldplay download toy-hub`"):
        download("toy-hub", tmp_path / "dl", reg)

    def offline(**kw):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(WorldplayError, match=r"could not download toy-00001\.safetensors from hub repo "
                                             r"org/toy@abc123 \(Temporary failure"):
        download("toy-hub", tmp_path / "dl2", reg)


def test_download_of_random_and_assets_entries_needs_nothing(saved):
    _, _, reg = saved
    assert "nothing to download" in download("toy", None, ck.load_registry(reg))
    assert "seed 0 (random weights); nothing to download" in download("tiny-random")
