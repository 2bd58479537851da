"""Scene words: the small vocabulary a prompt may use, and turning (seed, prompt) into words.

A prompt is a few words such as "desert dusk pillars busy"; any group left out is picked from
the seed. The resolved words, in canonical order, are the scene's `prompt` string: it is shown
in the HUD and is what the model is conditioned on, and `make_scene(seed, scene.prompt)`
rebuilds the same scene.
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass

from worldplay.errors import WorldplayError

# The words come first and their looks follow: world/palettes.py has one Theme per theme word and
# one Sky per time word (it checks so on import), so the model's word embedding needs no world.
VOCAB: dict[str, tuple[str, ...]] = {
    "theme": ("desert", "forest", "city", "snow", "ruins", "garden"),   # palette and ground/walls
    "time": ("dawn", "noon", "dusk", "night"),                         # sky, sun and light colour
    "features": ("pillars", "boxes", "spheres", "walls", "arches"),  # which objects appear
    "motion": ("calm", "busy"),                                     # how many movers, how fast
}
SINGLE_GROUPS = ("theme", "time", "motion")   # exactly one word each in a resolved prompt
DEFAULT_FEATURES = (2, 3)                     # a seed-picked scene shows this many feature kinds

_GROUP_OF = {w: g for g, words in VOCAB.items() for w in words}


@dataclass(frozen=True)
class SceneWords:
    theme: str
    time: str
    features: tuple[str, ...]     # in VOCAB order, no duplicates, at least one
    motion: str

    @property
    def text(self) -> str:
        return " ".join([self.theme, self.time, *self.features, self.motion])


def allowed_words() -> str:
    return "; ".join(f"{g}: {', '.join(ws)}" for g, ws in VOCAB.items())


def split_words(prompt: str) -> list[str]:
    return [w for w in re.split(r"[\s,;]+", prompt.strip().lower()) if w]


def _unknown(word: str) -> WorldplayError:
    close = difflib.get_close_matches(word, list(_GROUP_OF), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return WorldplayError(f"unknown scene word '{word}'{hint}; allowed: {allowed_words()}")


def resolve_words(seed: int, prompt: str | None = None) -> SceneWords:
    """Validate the prompt's words and fill missing groups from the seed."""
    given: dict[str, list[str]] = {g: [] for g in VOCAB}
    for word in split_words(prompt or ""):
        if word not in _GROUP_OF:
            raise _unknown(word)
        group = given[_GROUP_OF[word]]
        if word not in group:
            group.append(word)
    for g in SINGLE_GROUPS:
        if len(given[g]) > 1:
            raise WorldplayError(f"scene prompt names {len(given[g])} {g} words "
                                 f"({', '.join(given[g])}); pick one of: {', '.join(VOCAB[g])}")
    rng = random.Random(f"worldplay-words:{int(seed)}")    # str seeds hash stably across runs
    picked = {g: given[g][0] if given[g] else rng.choice(VOCAB[g]) for g in SINGLE_GROUPS}
    feats = given["features"]
    if not feats:
        feats = rng.sample(VOCAB["features"], rng.randint(*DEFAULT_FEATURES))
    ordered = tuple(f for f in VOCAB["features"] if f in feats)
    return SceneWords(picked["theme"], picked["time"], ordered, picked["motion"])
