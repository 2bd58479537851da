"""Everything the client does with the mosaic memory, behind a few hooks the app calls.

`MemoryUi` picks the memory (the source's own when it has one - HasMemory - else a colour
memory it fills from the shown frames), handles the memory actions (M minimap, E edit mode with
X / Y / V, F6 / F7 save and load), adds the memory lines to the HUD and draws the minimap and
crosshair. Edit mode freezes the memory (no new frames go in, here or in the source's own) so
edits stay as made while the player looks at them. Memory files are memory-only session files
(MosaicMemory.save: safetensors + JSON header, atomic) in the recording folder; a model source
saves its whole session instead (session_keys.py). A source's memory may be written by its
generation worker: every read and edit of it here holds the source's `memory_lock`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from worldplay.client.capture import latest_stamped, stamped_path
from worldplay.client.colour_feeder import ColourFeeder
from worldplay.client.edit_mode import EditConfig, EditMode
from worldplay.client.hud import memory_line
from worldplay.client.memory_view import Minimap, MinimapConfig
from worldplay.config import ClientConfig, ImageConfig
from worldplay.devices import torch_threads
from worldplay.errors import WorldplayError
from worldplay.frame import Frame
from worldplay.memory import MosaicMemory
from worldplay.memory.colour import MEMORY_THREADS, ColourMemoryConfig, memory_intrinsics
from worldplay.sources.capabilities import HasMemory
from worldplay.sources.protocol import FrameSource

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

SESSION_PREFIX = "memory"          # memory_YYYYmmdd-HHMMSS-mmm.safetensors
SESSION_SUFFIX = ".safetensors"
MEMORY_ACTIONS = frozenset({"memory_view", "edit", "erase", "copy", "paste", "memory_save", "memory_load"})
BOOTH_LOCKED = frozenset({"memory_save", "memory_load"})   # visitors must not fill the disk


@dataclass(frozen=True)
class MemoryUiConfig:
    colour: ColourMemoryConfig = field(default_factory=ColourMemoryConfig)  # the client's own memory
    minimap: MinimapConfig = field(default_factory=MinimapConfig)           # the M overlay
    edit: EditConfig = field(default_factory=EditConfig)                    # the E mode


class MemoryUi:
    def __init__(self, source: FrameSource, image: ImageConfig, client: ClientConfig, say: Callable[[str], None],
                 booth: bool = False, cfg: MemoryUiConfig = MemoryUiConfig()):
        self.source, self.image, self.say, self.booth = source, image, say, booth
        self.folder = client.recording_dir
        self.feeder = ColourFeeder(image.fov_x_deg, cfg.colour)
        self.minimap = Minimap(cfg.minimap, client.scale)
        self.edit = EditMode(cfg.edit)
        self.show_map = False
        self._K_for: tuple[int, torch.Tensor] | None = None     # (id of memory, its K)

    # --- which memory ---------------------------------------------------------------------
    @property
    def owned(self) -> bool:
        """True when the client fills the memory itself (the source keeps none)."""
        return not isinstance(self.source, HasMemory)

    @property
    def memory(self) -> MosaicMemory | None:
        return self.feeder.memory if self.owned else self.source.memory

    @property
    def K(self) -> torch.Tensor | None:
        mem = self.memory
        if mem is None:
            return None
        if self._K_for is None or self._K_for[0] != id(mem):
            self._K_for = (id(mem), memory_intrinsics(mem, self.image.fov_x_deg))
        return self._K_for[1]

    def _locked(self):
        """The source's memory lock (its generation thread writes the memory), else nothing."""
        return contextlib.nullcontext() if self.owned else self.source.memory_lock

    def _set_frozen(self, on: bool) -> None:
        self.feeder.frozen = on
        if not self.owned:
            self.source.memory_frozen = on

    # --- hooks the app calls ------------------------------------------------------------------
    def observe(self, frame: Frame) -> None:
        """A frame was shown: feed the client's own memory (every few frames)."""
        if not self.owned:
            return
        try:
            self.feeder.offer(frame)
        except WorldplayError as e:     # a frame size no colour memory fits: play on without one
            self.feeder.frozen = True
            self.say(f"memory off: {e}")

    def reset(self) -> None:
        """The session restarted: the client's own memory forgets (sources reset their own) and
        edit mode ends, or the fresh memory would stay frozen empty. The clipboard is kept."""
        self.feeder.reset()
        if self.edit.active:
            self.edit.active = False
            self._set_frozen(False)

    def do(self, action: str, frame: Frame | None) -> bool:
        """Handle a memory action; False if `action` is not one."""
        if action not in MEMORY_ACTIONS:
            return False
        if self.booth and action in BOOTH_LOCKED:
            return True
        if action == "memory_view":
            self.show_map = not self.show_map
        elif action == "edit":
            self.edit.active = not self.edit.active
            self._set_frozen(self.edit.active)
            self.say("edit mode: memory frozen; aim with the crosshair, X erase, Y copy, V paste"
                     if self.edit.active else "edit mode off: memory fills again")
        elif action in ("erase", "copy", "paste"):
            if not self.edit.active:
                self.say("press E for edit mode first (X erase, Y copy, V paste)")
            else:
                edit = {"erase": self.edit.erase, "copy": self.edit.copy, "paste": self.edit.paste}[action]
                with torch_threads(MEMORY_THREADS), self._locked():
                    self.say(edit(self.memory, frame, self.K))
        elif action == "memory_save":
            self.save()
        else:
            self.load()
        return True

    def save(self) -> Path | None:
        mem = self.memory
        if mem is None or len(mem) == 0:
            self.say("memory is empty: nothing to save")
            return None
        try:
            path = stamped_path(self.folder, SESSION_PREFIX, SESSION_SUFFIX)
            with self._locked():
                mem.save(path, {"source": self.source.name})
        except (WorldplayError, OSError) as e:
            self.say(f"cannot save memory: {e}")
            return None
        self.say(f"memory saved: {path} ({len(mem)} patches)")
        return path

    def load(self) -> Path | None:
        """Restore the newest saved memory in place; a bad file changes nothing."""
        path = latest_stamped(self.folder, SESSION_PREFIX, SESSION_SUFFIX)
        if path is None:
            self.say(f"no saved memory in {self.folder}; F6 saves one")
            return None
        mem = self.memory
        if mem is None:    # the client's own memory is made at the first frame
            self.say("no memory yet: load once the first frame is shown")
            return None
        try:
            with self._locked():
                mem.restore(path)
        except WorldplayError as e:
            self.say(f"cannot load memory: {e}")
            return None
        self.say(f"memory loaded: {path.name} ({len(mem)} patches)")
        return path

    def hud_lines(self) -> list[str]:
        mem = self.memory
        with self._locked():
            lines = ["memory: none yet" if mem is None else memory_line(mem.stats())]
        if self.edit.active:
            lines.append("edit mode (memory frozen)" + ("   clipboard: "
                         f"{len(self.edit.clipboard)} patches" if self.edit.clipboard is not None else ""))
        return lines

    def draw(self, surf: pygame.Surface, frame: Frame | None, cam_c2w: torch.Tensor) -> None:
        """Minimap (if on) and edit crosshair (if on), over the frame."""
        if not (self.show_map or self.edit.active):
            return
        mem, K = self.memory, self.K
        with torch_threads(MEMORY_THREADS), self._locked():
            aim = self.edit.aim(mem, frame, K) if self.edit.active else None
            if self.show_map:
                self.minimap.draw(surf, mem, cam_c2w, self.image.fov_x_deg,
                                  None if aim is None else (aim.point, self.edit.cfg.radius_m))
        if self.edit.active:
            self.edit.draw(surf, aim, K, mem.cfg.image_width if mem is not None else self.image.width)
