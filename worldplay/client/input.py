"""pygame events -> `InputFrame` (movement) + named actions (help, pause, screenshot...).

`CONTROLS` is the one list of controls: key bindings are derived from it, and the same
list is printed at start and shown by the F1 overlay, so the help can never drift from
what the keys do. Keys are tracked from KEYDOWN/KEYUP events (not `key.get_pressed`) so
synthetic events drive the client exactly like a keyboard does, which is what tests use.
The memory controls (minimap, edit mode, save / load) live in `MEMORY_CONTROLS`, apart from
the movement and app controls, and are listed and bound the same way; Tab stays reserved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from worldplay.controls import InputFrame  # noqa: E402
from worldplay.errors import WorldplayError  # noqa: E402


@dataclass(frozen=True)
class Control:
    label: str                      # keys as the player reads them, e.g. "W / S"
    what: str                       # what they do
    kind: str = "info"              # "axis" (codes = +key, -key), "hold", "action" or "info"
    codes: tuple[int, ...] = ()     # pygame key codes
    name: str = ""                  # InputFrame field for axis/hold, action name for action


CONTROLS: tuple[Control, ...] = (
    Control("W / S", "walk forward / back", "axis", (pygame.K_w, pygame.K_s), "forward"),
    Control("A / D", "strafe left / right", "axis", (pygame.K_d, pygame.K_a), "strafe"),
    Control("Mouse", "look around (click the window to grab it)"),
    Control("Left / Right", "turn (mouse alternative)", "axis", (pygame.K_RIGHT, pygame.K_LEFT), "turn"),
    Control("Up / Down", "look up / down", "axis", (pygame.K_UP, pygame.K_DOWN), "look"),
    Control("Space / C", "fly up / down", "axis", (pygame.K_SPACE, pygame.K_c), "vertical"),
    Control("Shift", "sprint", "hold", (pygame.K_LSHIFT, pygame.K_RSHIFT), "sprint"),
    Control("F1", "show / hide this help", "action", (pygame.K_F1,), "help"),
    Control("H", "show / hide the HUD", "action", (pygame.K_h,), "hud"),
    Control("P", "pause / resume", "action", (pygame.K_p,), "pause"),
    Control(".", "step one frame while paused", "action", (pygame.K_PERIOD, pygame.K_KP_PERIOD), "step"),
    Control("R", "reset: back to the start of this scene", "action", (pygame.K_r,), "reset"),
    Control("N", "new scene (next seed)", "action", (pygame.K_n,), "new_scene"),
    Control("F12 / F2", "screenshot (PNG)", "action", (pygame.K_F12, pygame.K_F2), "screenshot"),
    Control("F5", "start / stop recording (mp4)", "action", (pygame.K_F5,), "record"),
    Control("F11", "fullscreen on / off", "action", (pygame.K_F11,), "fullscreen"),
    Control("B", "side by side: frame | ground truth at the same pose", "action", (pygame.K_b,), "side_by_side"),
    Control("Esc", "release the mouse; again: quit (not in booth mode)", "action", (pygame.K_ESCAPE,), "escape"),
)

MEMORY_CONTROLS: tuple[Control, ...] = (
    Control("M", "memory map (top-down minimap) on / off", "action", (pygame.K_m,), "memory_view"),
    Control("E", "edit mode: crosshair, memory frozen", "action", (pygame.K_e,), "edit"),
    Control("X", "edit: erase memory around the crosshair", "action", (pygame.K_x,), "erase"),
    Control("Y", "edit: copy memory around the crosshair", "action", (pygame.K_y,), "copy"),
    Control("V", "edit: paste the copy at the crosshair", "action", (pygame.K_v,), "paste"),
    Control("F6", "save the memory to a file (a model: the whole session)", "action", (pygame.K_F6,),
            "memory_save"),
    Control("F7", "load the last saved memory (a model: the last session)", "action", (pygame.K_F7,),
            "memory_load"),
)

# Each keycode maps to exactly one control; a duplicate would make one of them dead.
_AXIS_KEYS: dict[int, tuple[str, float]] = {}
_HOLD_KEYS: dict[int, str] = {}
_ACTION_KEYS: dict[int, str] = {}
for _c in CONTROLS + MEMORY_CONTROLS:
    if _c.kind == "axis":
        _AXIS_KEYS[_c.codes[0]] = (_c.name, 1.0)
        _AXIS_KEYS[_c.codes[1]] = (_c.name, -1.0)
    for _k in _c.codes:
        if _c.kind == "hold":
            _HOLD_KEYS[_k] = _c.name
        elif _c.kind == "action":
            _ACTION_KEYS[_k] = _c.name

_MODIFIERS = {"ctrl": (pygame.KMOD_CTRL, (pygame.K_LCTRL, pygame.K_RCTRL)),
              "shift": (pygame.KMOD_SHIFT, (pygame.K_LSHIFT, pygame.K_RSHIFT)),
              "alt": (pygame.KMOD_ALT, (pygame.K_LALT, pygame.K_RALT))}


def control_rows(quit_combo: str = "ctrl+shift+q") -> list[tuple[str, str]]:
    """(keys, what) rows for the help: `CONTROLS`, `MEMORY_CONTROLS` and the configured quit combo."""
    combo = "+".join(p.strip().capitalize() if len(p.strip()) > 1 else p.strip().upper()
                     for p in quit_combo.split("+"))
    rows = [(c.label, c.what) for c in CONTROLS + MEMORY_CONTROLS]
    return rows + [(combo, "quit (also in booth mode)")]


def controls_text(quit_combo: str = "ctrl+shift+q", booth: bool = False) -> str:
    """The control list as printed to stdout at start (same rows as the F1 overlay)."""
    rows = [f"  {keys:<14}{what}" for keys, what in control_rows(quit_combo)]
    head = "worldplay controls" + (" (booth mode: Esc does not quit)" if booth else "") + ":"
    return "\n".join([head, *rows])


def parse_combo(combo: str) -> tuple[tuple[str, ...], int]:
    """'ctrl+shift+q' -> (('ctrl', 'shift'), K_q). Bad names raise WorldplayError."""
    parts = [p.strip().lower() for p in combo.split("+") if p.strip()]
    if not parts or any(p not in _MODIFIERS for p in parts[:-1]):
        raise WorldplayError(f"quit combo {combo!r} is not of the form 'ctrl+shift+q'; "
                             f"use modifiers from {sorted(_MODIFIERS)} and one key")
    try:
        key = pygame.key.key_code(parts[-1])
    except ValueError as e:
        raise WorldplayError(f"quit combo {combo!r}: unknown key {parts[-1]!r}; use a key name like 'q'") from e
    return tuple(parts[:-1]), key


@dataclass
class TickInput:
    """Everything the player did during one tick."""
    frame: InputFrame = field(default_factory=InputFrame)
    actions: list[str] = field(default_factory=list)   # in the order pressed
    activity: bool = False    # any key, click or mouse motion: the booth idle timer resets


class InputMapper:
    """Keeps held keys and the mouse-grab flag between ticks; `feed` turns one tick of events
    into a `TickInput`. Mouse motion counts only while the mouse is grabbed."""

    def __init__(self, quit_combo: str = "ctrl+shift+q", grabbed: bool = True):
        self.held: set[int] = set()
        self.grabbed = grabbed
        self.quit_mods, self.quit_key = parse_combo(quit_combo)

    def release_all(self) -> None:
        self.held.clear()

    def _mod_down(self, name: str, mod: int) -> bool:
        flag, keys = _MODIFIERS[name]
        return bool(mod & flag) or any(k in self.held for k in keys)

    def feed(self, events) -> TickInput:
        out = TickInput()
        dx = dy = 0.0
        for ev in events:
            if ev.type == pygame.QUIT:
                out.actions.append("quit")
            elif ev.type == pygame.KEYDOWN:
                out.activity = True
                mod = ev.dict.get("mod", 0)     # events posted by scripts may leave it out
                if ev.key == self.quit_key and all(self._mod_down(m, mod) for m in self.quit_mods):
                    out.actions.append("quit")
                    continue
                self.held.add(ev.key)
                if ev.key in _ACTION_KEYS:
                    out.actions.append(_ACTION_KEYS[ev.key])
            elif ev.type == pygame.KEYUP:
                self.held.discard(ev.key)
            elif ev.type == pygame.MOUSEMOTION:
                rel = ev.dict.get("rel", (0, 0))
                if self.grabbed and (rel[0] or rel[1]):
                    dx, dy = dx + rel[0], dy + rel[1]
                    out.activity = True
            elif ev.type == pygame.MOUSEBUTTONDOWN:
                out.activity = True
                if not self.grabbed:
                    out.actions.append("grab")
            elif ev.type == pygame.WINDOWFOCUSLOST:
                self.release_all()   # a key released in another window never sends KEYUP here
        out.frame = self._frame(dx, dy)
        if self.held:
            out.activity = True
        return out

    def _frame(self, dx: float, dy: float) -> InputFrame:
        axes: dict[str, float] = {}
        held: dict[str, bool] = {}
        for key in self.held:
            if key in _AXIS_KEYS:
                name, sign = _AXIS_KEYS[key]
                axes[name] = axes.get(name, 0.0) + sign
            elif key in _HOLD_KEYS:
                held[_HOLD_KEYS[key]] = True
        return InputFrame(mouse_dx=dx, mouse_dy=dy, **axes, **held)
