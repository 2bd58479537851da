"""The source layer: spec grammar, the registry, the new sources (vae, floor), capabilities, and
a source with only the required protocol going through play --headless, record and eval."""

import ast
import json
from pathlib import Path

import pytest
import torch
from micro_model import IMAGE, MICRO

from worldplay import cli
from worldplay.errors import WorldplayError
from worldplay.frame import Frame
from worldplay.model.vae import RGBDVAE, frames_to_tensor, tensor_to_uint8
from worldplay.sources import registry
from worldplay.sources.registry import client_spec, source_spec
from worldplay.sources.capabilities import (Closable, HasMemory, HasScene, HasSession, HasSpawn, ObservesContext,
                                            Prefetching, set_context)
from worldplay.sources.explicit import ExplicitSource
from worldplay.sources.floor import FloorConfig, FloorSource, cell_means
from worldplay.sources.memory import MemorySource
from worldplay.sources.protocol import FrameSource
from worldplay.sources.spec import SPEC_HELP, SourceSpec, SpecError, parse_spec, split_specs
from worldplay.sources.vae import VaeSource
from worldplay.sources.world import WorldSource

CAPABILITIES = (HasScene, HasSpawn, HasMemory, HasSession, Prefetching, ObservesContext, Closable)
CLIENT = Path(__file__).resolve().parent.parent / "worldplay" / "client"
W, H = 640, 360


# --- the grammar ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, target, mode, options", [
    ("world", "world", None, None, {}),
    (" model ", "model", None, None, {}),
    ("model@off", "model", None, "off", {}),
    ("model:tiny-random", "model", "tiny-random", None, {}),
    ("model:tiny-random@latent", "model", "tiny-random", "latent", {}),
    ("model:runs/a@b/step-10.safetensors@rope", "model", "runs/a@b/step-10.safetensors", "rope", {}),
    ("model:C:/w/x.safetensors", "model", "C:/w/x.safetensors", None, {}),
    ("model@full+steps=2+window=1", "model", None, "full", {"steps": "2", "window": "1"}),
    ("vae:base-random", "vae", "base-random", None, {}),
])
def test_parse_spec(text, kind, target, mode, options):
    spec = parse_spec(text)
    assert spec == SourceSpec(text.strip(), kind, target, mode, options)
    assert list(spec.options) == list(options)                         # settings in the order typed
    assert str(spec) == text.strip()


@pytest.mark.parametrize("text, match", [
    ("", "does not start"), ("@off", "does not start"), ("Model", "does not start"),
    ("model@", "empty mode"), ("model:", "nothing after ':'"), ("model:x@off+steps=", "no value"),
    ("model+steps=1+steps=2", "twice"), ("world!", "cannot read '!'"),
])
def test_parse_spec_errors(text, match):
    with pytest.raises(SpecError, match=match):
        parse_spec(text)


def test_split_specs():
    assert split_specs("explicit, floor,,model:tiny-random@off ,vae") == [
        "explicit", "floor", "model:tiny-random@off", "vae"]


# --- the registry --------------------------------------------------------------------------------

def test_valid_specs_lists_every_kind_and_the_help_agrees():
    line = registry.valid_specs()
    assert "\n" not in line
    for kind in ("world", "explicit", "memory", "vae[:NAME|:PATH]", "floor",
                 "model[:NAME|:PATH][@full|rope|latent|off]", "tiny-random", "base-random"):
        assert kind in line
    for name in registry.KINDS:                                         # --help names every built-in kind
        assert name in SPEC_HELP


@pytest.mark.parametrize("text, match", [
    ("nothing", "unknown source 'nothing'"),
    ("model@bogus", "unknown mode 'bogus' for model"),
    ("world:tiny-random", "world takes no ':tiny-random'"),
    ("world@off", "unknown mode 'off' for world"),
    ("model:no-such-model", "unknown model 'no-such-model'"),
    ("model:missing/x.safetensors", "checkpoint missing/x.safetensors not found"),
    ("model+steps=0", "steps='0'"),
    ("model+window=0", "window='0'"),
    ("model+bogus=1", "no setting 'bogus'"),
    ("model+turbo", "no shorthand 'turbo'"),
    ("model+steps", "write +steps=N"),
    ("world+fast", "world has no shorthand 'fast'"),
])
def test_bad_specs_are_one_line_listing_the_valid_ones(text, match):
    with pytest.raises(WorldplayError) as e:
        registry.source_spec(text)
    msg = str(e.value)
    assert match in msg and "\n" not in msg and msg.endswith(registry.valid_specs())


def test_specs_are_checked_and_settings_read():
    spec = registry.source_spec("model:tiny-random@off+steps=2+dtype=bf16")
    assert spec.options == {"steps": 2, "dtype": torch.bfloat16}
    assert registry.source_spec(spec) == spec                            # checking twice changes nothing
    assert [s.text for s in registry.source_specs("world, model@off")] == ["world", "model@off"]
    with pytest.raises(WorldplayError, match="empty"):
        registry.source_specs(" , ")


@pytest.mark.parametrize("argv", [["eval", "--source", "model@bogus"], ["eval", "--source", "world,nothing"],
                                  ["play", "--headless", "--source", "nothing"],
                                  ["bench", "--source", "model@bogus"]])
def test_commands_print_one_line_for_a_bad_spec(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "valid sources: world, explicit, memory" in err


def test_register_rejects_clashes_and_bad_names():
    kind = registry.SourceKind("world", lambda s, e: None, "again")
    with pytest.raises(WorldplayError, match="already registered"):
        registry.register(kind)
    with pytest.raises(WorldplayError, match="lower-case"):
        registry.register(registry.SourceKind("Bad Name", lambda s, e: None, "x"))


def test_capabilities_of_the_built_in_sources():
    world = WorldSource(0, image=IMAGE)
    memory = MemorySource(0, image=IMAGE)
    explicit = ExplicitSource(0)
    floor = FloorSource(0, cfg=FloorConfig(image=IMAGE))
    for src, caps in ((world, {HasScene}), (memory, {HasScene, HasMemory}),
                      (explicit, {HasScene, ObservesContext}), (floor, {HasScene})):
        assert isinstance(src, FrameSource)
        assert {c for c in CAPABILITIES if isinstance(src, c)} == caps, src.name
    with pytest.raises(WorldplayError, match="no ground-truth context"):
        set_context(world, 4)
    set_context(explicit, 4)
    assert explicit.context_frames == 4


def test_client_never_probes_attributes():
    """The client learns what a source can do from its capabilities: no getattr / hasattr at all."""
    for path in CLIENT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("getattr", "hasattr", "setattr"), f"{path.name}:{node.lineno}"


# --- floor and vae ------------------------------------------------------------------------------

def test_cell_means_fills_each_cell_with_its_mean_colour():
    rgb = torch.randint(0, 256, (90, 70, 3), dtype=torch.uint8)         # 3 x 3 cells, the last ones cut short
    out = cell_means(rgb, 32)
    assert out.shape == rgb.shape and out.dtype == torch.uint8
    for y0, x0 in ((0, 0), (32, 32), (64, 64), (64, 0)):
        block = rgb[y0:y0 + 32, x0:x0 + 32].float()
        mean = block.reshape(-1, 3).mean(0).round().to(torch.uint8)
        assert torch.equal(out[y0:y0 + 32, x0:x0 + 32], mean.expand(block.shape).to(torch.uint8))


def test_floor_keeps_the_layout_and_drops_the_detail():
    src = FloorSource(4, cfg=FloorConfig(cell_px=16, image=IMAGE))
    truth = WorldSource(4, image=IMAGE)
    pose = src.scene.spawn_pose()[None]
    got, gt = src.frames(pose, torch.zeros(1))[0], truth.frames(pose, torch.zeros(1))[0]
    assert torch.equal(got.rgb, cell_means(gt.rgb, 16)) and torch.equal(got.depth, gt.depth)
    assert src.hud()["source"] == "floor"


def test_vae_source_is_ground_truth_through_the_vae():
    vae = RGBDVAE(MICRO.vae, seed=1)
    src = VaeSource(seed=4, vae=vae, label="micro")
    truth = WorldSource(4, image=IMAGE)
    pose = src.scene.spawn_pose()[None]
    got, gt = src.frames(pose, torch.zeros(1))[0], truth.frames(pose, torch.zeros(1))[0]
    with torch.no_grad():
        want, depth = vae.decode(vae.encode(frames_to_tensor(gt.rgb), gt.depth[None]))
    assert torch.equal(got.rgb, tensor_to_uint8(want)[0]) and torch.equal(got.depth, depth[0])
    assert torch.equal(got.dynamic, gt.dynamic) and torch.equal(got.c2w, gt.c2w)
    assert got.rgb.shape == (MICRO.vae.height, MICRO.vae.width, 3) and isinstance(src, HasScene)


# --- a source with only the required protocol, through every command ------------------------------

class Plain:
    """Only the required part of FrameSource: flat grey frames, two per call."""
    name, chunk = "plain", 2

    def reset(self, seed=None, prompt=None) -> None:
        pass

    def frames(self, c2w, times):
        return [Frame(torch.full((H, W, 3), 90, dtype=torch.uint8), torch.full((H, W), 5.0),
                      torch.zeros(H, W, dtype=torch.bool), p.clone(), float(t)) for p, t in zip(c2w, times)]

    def hud(self) -> dict[str, str]:
        return {"plain": "grey"}


@pytest.fixture
def plain():
    registry.register(registry.SourceKind("plain", lambda spec, env: Plain(), "flat grey frames (test)"))
    yield
    registry.unregister("plain")


def test_a_minimal_source_plays_records_and_evaluates(plain, tmp_path, capsys):
    assert isinstance(Plain(), FrameSource) and not any(isinstance(Plain(), c) for c in CAPABILITIES)
    assert "plain" in registry.valid_specs()
    assert cli.main(["play", "--source", "plain", "--headless", "--seconds", str(4 / 16),
                     "--record", str(tmp_path / "play.mp4")]) == 0
    assert "played 4 frames" in capsys.readouterr().out
    assert cli.main(["record", "--source", "plain", "--path", "orbit", "--seconds", "0.5",
                     "--out", str(tmp_path / "rec.mp4"), "--no-progress"]) == 0
    assert "recorded 8 frames" in capsys.readouterr().out
    assert cli.main(["eval", "--source", "plain", "--quick", "--scenes", "1", "--frames", "24",
                     "--no-progress", "--json", str(tmp_path / "r.json")]) == 0
    assert any(line.startswith("| plain ") for line in capsys.readouterr().out.splitlines())   # its table row
    (row,) = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert row["method"] == "plain" and row["frames"] == 2 * 24             # both quick paths, every frame


def test_fast_shorthand_expands_and_typed_settings_win():
    assert parse_spec("model@full+fast").options == {"fast": None}
    fast = source_spec("model+fast").options
    assert fast == {"steps": 2, "window": 1, "sink": 1}
    assert source_spec("model+steps=4+fast").options["steps"] == 4       # typed wins, in any order
    assert source_spec("model+fast+dtype=fp32").options == {"steps": 2, "window": 1, "sink": 1,
                                                           "dtype": torch.float32}


def test_only_the_client_picks_fast_and_only_on_cpu():
    spec, note = client_spec(source_spec("model"), "cpu")
    assert spec.text == "model+fast" and spec.options["steps"] == 2 and "model+fast" in note
    for text in ("model+steps=4", "world", "model@off+window=2"):      # a spec that says anything stays
        same, none = client_spec(source_spec(text), "cpu")
        assert same.text == text and none is None
    kept, _ = client_spec(source_spec("model:tiny-random@off"), "cpu")
    assert kept.text == "model:tiny-random@off+fast" and kept.mode == "off" and kept.target == "tiny-random"
