"""Heads-up display: stats panel, REC / PAUSED indicators, the F1 help overlay, and toasts.

Drawn with `pygame.font.Font(None, size)` (pygame's bundled default font) so it works with
the dummy video driver and needs no system fonts. Sizes scale with the window so text stays
readable at --scale 2. The HUD never decides what to show; the app hands it lines.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

FONT_PX = 18               # stats text height at scale 1: readable over busy frames at 640x360
TITLE_PX = 40              # PAUSED banner
HELP_PX = 17               # help rows; 19 rows must fit in 360 px
PAD = 6                    # panel padding, px at scale 1
PANEL_RGBA = (0, 0, 0, 150)        # dark translucent: text readable, scene still visible
HELP_RGBA = (0, 0, 0, 200)         # darker for the long help list
TEXT_RGB = (235, 235, 235)
KEY_RGB = (255, 210, 90)           # key names stand out from their descriptions
REC_RGB = (230, 40, 40)
TOAST_SECONDS = 2.5        # how long "saved screenshot ..." stays up


class Hud:
    def __init__(self, scale: int = 1):
        if not pygame.font.get_init():
            pygame.font.init()
        self.s = scale
        self.font = pygame.font.Font(None, FONT_PX * scale)
        self.help_font = pygame.font.Font(None, HELP_PX * scale)
        self.title_font = pygame.font.Font(None, TITLE_PX * scale)
        self._toast: tuple[str, float] | None = None

    def toast(self, text: str) -> None:
        """Show a short message at the bottom for a few seconds (e.g. where a file went)."""
        self._toast = (text, time.monotonic() + TOAST_SECONDS)

    def _panel(self, surf: pygame.Surface, rect: pygame.Rect, rgba=PANEL_RGBA) -> None:
        panel = pygame.Surface(rect.size, pygame.SRCALPHA)
        panel.fill(rgba)
        surf.blit(panel, rect.topleft)

    def draw_stats(self, surf: pygame.Surface, lines: list[str]) -> None:
        """Top-left translucent panel with one text line per entry."""
        if not lines:
            return
        pad = PAD * self.s
        rendered = [self.font.render(t, True, TEXT_RGB) for t in lines]
        w = max(r.get_width() for r in rendered) + 2 * pad
        h = sum(r.get_height() for r in rendered) + 2 * pad
        self._panel(surf, pygame.Rect(0, 0, w, h))
        y = pad
        for r in rendered:
            surf.blit(r, (pad, y))
            y += r.get_height()

    def draw_rec(self, surf: pygame.Surface, seconds: float) -> None:
        """Red dot + 'REC 12.3s' in the top-right corner."""
        pad = PAD * self.s
        text = self.font.render(f"REC {seconds:5.1f}s", True, REC_RGB)
        radius = text.get_height() // 3
        w = text.get_width() + 2 * radius + 3 * pad
        rect = pygame.Rect(surf.get_width() - w, 0, w, text.get_height() + 2 * pad)
        self._panel(surf, rect)
        pygame.draw.circle(surf, REC_RGB, (rect.x + pad + radius, rect.centery), radius)
        surf.blit(text, (rect.x + 2 * pad + 2 * radius, rect.y + pad))

    def draw_banner(self, surf: pygame.Surface, title: str, sub: str = "", y_frac: float = 0.5) -> None:
        """Big horizontally centred text (PAUSED, the attract-mode invitation) with an optional
        second line; its centre sits at `y_frac` of the height."""
        pad = PAD * self.s
        parts = [self.title_font.render(title, True, TEXT_RGB)]
        if sub:
            parts.append(self.font.render(sub, True, TEXT_RGB))
        w = max(p.get_width() for p in parts) + 4 * pad
        h = sum(p.get_height() for p in parts) + 2 * pad
        rect = pygame.Rect(0, 0, w, h)
        rect.center = (surf.get_width() // 2, int(surf.get_height() * y_frac))
        self._panel(surf, rect)
        y = rect.y + pad
        for p in parts:
            surf.blit(p, (rect.centerx - p.get_width() // 2, y))
            y += p.get_height()

    def draw_help(self, surf: pygame.Surface, rows: list[tuple[str, str]]) -> None:
        """Centred two-column overlay: keys (highlighted) and what they do."""
        pad = PAD * self.s
        keys = [self.help_font.render(k, True, KEY_RGB) for k, _ in rows]
        whats = [self.help_font.render(w, True, TEXT_RGB) for _, w in rows]
        col = max(k.get_width() for k in keys) + 2 * pad
        line = self.help_font.get_linesize()
        w = col + max(t.get_width() for t in whats) + 3 * pad
        h = line * len(rows) + 2 * pad
        rect = pygame.Rect(0, 0, w, h)
        rect.center = (surf.get_width() // 2, surf.get_height() // 2)
        self._panel(surf, rect, HELP_RGBA)
        for i, (k, t) in enumerate(zip(keys, whats)):
            y = rect.y + pad + i * line
            surf.blit(k, (rect.x + pad, y))
            surf.blit(t, (rect.x + pad + col, y))

    def draw_tag(self, surf: pygame.Surface, text: str, x: int) -> None:
        """A small label in a panel at the bottom edge, starting at column x (side-by-side halves)."""
        pad = PAD * self.s
        r = self.font.render(text, True, TEXT_RGB)
        rect = pygame.Rect(x, surf.get_height() - r.get_height() - 2 * pad, r.get_width() + 2 * pad,
                           r.get_height() + 2 * pad)
        self._panel(surf, rect)
        surf.blit(r, (rect.x + pad, rect.y + pad))

    def draw_toast(self, surf: pygame.Surface) -> None:
        if self._toast is None:
            return
        text, until = self._toast
        if time.monotonic() > until:
            self._toast = None
            return
        pad = PAD * self.s
        r = self.font.render(text, True, TEXT_RGB)
        rect = pygame.Rect(0, 0, r.get_width() + 2 * pad, r.get_height() + 2 * pad)
        rect.midbottom = (surf.get_width() // 2, surf.get_height())
        self._panel(surf, rect)
        surf.blit(r, (rect.x + pad, rect.y + pad))


def memory_line(stats: dict) -> str:
    """One HUD line from `MosaicMemory.stats()`: fill level, size and how much was evicted."""
    used = stats["entries"] / max(stats["capacity"], 1)
    return (f"memory {stats['entries']}/{stats['capacity']} ({100 * used:.0f}%)  "
            f"{stats.get('keyframes', 0)} keyframes  {stats['mb']:.0f} MB  evicted {stats['evicted']}")
