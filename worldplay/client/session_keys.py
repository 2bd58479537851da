"""F6 / F7 for a source that keeps a whole streaming session (the model): save and resume all of it.

The model streamer's state is more than its memory: KV cache, poses, RNG and the checkpoint's
hash go with it (Streamer.save, one safetensors file written atomically). F6 writes the session
to the sessions folder under a timestamped name; F7 resumes the newest one there. A file that
does not load (damaged, another model, not a session) is reported on screen and nothing changes.
Sources without a session (HasSession: the world renderer, the memory-only view) keep the
memory-only F6 / F7 of memory_ui.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from worldplay.client.capture import latest_stamped, stamped_path
from worldplay.controls import CameraState
from worldplay.errors import WorldplayError
from worldplay.sources.capabilities import HasSession
from worldplay.sources.protocol import FrameSource

SESSION_PREFIX = "session"         # session_YYYYmmdd-HHMMSS-mmm.safetensors
SESSION_SUFFIX = ".safetensors"
SESSION_ACTIONS = frozenset({"memory_save", "memory_load"})


def latest_session(folder: str | os.PathLike) -> Path | None:
    """The newest session file in `folder` (by modification time, then name), or None."""
    return latest_stamped(folder, SESSION_PREFIX, SESSION_SUFFIX)


def resume_point(source: FrameSource) -> tuple[CameraState | None, float]:
    """Where a resumed session goes on: the camera at its last generated pose and that frame's
    time (None, 0.0 for a source with nothing generated or no session at all)."""
    last = source.resume_point() if isinstance(source, HasSession) else None
    if last is None:
        return None, 0.0
    return CameraState.from_c2w(last[0].cpu().float()), float(last[1])


class SessionKeys:
    """Handles F6 / F7 for session sources. `settle` finishes any chunk in flight before the
    state is read or replaced; `resumed` restarts the app's stream after a successful load."""

    def __init__(self, source: FrameSource, folder: str, say: Callable[[str], None], settle: Callable[[], None],
                 resumed: Callable[[], None], booth: bool = False):
        self.source, self.folder, self.say = source, folder, say
        self.settle, self.resumed, self.booth = settle, resumed, booth

    def do(self, action: str) -> bool:
        """Handle F6 / F7 for a session source; False leaves the action to the memory UI."""
        if action not in SESSION_ACTIONS or not isinstance(self.source, HasSession):
            return False
        if not self.booth:      # visitors must not fill the disk or jump sessions
            self.save() if action == "memory_save" else self.load()
        return True

    def save(self) -> Path | None:
        self.settle()
        if self.source.resume_point() is None:
            self.say("nothing generated yet: a session saves once the first frame is shown")
            return None
        try:
            path = stamped_path(self.folder, SESSION_PREFIX, SESSION_SUFFIX)
            self.source.save(path)
        except (WorldplayError, OSError) as e:
            self.say(f"cannot save session: {e}")
            return None
        self.say(f"session saved: {path} ({self.source.session_summary()})")
        return path

    def load(self) -> Path | None:
        """Resume the newest session in the folder; a bad file changes nothing."""
        path = latest_session(self.folder)
        if path is None:
            self.say(f"no saved session in {self.folder}; F6 saves one")
            return None
        self.settle()
        try:
            self.source.load(path)
        except WorldplayError as e:
            self.say(f"cannot load session: {e}")
            return None
        self.resumed()
        self.say(f"session loaded: {path.name} ({self.source.session_summary()})")
        return path
