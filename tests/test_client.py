"""The playable client, driven headless with synthetic pygame events.

A fake source paints each frame a solid colour derived from its pose, so tests can check
what reached the screen without a renderer. Time is passed explicitly (`step(dt)`), never
measured, so nothing here depends on machine speed.
"""

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from worldplay import cli  # noqa: E402
from worldplay.client.app import App  # noqa: E402
from worldplay.client.input import CONTROLS, control_rows, controls_text  # noqa: E402
from worldplay.config import ClientConfig, ControlsConfig, ImageConfig  # noqa: E402
from worldplay.controls import CameraState  # noqa: E402
from worldplay.frame import SKY_DEPTH, Frame  # noqa: E402

SMALL = ImageConfig(width=64, height=36)
DT = 1.0 / SMALL.fps
START = CameraState(x=1.0, y=2.0, z=-3.0, yaw=0.3, pitch=0.2)


def pose_colour(c2w: torch.Tensor) -> tuple[int, int, int]:
    """Solid colour that changes with the camera position (what the fake source paints)."""
    x, y, z = (float(v) for v in c2w[:3, 3])
    return tuple(int(max(0, min(255, 128 + 20 * v))) for v in (x, y, z))


class PoseSource:
    name = "fake"

    def __init__(self, chunk: int = 1, image: ImageConfig = SMALL):
        self.chunk, self.image = chunk, image
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.resets: list[tuple] = []

    def spawn_pose(self) -> torch.Tensor:
        return START.c2w()

    def reset(self, seed=None, prompt=None) -> None:
        self.resets.append((seed, prompt))

    def frames(self, c2w, times):
        self.calls.append((c2w.clone(), times.clone()))
        h, w = self.image.height, self.image.width
        return [Frame(rgb=torch.tensor(pose_colour(p), dtype=torch.uint8).expand(h, w, 3).clone(),
                      depth=torch.full((h, w), SKY_DEPTH), dynamic=torch.zeros(h, w, dtype=torch.bool),
                      c2w=p, t=float(t)) for p, t in zip(c2w, times)]

    def hud(self) -> dict[str, str]:
        return {"fake": "pose colours"}


def key(k, up=False, mod=0):
    pygame.event.post(pygame.event.Event(pygame.KEYUP if up else pygame.KEYDOWN, key=k, mod=mod))


def mouse(dx, dy):
    pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, rel=(dx, dy), pos=(0, 0), buttons=(0, 0, 0)))


@pytest.fixture
def make_app(headless_app):
    def make(source=None, image=SMALL, controls=ControlsConfig(), booth=False, **client):
        return headless_app(source or PoseSource(image=image), image, controls, booth, **client)
    return make


def pos(app):
    s = app.camera.state
    return torch.tensor([s.x, s.y, s.z])


def test_starts_at_spawn_and_w_walks_along_view(make_app):
    app = make_app()
    assert torch.allclose(app.camera.c2w(), START.c2w(), atol=1e-5)
    fwd = app.camera.c2w()[:3, 2]
    key(pygame.K_w)
    app.step(0.1)
    d = pos(app) - START.c2w()[:3, 3]
    assert torch.allclose(d, fwd * ControlsConfig().walk_speed * 0.1, atol=1e-4)
    key(pygame.K_w, up=True)
    p = pos(app)
    app.step(0.1)
    assert torch.allclose(pos(app), p)


def test_mouse_right_turns_right_and_invert_y(make_app):
    app = make_app()
    old = app.camera.c2w()
    mouse(50, 0)
    app.step(DT)
    new = app.camera.c2w()
    sens = ControlsConfig().mouse_sensitivity
    assert app.camera.state.yaw == pytest.approx(START.yaw + 50 * sens, abs=1e-6)
    assert float(new[:3, 2] @ old[:3, 0]) > 0   # new forward leans towards the old right

    for invert, sign in ((False, -1), (True, 1)):
        a = make_app(controls=ControlsConfig(invert_y=invert))
        mouse(0, 40)                 # mouse moved down
        a.step(DT)
        assert a.camera.state.pitch == pytest.approx(START.pitch + sign * 40 * sens, abs=1e-6)


def test_pause_stops_and_single_step_advances_one_frame(make_app):
    app = make_app()
    app.step(DT)
    key(pygame.K_p)
    key(pygame.K_w)
    app.step(DT)
    assert app.paused
    shown, p, calls = app.frames_shown, pos(app), len(app.source.calls)
    for _ in range(3):
        app.step(DT)
    assert (app.frames_shown, len(app.source.calls)) == (shown, calls) and torch.equal(pos(app), p)
    key(pygame.K_PERIOD)
    app.step(5.0)                    # a long real tick still advances exactly one frame
    assert app.frames_shown == shown + 1
    assert float((pos(app) - p).norm()) == pytest.approx(ControlsConfig().walk_speed * DT, rel=1e-4)
    assert app.paused


def test_frames_paced_at_source_rate_and_show_pose(make_app):
    app = make_app(show_hud=False)   # the HUD panel covers most of a 64x36 canvas
    for _ in range(8):
        app.step(DT / 4)             # display ticks 4x faster than the frame rate
    assert app.frames_shown == 2     # first frame at once, then one per 1/fps
    key(pygame.K_d)
    app.step(DT)
    app.draw()
    assert app.canvas.get_at((60, 30))[:3] == pose_colour(app.camera.c2w())


def test_chunked_source_gets_future_poses(make_app):
    src = PoseSource(chunk=4)
    app = make_app(source=src)
    key(pygame.K_w)
    mouse(30, 0)
    app.step(DT)
    assert len(src.calls) == 1
    c2w, times = src.calls[0]
    assert c2w.shape == (4, 4, 4) and torch.allclose(times, app.sim_t + DT * torch.arange(1, 5))
    steps = (c2w[1:, :3, 3] - c2w[:-1, :3, 3]).norm(dim=-1)
    assert torch.allclose(steps, torch.full((3,), ControlsConfig().walk_speed * DT), atol=1e-5)
    assert torch.allclose(c2w[:, :3, 2], c2w[:1, :3, 2].expand(4, 3), atol=1e-5)  # mouse applied once
    for _ in range(3):
        app.step(DT)
    assert len(src.calls) == 1 and app.frames_shown == 4


def test_reset_and_new_scene(make_app):
    app = make_app()
    key(pygame.K_w)
    mouse(40, 10)
    app.step(0.5)
    key(pygame.K_w, up=True)
    key(pygame.K_r)
    app.step(DT)
    assert torch.allclose(app.camera.c2w(), START.c2w(), atol=1e-5)
    assert app.source.resets[-1] == (0, None) and app.sim_t == pytest.approx(DT)
    key(pygame.K_n)
    app.step(DT)
    assert app.seed == 1 and app.source.resets[-1] == (1, None)


def test_escape_releases_grab_then_quits(make_app):
    app = make_app()
    key(pygame.K_ESCAPE)
    app.step(DT)
    assert app.running and not app.mapper.grabbed
    mouse(80, 0)                     # not grabbed: the mouse does not look around
    app.step(DT)
    assert app.camera.state.yaw == pytest.approx(START.yaw)
    key(pygame.K_ESCAPE)
    app.step(DT)
    assert not app.running


def test_screenshot_png_at_window_size(make_app, tmp_path):
    image = ImageConfig()
    app = make_app(image=image, scale=2)
    app.step(DT)
    key(pygame.K_F1)
    key(pygame.K_F12)
    app.step(DT)
    app.draw()
    shot = app.last_screenshot
    assert shot is not None and shot.parent == tmp_path / "shots" and shot.suffix == ".png"
    img = pygame.image.load(str(shot))
    assert img.get_size() == (1280, 720)
    assert img.get_at((1275, 715))[:3] == pose_colour(app.camera.c2w())   # the frame, outside overlays


def test_record_toggle_writes_mp4(make_app, tmp_path):
    pytest.importorskip("worldplay.client.recorder")
    av = pytest.importorskip("av")
    app = make_app()
    key(pygame.K_F5)
    for _ in range(8):
        app.step(DT)
        app.draw()
    assert app.capture.recording and app.capture.seconds == pytest.approx(8 * DT)
    key(pygame.K_F5)
    app.step(DT)
    files = list((tmp_path / "recs").glob("*.mp4"))
    assert len(files) == 1 and not app.capture.recording
    with av.open(str(files[0])) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == 8 and frames[0].shape == (36, 64, 3)


def test_booth_attract_esc_and_quit_combo(make_app):
    app = make_app(booth=True, booth_idle_seconds=0.5)
    key(pygame.K_p)
    key(pygame.K_p, up=True)         # a held key counts as input, so release it
    app.step(0.25)
    assert app.paused and not app.booth.attract
    app.step(0.25)
    app.step(0.25)
    assert app.booth.attract and not app.paused and app.seed == 1 and app.source.resets[-1] == (1, None)
    before = app.camera.c2w()
    for _ in range(4):
        app.step(DT)
    assert not torch.allclose(app.camera.c2w(), before)      # the attract path moves
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=(0, 0)))
    held = app.camera.c2w()
    app.step(DT)
    assert not app.booth.attract and torch.allclose(app.camera.c2w(), held, atol=1e-5)
    key(pygame.K_ESCAPE)
    key(pygame.K_ESCAPE)
    app.step(DT)
    assert app.running
    key(pygame.K_q, mod=pygame.KMOD_LCTRL | pygame.KMOD_LSHIFT)
    app.step(DT)
    assert not app.running


def test_controls_listed_once_and_reserved_keys_free(make_app):
    text = controls_text()
    for keys, what in control_rows():
        assert keys in text and what in text
    assert "Ctrl+Shift+Q" in text
    bound = {k for c in CONTROLS for k in c.codes}
    assert not bound & {pygame.K_TAB, pygame.K_m, pygame.K_e, pygame.K_x, pygame.K_v}
    assert len(bound) == sum(len(c.codes) for c in CONTROLS)     # no key does two things
    app = make_app()
    key(pygame.K_F1)
    key(pygame.K_h)
    app.step(DT)
    assert app.show_help and not app.show_hud
    app.draw()


def test_play_without_display_is_one_line_error(monkeypatch, capsys):
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert cli.main(["play"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no display" in err and "--headless" in err


def test_play_headless_records(tmp_path, capsys):
    pytest.importorskip("worldplay.client.recorder")
    av = pytest.importorskip("av")
    out = tmp_path / "walk.mp4"
    assert cli.main(["play", "--headless", "--source", "world", "--seconds", str(3 * DT), "--record", str(out)]) == 0
    assert "played 3 frames" in capsys.readouterr().out
    with av.open(str(out)) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (360, 640, 3)


@pytest.mark.filterwarnings("ignore:no fast renderer")   # dummy driver: software fullscreen
def test_windowed_app_runs_under_dummy_driver(tmp_path):
    src = PoseSource()
    app = App(src, ClientConfig(fullscreen=True, screenshot_dir=str(tmp_path)), image=SMALL,
              headless=False, out=open(os.devnull, "w"))
    try:
        pygame.event.clear()
        app.run(max_frames=3)
        assert app.frames_shown == 3 and app.screen is not None
    finally:
        app.close()
        app.out.close()
    assert not pygame.display.get_init()       # the window is gone after close


def test_sources_reject_mismatched_poses_and_times():
    from worldplay.sources.world import WorldSource

    src = WorldSource(0, image=SMALL)
    with pytest.raises(ValueError, match=r"WorldSource.frames wants c2w \(F, 4, 4\) and times \(F,\); "
                                         r"got \(2, 4, 4\) and \(3,\)"):
        src.frames(torch.eye(4).repeat(2, 1, 1), torch.zeros(3))
    with pytest.raises(ValueError, match=r"got \(4, 4\) and \(1,\)"):
        src.frames(torch.eye(4), torch.zeros(1))
    assert len(src.frames(START.c2w()[None], torch.zeros(1))) == 1
