"""MosaicMemory: 3D-lifted patch memory with occlusion-aware retrieval, warping and editing."""

from worldplay.memory.config import MemoryConfig
from worldplay.memory.edit import Region, region_at
from worldplay.memory.memory import MosaicMemory
from worldplay.memory.retrieve import MemoryBatch
from worldplay.memory.rgb import render_canvas, rgb_features
from worldplay.memory.store import Patches

__all__ = ["MemoryBatch", "MemoryConfig", "MosaicMemory", "Patches", "Region", "region_at",
           "render_canvas", "rgb_features"]
