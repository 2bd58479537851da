"""The playable client: a flat, short game loop  events -> action -> source -> draw -> tick.

`App` shows frames from any `FrameSource` (the world renderer, the model streamer) and never
touches torch modules. How frames go up is the source's pacing strategy (pacing.py): sources
that make frames when asked are pulled as the camera moves with real time (pull.OnDemand);
sources that generate ahead are fed a chunk ahead and shown at a steady 1/fps when they keep
up (feed.LookAhead). `headless=True` draws into an offscreen Surface with the dummy video
driver, so the whole loop runs in tests and on machines without a display; headless `run`
steps exactly 1/fps of world time per tick and waits for every frame (deterministic).
B shows ground truth beside the frame (side_by_side.py); F6 / F7 save and resume a model's
whole session (session_keys.py), other sources' memory (memory_ui.py). What a source can do
beyond the required protocol the app learns from its capabilities (sources/capabilities.py).
"""

from __future__ import annotations

import math
import os
import sys

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from worldplay.client.booth import BOOTH_DISABLED, Booth  # noqa: E402
from worldplay.client.capture import Capture  # noqa: E402
from worldplay.client.feed import LookAhead  # noqa: E402
from worldplay.client.hud import Hud  # noqa: E402
from worldplay.client.input import InputMapper, control_rows  # noqa: E402
from worldplay.client.memory_ui import MEMORY_ACTIONS, MemoryUi  # noqa: E402
from worldplay.client.pacing import EPS, Pacing, RateMeter  # noqa: E402
from worldplay.client.pull import OnDemand  # noqa: E402
from worldplay.client.session_keys import SessionKeys, resume_point  # noqa: E402
from worldplay.client.side_by_side import SideBySide  # noqa: E402
from worldplay.client.window import Window  # noqa: E402
from worldplay.config import ClientConfig, ControlsConfig, ImageConfig  # noqa: E402
from worldplay.controls import CameraState, FirstPersonCamera, InputFrame  # noqa: E402
from worldplay.errors import WorldplayError  # noqa: E402
from worldplay.frame import Frame  # noqa: E402
from worldplay.sources.capabilities import HasScene, HasSpawn, Prefetching  # noqa: E402
from worldplay.sources.protocol import FrameSource  # noqa: E402
from worldplay.world.scene import make_scene  # noqa: E402

DISPLAY_FPS_CAP = 60     # window loop rate: mouse look stays smooth while frames come at <= fps
ATTRACT_BANNER_Y = 0.8   # invitation sits low so the attract loop's scene stays in view
HUD_OWN_KEYS = {"source", "scene", "seed", "source ms"}   # the app's own lines show these already
SETTLE_ACTIONS = MEMORY_ACTIONS - {"memory_view"}   # they read or change what generation writes


def make_pacing(source: FrameSource, camera: FirstPersonCamera, controls: ControlsConfig, interval: float,
                booth: Booth | None, headless: bool) -> Pacing:
    """LookAhead for a chunked source that generates ahead (Prefetching), OnDemand for any other."""
    if int(source.chunk) > 1 and isinstance(source, Prefetching):
        return LookAhead(source, camera, FirstPersonCamera(controls), interval, booth, headless)
    return OnDemand(source, camera, interval, booth)


def spawn_state(source: FrameSource) -> CameraState:
    """Start pose: the source's own spawn pose, else its scene's, else the default."""
    if isinstance(source, HasSpawn):
        return CameraState.from_c2w(source.spawn_pose().cpu())
    if isinstance(source, HasScene):
        return CameraState.from_c2w(source.scene.spawn_pose().cpu())
    return CameraState()


class App:
    def __init__(self, source: FrameSource, client: ClientConfig = ClientConfig(),
                 controls: ControlsConfig = ControlsConfig(), image: ImageConfig = ImageConfig(),
                 headless: bool = False, booth: bool = False, seed: int | None = None,
                 prompt: str | None = None, out=None):
        self.source, self.client, self.image = source, client, image
        # The scene shown is the source's unless the caller names another one.
        self.headless = headless
        scened = isinstance(source, HasScene)
        self.seed = (int(source.seed) if scened else 0) if seed is None else seed
        self.prompt = (source.prompt if scened else None) if seed is None and prompt is None else prompt
        self.out = out if out is not None else sys.stdout
        self.interval = 1.0 / image.fps
        self.side = SideBySide(source, image, client.side_by_side)
        self.size = self._canvas_size()
        self.hud = Hud(client.scale)
        self.window = Window(headless, client.fullscreen or booth, self.size,
                             f"worldplay - {source.name}", self.hud.toast)
        self.canvas = pygame.Surface(self.size)      # drawn at 640x360*scale, then shown
        self.mapper = InputMapper(client.booth_quit_combo, grabbed=True)
        self._set_grab(True)
        self.capture = Capture(client.screenshot_dir, client.recording_dir, image.fps)
        self.booth = Booth(client.booth_idle_seconds, image.fps) if booth else None
        self.camera = FirstPersonCamera(controls, spawn_state(source))
        self.pacing = make_pacing(source, self.camera, controls, self.interval, self.booth, headless)
        self.shown_rate = RateMeter()
        self.running, self.paused = True, False
        self.show_help, self.show_hud = False, client.show_hud
        self.frame: Frame | None = None
        self._rgb = None             # current frame as numpy (H, W, 3) uint8
        self._surf = None            # its pygame Surface at canvas size, made on first draw
        self.sim_t = 0.0             # world seconds since (re)start
        self.frames_shown = 0
        self._single = self._force_frame = self._want_shot = False
        self._activity = False       # any input this tick (booth idle timer)
        self.last_screenshot = None
        self.memory_ui = MemoryUi(source, image, client, self._say, booth=booth)   # M, E, F6 / F7
        self.sessions = SessionKeys(source, client.session_dir, self._say, self.pacing.settle, self._resumed, booth)
        self._resumed(quiet=True)    # a source resumed before the app starts (play --session)

    @property
    def source_ms(self) -> float:
        """The source's time per frame when pulled on demand (0 for a look-ahead source)."""
        return self.pacing.source_ms

    # --- setup ---------------------------------------------------------------------------
    @property
    def screen(self) -> pygame.Surface | None:
        return self.window.screen

    def _canvas_size(self) -> tuple[int, int]:
        s = self.client.scale
        return (self.image.width * s * self.side.width_factor(), self.image.height * s)

    def _set_grab(self, on: bool) -> None:
        self.mapper.grabbed = on
        self.window.set_grab(on)

    def close(self) -> None:
        """Finalise any recording and close the window (safe to call twice)."""
        path = self.capture.stop()
        if path is not None:
            print(f"recording saved: {path}", file=self.out)
        self.window.close()

    def __enter__(self) -> "App":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- events -> actions -------------------------------------------------------------------
    def handle_events(self, events) -> InputFrame:
        tick = self.mapper.feed(events)
        self._activity = tick.activity
        for action in tick.actions:
            self._do(action)
        return tick.frame

    def _do(self, action: str) -> None:
        if self.booth is not None and action in BOOTH_DISABLED:
            return
        if action in SETTLE_ACTIONS:
            self.pacing.settle()     # finish the chunk in flight first: the outcome never races it
        if self.sessions.do(action) or self.memory_ui.do(action, self.frame):
            return
        if action == "quit":
            self.running = False
        elif action == "escape":
            if self.booth is not None:
                return
            if self.mapper.grabbed:
                self._set_grab(False)
            else:
                self.running = False
        elif action == "grab":
            self._set_grab(True)
        elif action == "help":
            self.show_help = not self.show_help
        elif action == "hud":
            self.show_hud = not self.show_hud
        elif action == "pause":
            self.paused = not self.paused
        elif action == "step":
            self._single = self.paused
        elif action == "reset":
            self.reset()
        elif action == "new_scene":
            self.new_scene()
        elif action == "screenshot":
            self._want_shot = True          # taken in draw(), of what is then on screen
        elif action == "record":
            self.toggle_recording()
        elif action == "side_by_side":
            self.toggle_side_by_side()
        elif action == "fullscreen":
            self.window.toggle_fullscreen()

    def _say(self, text: str) -> None:
        print(text, file=self.out)
        self.hud.toast(text)

    def toggle_recording(self) -> None:
        if self.capture.recording:
            path = self.capture.stop()
            self._say(f"recording saved: {path}" if path else "recording stopped (no frames)")
            return
        try:
            self._say(f"recording to {self.capture.start()}")
        except WorldplayError as e:    # e.g. unwritable folder: tell the player, keep playing
            self._say(f"cannot record: {e}")

    def toggle_side_by_side(self) -> None:
        if self.capture.recording:   # an mp4 keeps one frame size from start to end
            self._say("stop recording (F5) before switching the side-by-side view (B)")
            return
        self.side.on = not self.side.on
        self.size = self._canvas_size()
        self.canvas = pygame.Surface(self.size)
        self.window.reopen(self.size)
        if self.frame is not None:
            self._rgb, self._surf = self.side.image_of(self.frame), None

    def _resumed(self, quiet: bool = False) -> None:
        """A session was loaded into the source: go on from its last pose, at its time."""
        start, t = resume_point(self.source)
        if start is None:
            self.pacing.reset(self.camera.state)
            return
        if isinstance(self.source, HasScene):    # a session may have been saved in another scene
            self.seed, self.prompt = int(self.source.seed), self.source.prompt
        self.camera.state = start      # R still goes back to the scene's start
        self.pacing.reset(start, t)
        if not quiet:
            self.memory_ui.reset()
            self._force_frame = True

    def reset(self) -> None:
        """Back to the start pose of the same scene; the source forgets its history."""
        self.source.reset(self.seed, self.prompt)
        self._restart(self.camera.start)

    def new_scene(self) -> None:
        """Next seed, words picked by the scene from the seed."""
        self.seed, self.prompt = self.seed + 1, None
        self.source.reset(self.seed, None)
        self._restart(spawn_state(self.source))

    def _restart(self, start: CameraState) -> None:
        self.camera.reset(start)
        self.memory_ui.reset()
        self.pacing.reset(self.camera.state)
        self.sim_t = 0.0
        self._force_frame = True
        self.shown_rate.reset()

    # --- step ---------------------------------------------------------------------------------
    def step(self, dt: float, events=None) -> None:
        """One tick, top to bottom: events -> actions -> the pace -> a frame from the source.
        `events`: pygame's queue when None; `dt`: seconds since the last tick."""
        inp = self.handle_events(pygame.event.get() if events is None else events)
        if self.booth is not None:
            self._booth_tick(dt)
        single, self._single = self._single, False
        if self.paused and not single:
            if self._force_frame:       # reset / new scene while paused: show the new start
                self._show(self.pacing.next(inp, self.sim_t))
            return
        advance = self.pacing.advance(inp, dt, single, single or self._force_frame or self.frame is None)
        self.sim_t += advance.world_dt
        if advance.show:
            self._show(self.pacing.next(inp, self.sim_t))
        if advance.world_dt:
            self._record(advance.world_dt)

    def _record(self, dt: float) -> None:
        try:
            self.capture.tick(dt, self._rgb)
        except WorldplayError as e:     # e.g. disk full: the player keeps playing, unrecorded
            self.capture.abort()
            if self.headless:           # an offline recording run has failed at its one job
                raise
            self._say(f"recording stopped: {e}")

    def _booth_tick(self, dt: float) -> None:
        event = self.booth.tick(self._activity, dt)
        if event == "start":            # a visit ended: fresh scene for the next visitor
            self.new_scene()
            # a source without a scene still gets a walk through one
            scene = self.source.scene if isinstance(self.source, HasScene) else make_scene(self.seed, self.prompt)
            self.booth.begin(scene, self.camera.c2w())
            self.paused = self.show_help = False

    def _show(self, frame: Frame) -> None:
        self._force_frame = False
        self.frame = frame
        self._rgb = self.side.image_of(frame)                 # (H, W, 3) or (H, 2W, 3) uint8
        self.memory_ui.observe(frame)
        self._surf = None
        self.frames_shown += 1
        self.shown_rate.tick()

    # --- draw ---------------------------------------------------------------------------------
    def hud_lines(self) -> list[str]:
        s = self.camera.state
        words = (self.source.scene.prompt if isinstance(self.source, HasScene) else self.prompt) or ""
        if isinstance(self.source, Prefetching):    # a model: frames generated per second
            rate = f"model {self.source.gen_fps:4.1f} FPS"
        else:
            rate = f"{self.source_ms:5.1f} ms/frame"
        lines = [f"{self.source.name}   shown {self.shown_rate.rate():4.1f} FPS   {rate}",
                 f"x {s.x:+6.2f}  y {s.y:+5.2f}  z {s.z:+6.2f}   "
                 f"yaw {math.degrees(s.yaw):+4.0f}\u00b0  pitch {math.degrees(s.pitch):+3.0f}\u00b0",
                 f"scene {self.seed}" + (f": {words}" if words else "")]
        lines += [f"{k}: {v}" for k, v in (self.source.hud() or {}).items() if k not in HUD_OWN_KEYS]
        return lines + self.memory_ui.hud_lines()

    def _frame_surface(self) -> pygame.Surface:
        if self._surf is None:
            h, w = self._rgb.shape[:2]
            surf = pygame.image.frombuffer(self._rgb.tobytes(), (w, h), "RGB")
            self._surf = surf if (w, h) == self.size else pygame.transform.smoothscale(surf, self.size)
        return self._surf

    def draw(self) -> None:
        c = self.canvas
        if self._rgb is None:
            c.fill((0, 0, 0))
        else:
            c.blit(self._frame_surface(), (0, 0))
        self.memory_ui.draw(self.side.left(c), self.frame, self.camera.c2w())
        self.side.draw_labels(c, self.hud)
        if self.show_hud:
            self.hud.draw_stats(c, self.hud_lines())
        if self.capture.recording:
            self.hud.draw_rec(c, self.capture.seconds)
        if self.booth is not None and self.booth.attract:
            self.hud.draw_banner(c, "worldplay", "move the mouse or press a key to play", ATTRACT_BANNER_Y)
        elif self.paused:
            self.hud.draw_banner(c, "PAUSED", "P resumes, . steps one frame")
        if self.show_help:
            self.hud.draw_help(c, control_rows(self.client.booth_quit_combo))
        if self._want_shot:
            self._want_shot = False
            self.last_screenshot = self.capture.screenshot(c)
            self._say(f"screenshot saved: {self.last_screenshot}")
        self.hud.draw_toast(c)
        self.window.present(c)

    # --- loop ---------------------------------------------------------------------------------
    def run(self, max_frames: int | None = None, seconds: float | None = None) -> None:
        """Play until quit, `max_frames` frames shown or `seconds` of world time."""
        clock = pygame.time.Clock()
        dt = self.interval
        while self.running:
            self.step(dt)               # events -> actions -> source
            self.draw()
            if max_frames is not None and self.frames_shown >= max_frames:
                break
            if seconds is not None and self.sim_t + EPS >= seconds:
                break
            dt = self.interval if self.headless else clock.tick(DISPLAY_FPS_CAP) / 1000.0   # tick
