"""The playable client: a flat, short game loop  events -> action -> step -> draw -> tick.

`App` pulls frames from any `FrameSource` (the world renderer now, the model streamer later)
and never touches torch modules. The camera moves with real time (`dt`), frames are shown
at the source's rate (ImageConfig.fps) from a small queue, and chunked sources get a chunk of
future poses at 1/fps spacing. `headless=True` draws into an offscreen Surface with the dummy
video driver, so the whole loop runs in tests and on machines without a display; headless
`run` steps exactly 1/fps of world time per tick (an offline render: every frame unique).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from dataclasses import replace

import torch

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from worldplay.client.booth import BOOTH_DISABLED, Booth  # noqa: E402
from worldplay.client.capture import Capture  # noqa: E402
from worldplay.client.hud import FpsMeter, Hud  # noqa: E402
from worldplay.client.input import InputMapper, control_rows  # noqa: E402
from worldplay.client.memory_ui import MemoryUi  # noqa: E402
from worldplay.client.source import FrameSource  # noqa: E402
from worldplay.config import ClientConfig, ControlsConfig, ImageConfig  # noqa: E402
from worldplay.controls import CameraState, FirstPersonCamera, InputFrame  # noqa: E402
from worldplay.errors import WorldplayError  # noqa: E402
from worldplay.world.frame import Frame  # noqa: E402

DISPLAY_FPS_CAP = 60     # window loop rate: mouse look stays smooth while frames come at <= fps
MAX_DT = 0.5             # s; a stall (window drag, slow chunk) must not teleport the player
SOURCE_MS_EMA = 0.2      # weight of the newest source timing in the HUD's ms/frame
WARMUP_PULLS = 2         # source calls shown raw before the ms/frame EMA starts
ATTRACT_BANNER_Y = 0.8   # invitation sits low so the attract loop's scene stays in view
HUD_OWN_KEYS = {"source", "scene", "seed", "source ms"}   # the app's own lines show these already
EPS = 1e-6               # float slack when comparing accumulated time to the frame interval
NO_DISPLAY = ("no display found (DISPLAY / WAYLAND_DISPLAY unset or unusable); play offscreen "
              "with `worldplay play --headless --seconds 10 --record out.mp4`, "
              "or record a scripted walk with `worldplay record`")


def spawn_state(source) -> CameraState:
    """Start pose: the source's `spawn_pose` (method or tensor), else its scene's, else default."""
    sp = getattr(source, "spawn_pose", None)
    if sp is None:
        sp = getattr(getattr(source, "scene", None), "spawn_pose", None)
    if callable(sp):
        sp = sp()
    return CameraState.from_c2w(torch.as_tensor(sp).cpu()) if sp is not None else CameraState()


class App:
    def __init__(self, source: FrameSource, client: ClientConfig = ClientConfig(),
                 controls: ControlsConfig = ControlsConfig(), image: ImageConfig = ImageConfig(),
                 headless: bool = False, booth: bool = False, seed: int = 0,
                 prompt: str | None = None, out=None):
        self.source, self.client, self.image = source, client, image
        self.headless, self.seed, self.prompt = headless, seed, prompt
        self.out = out if out is not None else sys.stdout
        self.interval = 1.0 / image.fps
        self.size = (image.width * client.scale, image.height * client.scale)
        self.fullscreen = client.fullscreen or booth
        self._window = False
        self.hud = Hud(client.scale)
        self.screen: pygame.Surface | None = None    # the window's surface, if any
        self._init_display()
        self.canvas = pygame.Surface(self.size)      # drawn at 640x360*scale, then shown
        self.mapper = InputMapper(client.booth_quit_combo, grabbed=True)
        self._set_grab(True)
        self.fps_meter = FpsMeter()
        self.capture = Capture(client.screenshot_dir, client.recording_dir, image.fps)
        self.booth = Booth(client.booth_idle_seconds, image.fps) if booth else None
        self.camera = FirstPersonCamera(controls, spawn_state(source))
        self.running, self.paused = True, False
        self.show_help, self.show_hud = False, client.show_hud
        self.queue: deque[Frame] = deque()
        self.frame: Frame | None = None
        self._rgb = None             # current frame as numpy (H, W, 3) uint8
        self._surf = None            # its pygame Surface at canvas size, made on first draw
        self.sim_t = 0.0             # world seconds since (re)start
        self._since_frame = 0.0      # world seconds since the shown frame changed
        self.frames_shown = 0
        self.source_ms = 0.0         # EMA of the source's time per frame
        self._pulls = 0
        self._single = self._force_frame = self._want_shot = False
        self._activity = False       # any input this tick (booth idle timer)
        self.last_screenshot = None
        self.memory_ui = MemoryUi(source, image, client, self._say, booth=booth)   # M, E, F6 / F7

    # --- setup ------------------------------------------------------------------------------
    def _init_display(self) -> None:
        try:
            if self.headless:
                if not pygame.display.get_init():
                    os.environ["SDL_VIDEODRIVER"] = "dummy"    # never needs (or opens) a window
                pygame.display.init()
                return
            pygame.display.init()
            self._window = True
            self.screen = self._open_window()
            pygame.display.set_caption(f"worldplay - {getattr(self.source, 'name', 'source')}")
        except pygame.error as e:
            raise WorldplayError(f"{NO_DISPLAY} [{e}]") from e

    def _open_window(self) -> pygame.Surface:
        if self.fullscreen:
            # SCALED keeps the 16:9 canvas (letterboxed) at any monitor resolution; drivers
            # without a renderer refuse it, and then the game stays windowed.
            try:
                surf = pygame.display.set_mode(self.size, pygame.FULLSCREEN | pygame.SCALED)
                if surf.get_size() == self.size:
                    return surf
            except pygame.error:
                pass
            self.fullscreen = False
            self.hud.toast("fullscreen is not available with this video driver")
        return pygame.display.set_mode(self.size)

    def _set_grab(self, on: bool) -> None:
        self.mapper.grabbed = on
        if self._window:
            pygame.event.set_grab(on)      # with a hidden cursor SDL sends relative motion
            pygame.mouse.set_visible(not on)

    def close(self) -> None:
        """Finalise any recording and close the window (safe to call twice)."""
        path = self.capture.stop()
        if path is not None:
            print(f"recording saved: {path}", file=self.out)
        if self._window:
            self._set_grab(False)
            pygame.display.quit()
            self._window = False

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
        if self.memory_ui.do(action, self.frame):
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
        elif action == "fullscreen":
            self.fullscreen = not self.fullscreen
            if self._window:
                self.screen = self._open_window()

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
        self.queue.clear()
        self.sim_t = self._since_frame = 0.0
        self._force_frame = True
        self.fps_meter.reset()

    # --- step ---------------------------------------------------------------------------------
    def step(self, dt: float, events=None) -> None:
        """One tick: read events (pygame's queue when `events` is None), move, maybe show a frame."""
        inp = self.handle_events(pygame.event.get() if events is None else events)
        if self.booth is not None:
            self._booth_tick(dt)
        single, self._single = self._single, False
        if self.paused and not single:
            if self._force_frame:       # reset / new scene while paused: show the new start
                self._show_next(inp)
            return
        dt = self.interval if single else min(dt, MAX_DT)
        self.sim_t += dt
        if self.booth is not None and self.booth.attract:
            self.camera.state = CameraState.from_c2w(self.booth.pose())
        else:
            self.camera.update(inp, dt)
        self._since_frame += dt
        if (single or self._force_frame or self.frame is None
                or self._since_frame + EPS >= self.interval):
            self._show_next(inp)
            # keep the remainder for a steady pace, but never bank more than one frame of lag
            self._since_frame = min(max(self._since_frame - self.interval, 0.0), self.interval)
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
            scene = getattr(self.source, "scene", None)
            if scene is None:
                try:
                    from worldplay.world.scene import make_scene
                    scene = make_scene(self.seed, self.prompt)
                except ImportError:
                    scene = None
            self.booth.begin(scene, self.camera.c2w())
            self.paused = self.show_help = False

    def _show_next(self, inp: InputFrame) -> None:
        self._force_frame = False
        if not self.queue:
            self._pull(inp)
        self.frame = self.queue.popleft()
        self._rgb = self.frame.rgb.detach().cpu().numpy()     # (H, W, 3) uint8
        self.memory_ui.observe(self.frame)
        self._surf = None
        self.frames_shown += 1
        self.fps_meter.tick()

    def _pull(self, inp: InputFrame) -> None:
        n = max(1, int(getattr(self.source, "chunk", 1)))
        if n == 1:
            c2w = self.camera.c2w()[None]                                  # (1, 4, 4)
            times = torch.tensor([self.sim_t], dtype=torch.float32)         # (1,)
        else:
            if self.booth is not None and self.booth.attract:
                c2w = self.booth.poses(n)                                  # (n, 4, 4)
            else:   # mouse motion is per tick and already applied: only held keys continue
                c2w = self.camera.rollout(replace(inp, mouse_dx=0.0, mouse_dy=0.0), self.interval, n)
            times = self.sim_t + self.interval * torch.arange(1, n + 1, dtype=torch.float32)
        t0 = time.perf_counter()
        frames = list(self.source.frames(c2w, times))
        if not frames:
            raise WorldplayError(f"frame source {self.source.name!r} returned no frames for "
                                 f"{n} poses; it is broken, try --source world")
        ms = (time.perf_counter() - t0) * 1000.0 / len(frames)
        self._pulls += 1
        # the first call pays one-off warm-up (allocations, caches): let the second replace it
        self.source_ms = ms if self._pulls <= WARMUP_PULLS else (
            (1 - SOURCE_MS_EMA) * self.source_ms + SOURCE_MS_EMA * ms)
        self.queue.extend(frames)

    # --- draw ---------------------------------------------------------------------------------
    def hud_lines(self) -> list[str]:
        s = self.camera.state
        words = getattr(getattr(self.source, "scene", None), "prompt", None) or self.prompt or ""
        lines = [f"{self.source.name}   {self.fps_meter.fps:4.1f} FPS   {self.source_ms:5.1f} ms/frame",
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
        self.memory_ui.draw(c, self.frame, self.camera.c2w())
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
        if self._window:
            if self.screen.get_size() == self.size:
                self.screen.blit(c, (0, 0))
            else:   # a driver that ignored the requested size: fill the window instead
                pygame.transform.scale(c, self.screen.get_size(), self.screen)
            pygame.display.flip()

    # --- loop ---------------------------------------------------------------------------------
    def run(self, max_frames: int | None = None, seconds: float | None = None) -> None:
        """Play until quit, `max_frames` frames shown or `seconds` of world time."""
        clock = pygame.time.Clock()
        dt = self.interval
        while self.running:
            self.step(dt)
            self.draw()
            if max_frames is not None and self.frames_shown >= max_frames:
                break
            if seconds is not None and self.sim_t + EPS >= seconds:
                break
            dt = self.interval if self.headless else clock.tick(DISPLAY_FPS_CAP) / 1000.0
