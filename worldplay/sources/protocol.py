"""The `FrameSource` protocol: anything the client, recorder, eval and bench can pull frames from.

The required part is small on purpose (a name, a chunk length, reset, frames, hud): a source
with only that plays, records and evaluates. What some sources can do beyond it (a memory the
client draws and edits, a session it saves, look-ahead generation, ground-truth context, a
scene) is declared by the optional capability protocols in capabilities.py, which callers test
with `isinstance`; nobody probes a source's attributes. Sources produce `chunk` frames per call
because the model generates chunks; the renderer uses chunk = 1. `check_chunk` (what goes in)
and `checked` (what comes out) hold a source to that contract.
"""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.frame import Frame


@runtime_checkable
class FrameSource(Protocol):
    name: str          # shown in the HUD and eval rows: the source spec as typed, e.g. "model@off"
    chunk: int         # frames returned per `frames` call

    def reset(self, seed: int | None = None, prompt: str | None = None) -> None:
        """Start over (new scene when seed/prompt given); forget memory and history."""

    def frames(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """Render/generate one chunk. c2w: (chunk, 4, 4) camera-to-world; times: (chunk,) seconds."""

    def hud(self) -> dict[str, str]:
        """Short key/value lines for the HUD (source frame time, scene, memory stats...)."""


def check_chunk(who: str, c2w: Tensor, times: Tensor) -> None:
    """The `frames` contract: c2w (F, 4, 4) and times (F,); a mismatch is a caller's bug."""
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or times.shape != c2w.shape[:1]:
        raise ValueError(f"{who}.frames wants c2w (F, 4, 4) and times (F,); "
                         f"got {tuple(c2w.shape)} and {tuple(times.shape)}")


def checked(frames: Iterable[Frame], source: FrameSource, n: int) -> list[Frame]:
    """The frames a source returned, as a list; none at all is a broken source, said in one line."""
    frames = list(frames)
    if not frames:
        raise WorldplayError(f"frame source {source.name!r} returned no frames for "
                             f"{n} poses; it is broken, try --source world")
    return frames
