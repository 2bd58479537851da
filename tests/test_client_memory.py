"""The client's memory features, driven headless: memory fill, minimap, memory-only source,
edit mode (erase / copy / paste at the crosshair) and memory save / load (F6 / F7).

Real scenes at 160x90 (the same 12x20 patch grid as 640x360, a sixteenth of the pixels) keep
each test to a few seconds; time is passed explicitly, never measured.
"""

import math
import os
import threading
from types import SimpleNamespace

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from worldplay import cli  # noqa: E402
from worldplay.client.input import CONTROLS, MEMORY_CONTROLS, control_rows  # noqa: E402
from worldplay.client.memory_ui import MemoryUi  # noqa: E402
from worldplay.client.memory_view import BG_RGB, Minimap, MinimapConfig, entry_colours  # noqa: E402
from worldplay.config import ClientConfig, ControlsConfig, ImageConfig  # noqa: E402
from worldplay.errors import WorldplayError  # noqa: E402
from worldplay.frame import SKY_DEPTH  # noqa: E402
from worldplay.memory import MemoryConfig, MosaicMemory  # noqa: E402
from worldplay.memory.colour import colour_memory_config  # noqa: E402
from worldplay.memory.store import Patches  # noqa: E402
from worldplay.sources.capabilities import HasMemory  # noqa: E402
from worldplay.sources.memory import MemorySource, memory_frame  # noqa: E402
from worldplay.sources.registry import KINDS  # noqa: E402
from worldplay.sources.world import WorldSource  # noqa: E402

IM = ImageConfig(width=160, height=90)
DT = 1.0 / IM.fps
SENS = ControlsConfig().mouse_sensitivity


def key(k, up=False):
    pygame.event.post(pygame.event.Event(pygame.KEYUP if up else pygame.KEYDOWN, key=k, mod=0))


def press(app, k, dt=DT):
    key(k)
    key(k, up=True)
    app.step(dt)


def turn(app, radians):
    pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, rel=(round(radians / SENS), 0), pos=(0, 0),
                                          buttons=(0, 0, 0)))
    app.step(DT)


@pytest.fixture
def make_app(headless_app):
    return lambda source: headless_app(source, IM)


def said(app) -> str:
    return app.out.getvalue()


def state(mem: MosaicMemory) -> dict:
    return {k: v.clone() for k, v in mem.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_colour_memory_config_matches_token_grid():
    assert colour_memory_config(640, 360).patch_px == 32 and colour_memory_config(640, 360).grid_hw == (12, 20)
    assert colour_memory_config(160, 90).grid_hw == (12, 20)
    assert colour_memory_config(64, 36).patch_px == 4
    with pytest.raises(WorldplayError, match="width 30"):
        colour_memory_config(30, 20)


def test_world_memory_fills_while_walking_and_matches_depth(make_app):
    app = make_app(WorldSource(0, image=IM))
    ui = app.memory_ui
    assert ui.owned and ui.memory is None             # made at the first frame, at its size
    app.step(DT)
    first = len(ui.memory)
    assert first > 0
    key(pygame.K_w)
    sizes = []
    for _ in range(6):
        turn(app, 0.3)
        sizes.append(len(ui.memory))
    assert sizes[-1] > first and sizes == sorted(sizes)
    assert sizes[0] == first                          # every 2nd frame goes in, not every one
    line = [s for s in app.hud_lines() if s.startswith("memory ")]
    assert len(line) == 1 and line[0].startswith(f"memory {len(ui.memory)}/{ui.memory.cfg.capacity} (")
    assert f"{ui.memory.stats()['mb']:.0f} MB" in line[0] and line[0].endswith("evicted 0")
    # what the memory reprojects into the last inserted view sits on the rendered surfaces
    view, cov = memory_frame(ui.memory, app.frame.c2w, ui.K, app.frame.t)
    gt = app.frame.depth
    ok = (view.depth < SKY_DEPTH) & (gt < SKY_DEPTH)
    assert cov > 0.3 and float(((view.depth - gt).abs() / gt)[ok].median()) < 0.05


def test_minimap_puts_entries_north_up_around_the_camera():
    mem = MosaicMemory(colour_memory_config(160, 90))
    red = torch.tensor([1.0, -1.0, -1.0]).repeat(16)                  # 4x4 red colours in [-1, 1]
    cam = torch.tensor([2.0, 1.6, 3.0])
    centres = torch.tensor([[2.0 + 4.0, 0.0, 3.0 - 2.0]])             # 4 m east, 2 m north (-z)
    mem.paste(Patches(feat=red[None], centre=centres, c2w=torch.eye(4)[None], intr=torch.ones(1, 4),
                      size=torch.ones(1), time=torch.zeros(1, dtype=torch.float64), dynamic=torch.zeros(1)),
              torch.eye(4))
    m = Minimap(MinimapConfig(size_px=100, span_m=20.0))
    img = m.image(mem, cam)
    assert m.drawn == 1
    x, y = 50 + round(4.0 / 0.2), 50 - round(2.0 / 0.2)               # 0.2 m per pixel
    assert tuple(img[y, x]) == (255, 0, 0) and tuple(img[50, 50]) == BG_RGB
    assert int((img != BG_RGB).any(-1).sum()) == MinimapConfig().dot_px ** 2


def test_latent_memories_fade_with_age_and_source_memory_wins():
    mem = MosaicMemory(MemoryConfig(capacity=16))                       # 64-dim latents, not colours
    for i, t in enumerate((0.0, 40.0)):
        mem.store.now = t                                               # pastes are stamped "now"
        mem.paste(Patches(feat=torch.zeros(1, 64), centre=torch.tensor([[float(i), 0.0, 0.0]]),
                          c2w=torch.eye(4)[None], intr=torch.ones(1, 4), size=torch.ones(1),
                          time=torch.zeros(1, dtype=torch.float64), dynamic=torch.zeros(1)), torch.eye(4))
    old, new = entry_colours(mem, torch.tensor([0, 1]), MinimapConfig())
    assert old[0] < new[0] and len(set(new.tolist())) == 1             # grey, brighter when newer
    src = SimpleNamespace(name="model", memory=mem, memory_lock=threading.RLock(), memory_frozen=False)
    assert isinstance(src, HasMemory)                                   # says so through the protocol
    ui = MemoryUi(src, IM, ClientConfig(), say=lambda text: None)
    assert ui.memory is mem and not ui.owned
    assert ui.edit.active is False and ui.do("edit", None) and src.memory_frozen   # edit mode freezes it
    assert tuple(ui.K[:2, 2].tolist()) == (320.0, 180.0)                # K in the memory's own pixels


def test_m_toggles_the_minimap(make_app):
    app = make_app(WorldSource(0, image=IM))
    for _ in range(3):
        turn(app, 0.4)
    app.draw()
    plain = pygame.surfarray.array3d(app.canvas).copy()
    press(app, pygame.K_m)
    app.draw()
    assert app.memory_ui.show_map and app.memory_ui.minimap.drawn > 50
    with_map = pygame.surfarray.array3d(app.canvas)
    changed = (plain != with_map).any(-1)                               # (W, H)
    assert changed[IM.width // 2:, :].sum() > 0.9 * changed.sum() > 0  # in the right-hand corner
    press(app, pygame.K_m)
    assert not app.memory_ui.show_map


def test_memory_source_shows_seen_places_and_black_for_unseen(make_app):
    assert "memory" in KINDS
    app = make_app(MemorySource(0, image=IM))
    app.step(DT)
    assert int(app.frame.rgb.max()) == 0                    # nothing seen yet: all black
    app.step(DT)
    seen = app.frame.rgb.clone()
    assert (seen.amax(-1) > 0).float().mean() > 0.3
    assert any("memory only" in s for s in app.hud_lines())
    turn(app, math.pi)                                     # never looked this way
    assert int(app.frame.rgb.max()) == 0 and bool((app.frame.depth == SKY_DEPTH).all())
    turn(app, -math.pi)                                    # back: the stored mosaic, exactly
    assert torch.equal(app.frame.rgb, seen)


def test_play_accepts_source_memory(capsys):
    assert cli.main(["play", "--headless", "--source", "memory", "--seconds", str(2 * DT)]) == 0
    assert "played 2 frames" in capsys.readouterr().out


def test_erase_at_crosshair_blacks_out_the_memory_view(make_app):
    app = make_app(MemorySource(0, image=IM))
    for _ in range(3):
        app.step(DT)
    mem, ui = app.memory_ui.memory, app.memory_ui
    press(app, pygame.K_x)
    assert "press E" in said(app) and len(mem) > 0
    press(app, pygame.K_e)
    assert app.source.memory_frozen and ui.feeder.frozen
    aim = ui.edit.aim(mem, app.frame, ui.K)
    assert aim is not None and 0 < aim.depth < 20
    inside = len(mem.copy(aim.region))
    before = len(mem)
    press(app, pygame.K_x)
    assert f"erased {inside} memory patches" in said(app) and inside > 0 and len(mem) == before - inside
    assert len(mem.copy(aim.region)) == 0
    got = mem.retrieve(aim.c2w, ui.K, budget=10_000)
    assert not bool(aim.region.contains(mem.store.centre[got.ids]).any())
    app.step(DT)                                           # frozen: the hole stays
    h, w = app.frame.rgb.shape[:2]
    assert int(app.frame.rgb[h // 2 - 4:h // 2 + 4, w // 2 - 4:w // 2 + 4].max()) == 0
    press(app, pygame.K_e)                                 # edit off: memory fills again
    for _ in range(2):
        app.step(DT)
    assert int(app.frame.rgb[h // 2, w // 2].max()) > 0


def test_copy_paste_moves_patches_to_the_new_aim_point(make_app):
    app = make_app(WorldSource(0, image=IM))
    app.step(DT)
    ui = app.memory_ui
    mem = ui.memory
    first = len(mem)
    press(app, pygame.K_e)
    press(app, pygame.K_v)
    assert "nothing copied yet" in said(app)
    src = ui.edit.aim(mem, app.frame, ui.K)
    press(app, pygame.K_y)
    clip = ui.edit.clipboard
    assert clip is not None and len(clip) == len(mem.copy(src.region)) > 0
    turn(app, 1.0)
    dst = ui.edit.aim(mem, app.frame, ui.K)
    assert dst is not None and float((dst.point - src.point).norm()) > 2 * ui.edit.cfg.radius_m
    n_before = len(mem.copy(dst.region))
    press(app, pygame.K_v)
    assert "pasted" in said(app)
    moved = clip.centre + (dst.point - src.point)                       # (n, 3) where they must be
    here = mem.copy(dst.region)
    assert len(here) >= n_before + 1
    match = torch.cdist(moved, here.centre).min(dim=1).values < 1e-4    # each copied patch, moved
    assert bool(match.all())
    got = mem.retrieve(dst.c2w, ui.K, budget=10_000)
    hit = torch.cdist(mem.store.centre[got.ids], moved).min(dim=1).values < 1e-4
    assert int(hit.sum()) > 0                                           # the view now sees them
    press(app, pygame.K_r)                                 # a fresh session: not frozen, clipboard kept
    assert not ui.edit.active and not ui.feeder.frozen and ui.edit.clipboard is clip
    assert len(mem) == first                               # only the restart frame, as at the start


def test_f6_f7_round_trip_and_corrupt_file_leaves_memory(make_app, tmp_path):
    app = make_app(WorldSource(0, image=IM))
    ui = app.memory_ui
    press(app, pygame.K_F7)
    assert "no saved memory" in said(app)
    for _ in range(3):
        turn(app, 0.3)
    saved = state(ui.memory)
    press(app, pygame.K_F6)
    files = list((tmp_path / "recs").glob("memory_*.safetensors"))
    assert len(files) == 1 and "memory saved" in said(app)
    for _ in range(4):
        turn(app, 0.5)                                     # memory moves on
    assert not same_state(state(ui.memory), saved)
    press(app, pygame.K_F7)
    assert "memory loaded" in said(app) and same_state(state(ui.memory), saved)

    bad = tmp_path / "recs" / "memory_29991231-235959-999.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    os.utime(bad, ns=(files[0].stat().st_mtime_ns + 10 ** 9,) * 2)  # the newest file
    turn(app, 0.5)
    current = state(ui.memory)
    press(app, pygame.K_F7)
    assert "cannot load memory" in said(app) and bad.name in said(app)
    assert same_state(state(ui.memory), current)


def test_memory_controls_bound_once_and_listed():
    bound = [k for c in CONTROLS + MEMORY_CONTROLS for k in c.codes]
    assert len(bound) == len(set(bound))
    mine = {k for c in MEMORY_CONTROLS for k in c.codes}
    assert {pygame.K_m, pygame.K_e, pygame.K_x, pygame.K_y, pygame.K_v, pygame.K_F6, pygame.K_F7} == mine
    rows = dict(control_rows())
    assert "memory map" in rows["M"] and "erase" in rows["X"] and "save the memory" in rows["F6"] and "load" in rows["F7"]
