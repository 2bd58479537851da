"""Frame sources by name: `make_source("world", seed, prompt, device)`.

"world" ray-casts the procedural MosaicWorld scene: exact ground truth, and a playable source
before any model exists. "model" generates with the default model of checkpoints.toml (the
seeded random tiny model until trained weights ship), one chunk ahead of the display. Other
sources ("explicit", "memory") register themselves in `SOURCES` with the same factory
signature; heavy modules are imported only when one is built.
"""

from __future__ import annotations

import time
from typing import Callable

from torch import Tensor

from worldplay.client.source import FrameSource, check_chunk
from worldplay.config import ImageConfig
from worldplay.errors import WorldplayError
from worldplay.world.frame import Frame

MS_SMOOTHING = 0.2   # weight of the newest frame in the HUD's source-ms average (steady, still responsive)


def resolve_device(device: str) -> str:
    """'auto' -> cuda when available else cpu; a CUDA device without CUDA is a clear error."""
    import torch  # noqa: PLC0415

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorldplayError(f"--device {device} asked for, but this torch build sees no CUDA GPU; use --device cpu")
    try:
        torch.device(device)
    except RuntimeError as e:
        raise WorldplayError(f"--device {device!r} is not a torch device; use cpu, cuda or auto") from e
    return device


class WorldSource:
    """The MosaicWorld renderer as a `FrameSource` (chunk = 1: it renders any pose directly)."""

    name = "world"
    chunk = 1

    def __init__(self, seed: int = 0, prompt: str | None = None, device: str = "cpu",
                 image: ImageConfig = ImageConfig()):
        self.device = resolve_device(device)
        self.image = image
        self.seed, self.prompt = int(seed), prompt
        self.ms_per_frame = 0.0
        self._build()

    def _build(self) -> None:
        from worldplay.world.render import Renderer  # noqa: PLC0415 (torch ray caster; import on use)
        from worldplay.world.scene import make_scene  # noqa: PLC0415

        self.scene = make_scene(self.seed, self.prompt)   # unknown words raise WorldplayError here
        self.renderer = Renderer(self.scene, image=self.image, device=self.device)

    def reset(self, seed: int | None = None, prompt: str | None = None) -> None:
        """New scene when seed or prompt is given; the renderer keeps no history otherwise."""
        if seed is None and prompt is None:
            return
        self.seed = self.seed if seed is None else int(seed)
        self.prompt = prompt
        self._build()

    def frames(self, c2w: Tensor, times: Tensor) -> list[Frame]:
        """c2w (chunk, 4, 4), times (chunk,) seconds -> one rendered Frame per pose."""
        check_chunk("WorldSource", c2w, times)
        out = []
        for pose, t in zip(c2w, times):
            start = time.perf_counter()
            out.append(self.renderer.render(pose, float(t)))
            ms = (time.perf_counter() - start) * 1e3
            self.ms_per_frame = ms if not self.ms_per_frame else (
                (1 - MS_SMOOTHING) * self.ms_per_frame + MS_SMOOTHING * ms)
        return out

    def hud(self) -> dict[str, str]:
        return {"source": self.name, "scene": self.scene.prompt, "seed": str(self.seed),
                "source ms": f"{self.ms_per_frame:.0f}"}


def _memory_source(seed: int, prompt: str | None, device: str) -> FrameSource:
    from worldplay.client.memory_source import MemorySource  # noqa: PLC0415 (imports this module)

    return MemorySource(seed, prompt, device)


def _explicit_source(seed: int, prompt: str | None, device: str) -> FrameSource:
    from worldplay.eval.explicit import ExplicitSource  # noqa: PLC0415 (the paper's baseline)

    return ExplicitSource(seed, prompt, device)


def model_source(model: str | None, seed: int, prompt: str | None, device: str) -> FrameSource:
    """The model streamer as a source (`None`: checkpoints.toml's default model). It generates the
    next chunk in a worker while the client shows this one (the client decides when to ask)."""
    from worldplay.checkpoints import load_registry  # noqa: PLC0415 (torch and the model: import on use)
    from worldplay.stream.model_source import ModelSource  # noqa: PLC0415

    name = model if model is not None else load_registry().default
    return ModelSource(name, seed, prompt, resolve_device(device), lookahead=True)


# name -> factory(seed, prompt, device) -> FrameSource
SOURCES: dict[str, Callable[[int, str | None, str], FrameSource]] = {
    "world": lambda seed, prompt, device: WorldSource(seed, prompt, device),
    "memory": _memory_source,
    "explicit": _explicit_source,
    "model": lambda seed, prompt, device: model_source(None, seed, prompt, device),
}


def make_source(name: str, seed: int = 0, prompt: str | None = None, device: str = "cpu") -> FrameSource:
    """Build the named frame source on `device` ('cpu', 'cuda' or 'auto')."""
    if name not in SOURCES:
        raise WorldplayError(f"unknown source {name!r}; use one of: {', '.join(SOURCES)}")
    return SOURCES[name](seed, prompt, device)
