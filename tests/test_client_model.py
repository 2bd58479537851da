"""The client with the model streamer as its source (a micro model, so each test takes seconds).

Chunks are planned one ahead along one continuous path; the pacing is checked with a fake
clock; the side-by-side view against the renderer; F6 / F7 whole-session round trips; and edit
mode's freeze against the streamer's inserts. Time is passed explicitly, never measured.
"""

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from micro_model import IMAGE, micro_streamer  # noqa: E402

from worldplay import cli  # noqa: E402
from worldplay.client.edit_mode import Aim  # noqa: E402
from worldplay.client.feed import ChunkFeed  # noqa: E402
from worldplay.client.pacing import Pacer, RateMeter  # noqa: E402
from worldplay.client.session_keys import latest_session  # noqa: E402
from worldplay.config import ControlsConfig  # noqa: E402
from worldplay.controls import FirstPersonCamera, InputFrame  # noqa: E402
from worldplay.frame import SKY_DEPTH, Frame  # noqa: E402
from worldplay.memory import Region  # noqa: E402
from worldplay.sources import registry  # noqa: E402
from worldplay.sources.model import ModelSource  # noqa: E402
from worldplay.world.render import Renderer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensor ops: threads only contend

DT = 1.0 / IMAGE.fps
STEP_M = ControlsConfig().walk_speed * DT     # one frame of walking
SENS = ControlsConfig().mouse_sensitivity


class Micro(ModelSource):
    """The micro model as a source, remembering every chunk it was asked for."""

    def __init__(self, lookahead: bool = False):
        self.calls, self.prefetches, self.made = [], [], []
        super().__init__("micro", seed=3, streamer=micro_streamer(), lookahead=lookahead,
                         label="micro (random weights)")

    def frames(self, c2w, times):
        self.calls.append((c2w.clone(), times.clone()))
        out = super().frames(c2w, times)
        self.made += out
        return out

    def prefetch(self, c2w, times):
        self.prefetches.append((c2w.clone(), times.clone()))
        super().prefetch(c2w, times)


def key(k, up=False):
    pygame.event.post(pygame.event.Event(pygame.KEYUP if up else pygame.KEYDOWN, key=k, mod=0))


def press(app, k):
    key(k)
    key(k, up=True)
    app.step(DT)


def mouse(dx):
    pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, rel=(dx, 0), pos=(0, 0), buttons=(0, 0, 0)))


@pytest.fixture
def make_app(headless_app):
    return lambda source=None, **client: headless_app(source or Micro(), IMAGE, **client)


def walk(app, ticks: int) -> list[Frame]:
    shown = []
    for _ in range(ticks):
        app.step(DT)
        shown.append(app.frame)
    return shown


def same(a: list[Frame], b: list[Frame]) -> bool:
    return len(a) == len(b) and all(torch.equal(x.rgb, y.rgb) and torch.equal(x.c2w, y.c2w) for x, y in zip(a, b))


# --- frames flow, chunks planned ahead --------------------------------------------------------

def test_model_source_is_registered_with_the_default_model(monkeypatch):
    made = []

    class Made:
        def __init__(self, *a, **k):
            made.append((a, k))

    monkeypatch.setattr(registry, "ModelSource", Made)
    src = registry.make_source("model", 4, "red brick", "cpu")
    assert isinstance(src, Made) and src.name == "model"                # the spec as typed
    (args, kw), = made
    assert args == (None, 4, "red brick", "cpu")                        # None: checkpoints.toml's default
    assert kw["lookahead"] and kw["memory"] == "full"
    made.clear()
    src = registry.make_source("model:tiny-random@off+steps=2", 4, None, "cpu")
    (args, kw), = made
    assert args[0] == "tiny-random" and kw["memory"] == "off" and kw["steps"] == 2
    assert src.name == "model:tiny-random@off+steps=2"


def test_headless_frames_flow_along_one_planned_path(make_app):
    app = make_app()
    src, F = app.source, app.source.chunk
    start = app.camera.c2w()
    fwd = start[:3, 2]
    key(pygame.K_w)
    shown = walk(app, 2 * F + 1)
    assert [f.rgb.shape for f in shown] == [(IMAGE.height, IMAGE.width, 3)] * (2 * F + 1)
    assert len(src.calls) == 3 and src.prefetches == []          # headless: no background work
    poses = torch.cat([c for c, _ in src.calls] + [app.pacing.feed.planned[0]])   # (4F, 4, 4) incl. the next
    times = torch.cat([t for _, t in src.calls] + [app.pacing.feed.planned[1]])
    n = poses.shape[0]
    assert torch.allclose(times, DT * torch.arange(1, n + 1, dtype=torch.float64))
    expected = start[:3, 3] + STEP_M * torch.arange(1, n + 1)[:, None] * fwd    # straight on, 1/fps apart
    assert torch.allclose(poses[:, :3, 3], expected, atol=1e-4)
    assert all(torch.equal(f.c2w, poses[i]) for i, f in enumerate(shown))      # frames carry their poses
    assert torch.allclose(app.camera.c2w(), shown[-1].c2w, atol=1e-5)          # the player is where it shows
    assert app.sim_t == pytest.approx((2 * F + 1) * DT)


def test_overlap_generates_ahead_and_gives_the_same_frames(make_app):
    def play(app):
        key(pygame.K_w)
        out = walk(app, 3)
        mouse(40)
        out += walk(app, 4)
        key(pygame.K_w, up=True)
        return out + walk(app, 3)

    seq = play(make_app())
    app = make_app(Micro(lookahead=True))
    app.pacing.feed.ahead = True     # as in a window: the next chunk generates while this one shows
    ahead = play(app)
    src = app.source
    assert same(ahead, seq)
    assert len(src.prefetches) == len(src.calls) + 1                     # always one chunk in flight
    assert all(torch.equal(p[0], c[0]) for p, c in zip(src.prefetches, src.calls))
    turned = torch.cat([c for c, _ in src.calls])[:, :3, 2]
    assert not torch.allclose(turned[0], turned[-1])                     # the mouse turned the path


# --- pacing -------------------------------------------------------------------------------------

def test_pacer_keeps_cadence_when_on_time_and_restarts_when_late():
    p = Pacer(0.25)
    assert p.due(0.0)
    p.shown(0.0)
    assert not p.due(0.2) and p.due(0.25)
    p.shown(0.3)                     # a tick late: the next is still due at 0.5, not 0.55
    assert not p.due(0.49) and p.due(0.5)
    p.shown(2.0)                     # the queue ran dry: shown on arrival, cadence restarts there
    assert not p.due(2.2) and p.due(2.25)


def test_rate_meter_counts_over_a_window():
    m = RateMeter(window=2.0)
    for i in range(9):
        m.tick(i * 0.25)             # 4 per second
    assert m.rate(2.0) == pytest.approx(4.0)
    m.tick(10.0, count=4)
    assert m.rate(10.0) > 1e5        # a burst with no time between counts reads as very fast


class TimedSource:
    """A look-ahead source that takes `gen_s` of fake time per chunk."""
    name, chunk = "timed", 4

    def __init__(self, clock: list, gen_s: float):
        self.clock, self.gen_s = clock, gen_s
        self.done_at = None
        self.done_times = []

    def prefetch(self, c2w, times):
        self.done_at = self.clock[0] + self.gen_s
        self.done_times.append(self.done_at)

    def ready(self):
        return self.done_at is None or self.clock[0] + 1e-9 >= self.done_at

    def frames(self, c2w, times):
        assert self.ready(), "the client waited on an unfinished chunk"
        self.done_at = None
        z = torch.zeros(2, 2)
        return [Frame(rgb=torch.zeros(2, 2, 3, dtype=torch.uint8), depth=z + SKY_DEPTH,
                      dynamic=z.bool(), c2w=p, t=float(t)) for p, t in zip(c2w, times)]


def full(shape, value: float) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.float64)


def simulate(gen_s: float, seconds: float = 3.0):
    """The app's windowed loop on a fake clock ticking 8x per frame: shown times, chunk done times."""
    interval = DT
    tick = interval / 8
    clock = [0.0]
    src = TimedSource(clock, gen_s)
    feed, pacer, shows = ChunkFeed(src, interval, FirstPersonCamera()), Pacer(interval), []
    for k in range(int(seconds / tick)):
        clock[0] = k * tick
        if pacer.due(clock[0]) and feed.ready(InputFrame()):
            feed.next(InputFrame())
            pacer.shown(clock[0])
            shows.append(clock[0])
    return torch.tensor(shows, dtype=torch.float64), src.done_times


def test_steady_pace_when_the_model_keeps_up():
    shows, done = simulate(gen_s=0.1)            # 4 frames in 0.1 s: 40 FPS made, 16 shown
    assert shows[0] == pytest.approx(done[0], abs=DT / 8)
    assert torch.allclose(shows.diff(), full((len(shows) - 1,), DT))           # exactly 1/fps apart
    assert len(shows) == pytest.approx((3.0 - shows[0]) * IMAGE.fps, abs=1)


def test_as_fast_as_the_model_when_it_falls_behind():
    shows, done = simulate(gen_s=0.5)            # 4 frames in 0.5 s: 8 FPS made
    firsts = shows[::4]                          # each chunk's first frame
    arrivals = torch.tensor(done[:len(firsts)], dtype=torch.float64)
    assert torch.all((firsts - arrivals >= -1e-9) & (firsts - arrivals < DT / 8))   # shown on arrival
    whole = shows[:len(shows) // 4 * 4].reshape(-1, 4)                            # (chunks, 4)
    assert torch.allclose(whole.diff(dim=1), full((whole.shape[0], 3), DT))    # the rest at 1/fps
    assert torch.allclose(firsts.diff(), full((len(firsts) - 1,), 0.5))        # 4 frames per 0.5 s: 8 FPS


# --- side by side -----------------------------------------------------------------------------

def test_side_by_side_is_double_width_with_ground_truth_on_the_right(make_app):
    app = make_app(side_by_side=True, show_hud=False)
    W, H = IMAGE.width, IMAGE.height
    assert app.canvas.get_size() == (2 * W, H)
    key(pygame.K_d)
    walk(app, 3)
    app.draw()
    f = app.frame
    gt = Renderer(app.source.scene, IMAGE).render(f.c2w, f.t).rgb.numpy()
    assert app._rgb.shape == (H, 2 * W, 3)
    assert (app._rgb[:, :W] == f.rgb.numpy()).all() and (app._rgb[:, W:] == gt).all()
    shown = pygame.surfarray.array3d(app.canvas).swapaxes(0, 1)           # (H, 2W, 3)
    assert (shown[:H // 2, W:] == gt[:H // 2]).all()                      # above the labels
    press(app, pygame.K_b)
    assert app.canvas.get_size() == (W, H) and app._rgb.shape == (H, W, 3)
    press(app, pygame.K_F5)                                               # recording: size is fixed
    press(app, pygame.K_b)
    assert app.canvas.get_size() == (W, H) and "stop recording" in app.out.getvalue()


# --- whole-session F6 / F7 ----------------------------------------------------------------------

def test_f6_f7_round_trip_resumes_the_session_exactly(make_app, tmp_path):
    app = make_app(Micro(lookahead=True))
    app.pacing.feed.ahead = True
    _src, s = app.source, app.source.streamer
    press(app, pygame.K_F7)
    assert "no saved session" in app.out.getvalue()
    key(pygame.K_w)
    mouse(30)
    walk(app, 5)
    press(app, pygame.K_F6)                                    # settles the chunk in flight, saves
    (path,) = list((tmp_path / "sessions").glob("session_*.safetensors"))
    assert "session saved" in app.out.getvalue() and latest_session(tmp_path / "sessions") == path
    saved_poses, queued = s.poses.clone(), len(app.pacing.feed.queue)
    after_save = walk(app, 6)
    press(app, pygame.K_F7)
    assert "session loaded" in app.out.getvalue()
    assert torch.equal(s.poses[:len(saved_poses)], saved_poses)            # resumed at the save
    after_load = [app.frame] + walk(app, 5 - queued)
    assert same(after_load, after_save[queued:])               # same frames as going on after the save

    bad = tmp_path / "sessions" / "session_29991231-235959-999.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    walk(app, 2)
    app.pacing.feed.settle()
    app.pacing.feed.ahead = False    # nothing generates behind the check's back
    poses, queue = s.poses.clone(), list(app.pacing.feed.queue)
    press(app, pygame.K_F7)
    assert "cannot load session" in app.out.getvalue() and bad.name in app.out.getvalue()
    assert torch.equal(s.poses, poses) and app.frame is queue[0]
    assert len(app.pacing.feed.queue) == len(queue) - 1 and all(a is b for a, b in zip(app.pacing.feed.queue, queue[1:]))


def test_play_resumes_a_session_at_its_last_pose(tmp_path, monkeypatch, capsys):
    a = Micro()
    a.frames(a.spawn_pose()[None].repeat(2, 1, 1), torch.tensor([0.0, DT]))
    turn = torch.eye(4)
    turn[:3, 3] = torch.tensor([0.5, 0.0, -0.5])
    a.frames(turn @ a.spawn_pose()[None].repeat(2, 1, 1), torch.tensor([2 * DT, 3 * DT]))
    f = tmp_path / "s.safetensors"
    a.save(f)
    b = Micro()
    monkeypatch.setattr(registry, "ModelSource", lambda *args, **kw: b)
    assert cli.main(["play", "--source", "model", "--session", str(f), "--headless", "--seconds", str(4 * DT)]) == 0
    assert "played 4 frames" in capsys.readouterr().out
    s = b.streamer
    assert torch.equal(s.poses[:4], a.streamer.poses)
    assert torch.allclose(s.poses[4], a.streamer.poses[-1], atol=1e-5)    # no input: it goes on from there
    assert float(s.times[4]) == pytest.approx(4 * DT)


def test_play_context_starts_the_model_from_real_frames(monkeypatch, capsys):
    b = Micro()
    monkeypatch.setattr(registry, "ModelSource", lambda *args, **kw: b)
    assert cli.main(["play", "--source", "model", "--context", "3", "--headless", "--seconds", str(4 * DT)]) == 0
    assert b.context_frames == 3 and len(b.made) == 4
    gt = Renderer(b.scene, IMAGE)
    real = [torch.equal(f.rgb, gt.render(f.c2w, f.t).rgb) for f in b.made]
    assert real == [True, True, True, False]                 # 3 observed frames, then generated ones
    assert cli.main(["play", "--source", "world", "--context", "3", "--headless", "--seconds", str(DT)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--context 3" in err


# --- edit mode with a model -------------------------------------------------------------------

def test_edit_mode_freezes_inserts_and_an_erase_stays_erased(make_app, monkeypatch):
    app = make_app()
    s, ui = app.source.streamer, app.memory_ui
    got = []                         # (ids, their centres) each chunk retrieved from memory
    retrieve = s.memory.retrieve

    def recording(*a, **k):
        b = retrieve(*a, **k)
        ids = b.ids[b.valid]
        got.append(s.memory.store.centre[ids].clone())
        return b

    monkeypatch.setattr(s.memory, "retrieve", recording)
    key(pygame.K_RIGHT)
    walk(app, 4)
    key(pygame.K_RIGHT, up=True)
    walk(app, 2)
    press(app, pygame.K_e)
    assert s.memory_frozen and ui.memory is s.memory
    got.clear()
    walk(app, 2)
    assert got and len(got[-1]) > 0
    region = Region.sphere(got[-1][0].tolist(), 1.0)              # something the model was just given
    monkeypatch.setattr(ui.edit, "aim", lambda mem, frame, K: Aim(frame.c2w, (0.0, 0.0), 1.0, region))
    press(app, pygame.K_x)
    assert "erased " in app.out.getvalue() and "erased 0 " not in app.out.getvalue()
    n, chunks = len(s.memory), s.chunk
    got.clear()
    walk(app, 4)
    near = torch.cat(got)
    assert s.chunk > chunks and len(s.memory) == n                 # frozen: chunks made, nothing inserted
    assert len(near) > 0 and bool(((near - torch.tensor(region.centre)).norm(dim=-1) > region.radius).all())
    press(app, pygame.K_e)
    walk(app, 4)
    assert not s.memory_frozen and len(s.memory) > n


def test_hud_shows_both_rates_and_random_weights(make_app):
    app = make_app()
    walk(app, 3)
    lines = app.hud_lines()
    assert "shown" in lines[0] and "model" in lines[0] and lines[0].count("FPS") == 2
    assert app.source.gen_fps > 0 and "model: micro (random weights)" in lines
