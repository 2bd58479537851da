"""What a frame source can do beyond the required protocol, each as a typed protocol.

A caller asks `isinstance(source, HasMemory)` (runtime-checkable: the source has the members)
and then uses them; it never probes attributes one by one. A source declares a capability by
having its members; it need not inherit from anything.

    HasScene        shows a MosaicWorld scene: side-by-side ground truth, booth walks, R / N
    HasSpawn        says where a client's camera starts (a resumed session: its last pose)
    HasMemory       keeps its own mosaic memory: the client draws, edits and freezes that one
    HasSession      saves and resumes its whole state (the model streamer): F6 / F7, --session
    Prefetching     generates the next chunk while the client shows this one; reports its rate
    ObservesContext frames with index < context_frames are ground truth it observes
    Closable        holds a worker or files: close() when done
    Reports         numbers a long recording prints as it goes (memory entries, KV cache bytes)
"""

from __future__ import annotations

import os
from typing import ContextManager, Protocol, runtime_checkable

from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.memory import MosaicMemory
from worldplay.world.render import Renderer
from worldplay.world.scene import Scene


@runtime_checkable
class HasScene(Protocol):
    seed: int              # scene seed
    prompt: str | None     # scene words as asked (None: picked from the seed); scene.prompt resolves them
    scene: Scene           # what it shows
    renderer: Renderer     # its ground truth; the side-by-side view renders on the same device


@runtime_checkable
class HasSpawn(Protocol):
    def spawn_pose(self) -> Tensor:
        """c2w (4, 4) where a client's camera starts: a resumed session's last pose, else the scene's."""


@runtime_checkable
class HasMemory(Protocol):
    memory: MosaicMemory           # the client's minimap, edits and memory files use this one
    memory_lock: ContextManager    # held around every memory access (generation may run in a worker)
    memory_frozen: bool            # edit mode: nothing new is inserted, so edits stay as made


@runtime_checkable
class HasSession(Protocol):
    def save(self, path: str | os.PathLike) -> None:
        """Write the whole state (memory, KV cache, poses, RNG) to one file, atomically."""

    def load(self, path: str | os.PathLike) -> None:
        """Resume a saved state exactly; a bad file raises WorldplayError and changes nothing."""

    def resume_point(self) -> tuple[Tensor, float] | None:
        """c2w (4, 4) and time of the last frame made (None before the first): where play goes on."""

    def session_summary(self) -> str:
        """A few words on what a save holds, e.g. "48 frames, 5120 memory patches"."""


@runtime_checkable
class Prefetching(Protocol):
    gen_fps: float   # frames generated per second of generation: the HUD shows it (ms per pull means
                     # nothing for a source that works ahead)

    def prefetch(self, c2w: Tensor, times: Tensor) -> None:
        """Start making the next chunk (c2w (chunk, 4, 4), times (chunk,)); `frames` collects it."""

    def ready(self) -> bool:
        """True unless a prefetched chunk is still being made (`frames` would then wait)."""


@runtime_checkable
class Reports(Protocol):
    def report(self) -> dict[str, float]:
        """Sizes worth watching over a long walk, e.g. {"memory entries": 5120, "kv cache MB": 22.5}."""


@runtime_checkable
class ObservesContext(Protocol):
    context_frames: int   # frames with index < this (since reset) are ground truth, observed, not made


@runtime_checkable
class Closable(Protocol):
    def close(self) -> None:
        """Release workers and files; the source is not used again."""


def set_context(source: object, frames: int) -> None:
    """Have `source` observe `frames` ground-truth frames after each reset (--context N)."""
    if frames < 0:
        raise WorldplayError(f"--context {frames}: give a number of frames >= 0")
    if not isinstance(source, ObservesContext):
        raise WorldplayError(f"--context {frames}: this source shows no ground-truth context (it is all "
                             f"ground truth, or all its own); use it with --source model or explicit")
    source.context_frames = frames


def close_source(source: object) -> None:
    """Close a source if it holds anything (commands call this on the way out)."""
    if isinstance(source, Closable):
        source.close()
