"""Screenshots (PNG of what is on screen) and the record toggle (mp4 of the clean frames).

Recording samples the displayed frame at the recording rate in world time, so an mp4 plays
back at the speed the player walked even when the source renders slower than that rate
(frames repeat) — the same thing a screen recorder does. Pausing stops the clock.
The mp4 is always finalised on stop, also on Ctrl-C, so a long walk is never lost.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from worldplay.client.recorder import Mp4Recorder  # noqa: E402
from worldplay.errors import WorldplayError  # noqa: E402
from worldplay.fileio import atomic_path, check_writable  # noqa: E402

EPS = 1e-6     # float slack when comparing accumulated world time to frame boundaries


def stamped_path(folder: str | os.PathLike, prefix: str, suffix: str) -> Path:
    """folder/prefix_YYYYmmdd-HHMMSS-mmm.suffix, made unique; creates the folder."""
    d = Path(folder).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorldplayError(f"cannot create folder {d} ({e.strerror}); pick another folder") from e
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    p, n = d / f"{prefix}_{stamp}{suffix}", 1
    while p.exists():   # two presses inside one millisecond
        p, n = d / f"{prefix}_{stamp}_{n}{suffix}", n + 1
    return p


def latest_stamped(folder: str | os.PathLike, prefix: str, suffix: str) -> Path | None:
    """The newest `stamped_path` file of this kind in `folder` (by modification time, then name)."""
    d = Path(folder).expanduser()
    files = [p for p in d.glob(f"{prefix}_*{suffix}") if p.is_file()] if d.is_dir() else []
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name)) if files else None


def save_png(surface: pygame.Surface, path: str | os.PathLike) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        pygame.image.save(surface, str(tmp))
    return Path(path)


class Capture:
    """Owns the optional recorder. `tick(dt, rgb)` is called once per app tick while unpaused."""

    def __init__(self, screenshot_dir: str, recording_dir: str, fps: float):
        self.screenshot_dir = screenshot_dir
        self.recording_dir = recording_dir
        self.fps = fps
        self.path: Path | None = None       # set while recording
        self._rec = None                    # Mp4Recorder, opened at the first frame (its size)
        self._clock = 0.0                   # world seconds since recording started
        self.written = 0                    # frames written to the current file

    @property
    def recording(self) -> bool:
        return self.path is not None

    @property
    def seconds(self) -> float:
        return self.written / self.fps

    def screenshot(self, surface: pygame.Surface) -> Path:
        return save_png(surface, stamped_path(self.screenshot_dir, "worldplay", ".png"))

    def start(self, path: str | os.PathLike | None = None) -> Path:
        if self.recording:
            return self.path
        p = stamped_path(self.recording_dir, "worldplay", ".mp4") if path is None else Path(path)
        if p.suffix.lower() != ".mp4":
            raise WorldplayError(f"recording {p} must end in .mp4; name it e.g. {p.with_suffix('.mp4')}")
        self.path = check_writable(p)
        self._clock, self.written = 0.0, 0
        return self.path

    def tick(self, dt: float, rgb: np.ndarray | None) -> None:
        """Advance the recording clock by dt world seconds and write the frames now due."""
        if not self.recording or rgb is None:
            return
        if self._rec is None:
            h, w = rgb.shape[:2]
            self._rec = Mp4Recorder(self.path, fps=self.fps, width=w, height=h)
        else:
            self._clock += dt
        due = int(self._clock * self.fps + EPS) + 1   # frame k covers [k/fps, (k+1)/fps)
        while self.written < due:
            self._rec.write(rgb)
            self.written += 1

    def stop(self) -> Path | None:
        """Finalise the mp4; returns its path (None if nothing was being recorded)."""
        rec = self._rec
        self.path, self._rec = None, None
        return rec.close() if rec is not None else None

    def abort(self) -> None:
        """Forget a recording whose recorder failed (it already removed its temp file)."""
        self.path, self._rec = None, None
