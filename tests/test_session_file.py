"""Session files: round trip, and every kind of bad file gives a clear error naming it."""

import json

import pytest
import torch
from safetensors.torch import save_file

from worldplay.errors import WorldplayError
from worldplay.session_file import FORMAT, HEADER_KEY, VERSION, load_session, save_session


def sample():
    tensors = {"memory.feat": torch.randn(5, 4).half(), "poses": torch.eye(4).repeat(3, 1, 1),
               "valid": torch.tensor([True, False, True]), "rng": torch.arange(7, dtype=torch.int64)}
    return tensors, {"preset": "tiny", "frame": 42, "nested": {"fps": 16.0}}


def test_round_trip(tmp_path):
    tensors, meta = sample()
    path = save_session(tmp_path / "s.safetensors", tensors, meta)
    got, got_meta = load_session(path)
    assert got_meta == meta
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v)


def test_views_sharing_storage_are_saved(tmp_path):
    base = torch.arange(10.0)
    save_session(tmp_path / "s.safetensors", {"a": base[:5], "b": base[5:], "c": base.view(2, 5).T}, {})
    got, _ = load_session(tmp_path / "s.safetensors")
    assert torch.equal(got["c"], base.view(2, 5).T)


def test_truncated_file(tmp_path):
    tensors, meta = sample()
    path = save_session(tmp_path / "s.safetensors", tensors, meta)
    data = path.read_bytes()
    for cut in (4, 100, len(data) - 10):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(WorldplayError, match=f"cut{cut}.safetensors"):
            load_session(bad)


def test_not_safetensors(tmp_path):
    bad = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(3)}, bad)                     # a pickle zip: must never be unpickled
    with pytest.raises(WorldplayError, match="model.pt"):
        load_session(bad)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(WorldplayError, match="junk.bin"):
        load_session(junk)


def test_foreign_and_wrong_version(tmp_path):
    plain = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(WorldplayError, match="weights.safetensors.*header"):
        load_session(plain)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other),
              metadata={HEADER_KEY: json.dumps({"format": "someone-else", "version": 1, "meta": {}})})
    with pytest.raises(WorldplayError, match="someone-else"):
        load_session(other)
    newer = tmp_path / "newer.safetensors"
    save_file({"w": torch.zeros(2)}, str(newer),
              metadata={HEADER_KEY: json.dumps({"format": FORMAT, "version": VERSION + 1, "meta": {}})})
    with pytest.raises(WorldplayError, match="upgrade"):
        load_session(newer)
    broken = tmp_path / "broken.safetensors"
    save_file({"w": torch.zeros(2)}, str(broken), metadata={HEADER_KEY: "{not json"})
    with pytest.raises(WorldplayError, match="broken.safetensors"):
        load_session(broken)


def test_missing_file(tmp_path):
    with pytest.raises(WorldplayError, match="not found"):
        load_session(tmp_path / "nope.safetensors")


def test_failed_save_keeps_previous_file(tmp_path):
    tensors, meta = sample()
    path = save_session(tmp_path / "s.safetensors", tensors, meta)
    before = path.read_bytes()
    with pytest.raises(WorldplayError, match="JSON"):
        save_session(path, tensors, {"bad": object()})
    with pytest.raises(WorldplayError):
        save_session(path, {"x": "not a tensor"}, meta)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]   # no temp files left behind
