"""Typed configuration. Every field has a default and a one-line reason.

Configs are plain dataclasses passed explicitly; nothing reads globals. Model size presets
(`tiny`, `base`) live beside the model, in `worldplay/model/presets.py`: this base module cannot
import the model layer above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageConfig:
    width: int = 640            # the product's output size (the user's bar is 640x360)
    height: int = 360           # 16:9 at 640 wide
    fov_x_deg: float = 90.0     # horizontal FOV; wide enough to feel like a game camera
    fps: float = 16.0           # generation / recording rate; the user's bar is 16 FPS


@dataclass(frozen=True)
class ControlsConfig:
    walk_speed: float = 3.0           # m/s; a brisk walk in scenes tens of metres wide
    sprint_multiplier: float = 2.5    # Shift held; crosses a scene in a few seconds
    vertical_speed: float = 2.0       # m/s for Space / C (fly up / down)
    mouse_sensitivity: float = 0.0025 # radians per pixel of relative mouse motion
    arrow_turn_rate: float = 1.8      # rad/s for arrow keys (mouse alternative, ~100 deg/s)
    invert_y: bool = False            # some players expect flight-style pitch
    pitch_limit_deg: float = 85.0     # clamp short of straight up/down so yaw stays defined
    min_height: float = 0.3           # keep the eye above the ground plane
    max_height: float = 12.0          # and below the fog ceiling where scenes end


@dataclass(frozen=True)
class ClientConfig:
    scale: int = 1                    # window is 640x360 times this (1 or 2)
    fullscreen: bool = False          # demo booths run fullscreen
    show_hud: bool = True             # FPS / pose / scene overlay on by default
    booth_idle_seconds: float = 30.0  # attract loop starts after this long without input
    booth_quit_combo: str = "ctrl+shift+q"  # Esc alone must not end a booth session
    screenshot_dir: str = "screenshots"     # relative to the user's current directory
    recording_dir: str = "recordings"       # where the record toggle writes mp4 files
    session_dir: str = "sessions"           # where F6 saves a model's whole session (F7 loads the newest)
    side_by_side: bool = False        # start with the frame | ground-truth view (B toggles)


@dataclass(frozen=True)
class WorldConfig:
    image: ImageConfig = field(default_factory=ImageConfig)
    device: str = "cpu"               # torch device for ray casting ("cuda" when available)
    fog_start: float = 25.0           # metres; hides the scene's far edge
    fog_end: float = 70.0             # fully fogged beyond this
