"""The pygame display behind the app: a real window (optionally fullscreen) or none at all.

Headless runs use SDL's dummy video driver and never open (or need) a window; the app then
draws into its offscreen canvas only. A windowed run that finds no display fails with one line
saying what to use instead. The window follows the canvas size (the side-by-side view doubles
its width), and `present` copies the canvas to the screen.
"""

from __future__ import annotations

import os
from typing import Callable

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from worldplay.errors import WorldplayError  # noqa: E402

NO_DISPLAY = ("no display found (DISPLAY / WAYLAND_DISPLAY unset or unusable); play offscreen "
              "with `worldplay play --headless --seconds 10 --record out.mp4`, "
              "or record a scripted walk with `worldplay record`")


class Window:
    def __init__(self, headless: bool, fullscreen: bool, size: tuple[int, int], caption: str,
                 toast: Callable[[str], None]):
        self.fullscreen, self.size, self.toast = fullscreen, size, toast
        self.is_open = False
        self.screen: pygame.Surface | None = None    # the window's surface, if any
        try:
            if headless:
                if not pygame.display.get_init():
                    os.environ["SDL_VIDEODRIVER"] = "dummy"    # never needs (or opens) a window
                pygame.display.init()
                return
            pygame.display.init()
            self.is_open = True
            self.reopen(size)
            pygame.display.set_caption(caption)
        except pygame.error as e:
            raise WorldplayError(f"{NO_DISPLAY} [{e}]") from e

    def reopen(self, size: tuple[int, int] | None = None) -> None:
        """(Re)open at `size` (default: the current one) in the current fullscreen mode."""
        self.size = size or self.size
        if self.is_open:
            self.screen = self._open()

    def _open(self) -> pygame.Surface:
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
            self.toast("fullscreen is not available with this video driver")
        return pygame.display.set_mode(self.size)

    def toggle_fullscreen(self) -> None:
        self.fullscreen = not self.fullscreen
        self.reopen()

    def set_grab(self, on: bool) -> None:
        if self.is_open:
            pygame.event.set_grab(on)      # with a hidden cursor SDL sends relative motion
            pygame.mouse.set_visible(not on)

    def present(self, canvas: pygame.Surface) -> None:
        if not self.is_open:
            return
        if self.screen.get_size() == canvas.get_size():
            self.screen.blit(canvas, (0, 0))
        else:   # a driver that ignored the requested size: fill the window instead
            pygame.transform.scale(canvas, self.screen.get_size(), self.screen)
        pygame.display.flip()

    def close(self) -> None:
        if self.is_open:
            self.set_grab(False)
            pygame.display.quit()
            self.is_open = False
