"""The `FrameSource` protocol: anything the client, recorder, eval and bench can pull frames from.

The world renderer is the first source (ground truth); the explicit-warp baseline, the
memory-only view and the model streamer plug in the same way. Sources produce `chunk` frames
per call because the model generates chunks; the renderer uses chunk = 1.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from worldplay.world.frame import Frame


@runtime_checkable
class FrameSource(Protocol):
    name: str          # shown in the HUD, e.g. "world", "explicit", "model:tiny"
    chunk: int         # frames returned per `frames` call

    def reset(self, seed: int | None = None, prompt: str | None = None) -> None:
        """Start over (new scene when seed/prompt given); forget memory and history."""

    def frames(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """Render/generate one chunk. c2w: (chunk, 4, 4) camera-to-world; times: (chunk,) seconds."""

    def hud(self) -> dict[str, str]:
        """Short key/value lines for the HUD (source frame time, scene, memory stats...)."""
