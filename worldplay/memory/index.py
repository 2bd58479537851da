"""Key -> slot lookup of the entry store, sized once for the store's capacity.

The store dedups every inserted patch against what it holds by key (voxel x view bin), a dict
lookup per key: O(batch), where a tensor search would scan all of memory. A plain dict grows
with the memory, ~125 bytes an entry (the table, the key's int object, the slot's int object):
~25 MB while a session's memory fills to 200k entries, enough to make a long session's RSS
creep for minutes. Here the dict holds `capacity` items from the start: placeholder keys
(negative, never a real key) give up their place to real keys and take it back when those are
freed, so the table never resizes upward; slot values are shared int objects made once; and a
placeholder's int object is freed as a real key's arrives, so Python reuses the block. RSS is
flat from the first insert.
"""

from __future__ import annotations

from collections.abc import Iterable

PLACEHOLDER_BASE = -(2 ** 62)   # placeholder i is PLACEHOLDER_BASE - i: negative (real keys are >= 0)
                                # and as large as a real key, so both use the same int block size


class SlotIndex:
    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._slot_ints = list(range(self.capacity))         # the one int object per slot
        self._reset()

    def _reset(self) -> None:
        self._map: dict[int, int] = dict.fromkeys((PLACEHOLDER_BASE - i for i in range(self.capacity)), -1)
        self._held = self.capacity      # placeholders in the map: indices 0 .. _held - 1
        self._real = 0                  # real keys in the map

    def __len__(self) -> int:
        return self._real

    def clear(self) -> None:
        self._reset()

    def get(self, key: int) -> int | None:
        slot = self._map.get(key)
        return None if slot is None or key < 0 else slot

    def set(self, key: int, slot: int) -> None:
        """Map a real key (>= 0) to a slot (new keys take a placeholder's place)."""
        if key not in self._map:
            if self._held:
                self._held -= 1
                del self._map[PLACEHOLDER_BASE - self._held]
            self._real += 1
        self._map[key] = self._slot_ints[slot]

    def update(self, pairs: Iterable[tuple[int, int]]) -> None:
        for key, slot in pairs:
            self.set(key, slot)

    def pop(self, key: int) -> None:
        """Forget a real key (absent keys are fine); its place goes back to a placeholder."""
        if key < 0 or self._map.pop(key, None) is None:
            return
        self._real -= 1
        if self._held < self.capacity:
            self._map[PLACEHOLDER_BASE - self._held] = -1
            self._held += 1
