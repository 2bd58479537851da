"""The "world" source: the MosaicWorld renderer, exact ground truth at any pose.

It is a playable source before any model exists, the ground truth the eval scores against,
and what the other sources (memory, explicit, vae, floor, model) render their context from.
"""

from __future__ import annotations

import time

from torch import Tensor

from worldplay.config import ImageConfig
from worldplay.frame import Frame
from worldplay.sources.protocol import check_chunk
from worldplay.world.render import Renderer
from worldplay.world.scene import Scene, make_scene

MS_SMOOTHING = 0.2   # weight of the newest frame in the HUD's source-ms average (steady, still responsive)


class WorldSource:
    """The MosaicWorld renderer as a FrameSource (chunk = 1: it renders any pose directly).
    Capabilities: HasScene."""

    name = "world"
    chunk = 1

    def __init__(self, seed: int = 0, prompt: str | None = None, device: str = "cpu",
                 image: ImageConfig = ImageConfig()):
        self.device = device
        self.image = image
        self.seed, self.prompt = int(seed), prompt
        self.ms_per_frame = 0.0
        self._build()

    def _build(self) -> None:
        self.scene: Scene = make_scene(self.seed, self.prompt)   # unknown words raise WorldplayError here
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


class OverWorld:
    """Base of the sources that show something made from the world's ground truth (memory, vae,
    floor): the scene, its renderer, seed and words are those of the WorldSource inside (HasScene)."""

    world: WorldSource

    @property
    def scene(self) -> Scene:
        return self.world.scene

    @property
    def renderer(self) -> Renderer:
        return self.world.renderer

    @property
    def seed(self) -> int:
        return self.world.seed

    @property
    def prompt(self) -> str | None:
        return self.world.prompt

    def reset(self, seed: int | None = None, prompt: str | None = None) -> None:
        """A new scene when seed or prompt is given."""
        self.world.reset(seed, prompt)
