"""Source specs: the one grammar every command's `--source` takes.

    spec     = KIND [":" TARGET] ["@" MODE] {"+" KEY "=" VALUE | "+" SHORTHAND}
    list     = spec {"," spec}                     (commands that take several, e.g. eval rows)

    world                      the renderer (ground truth)
    model                      checkpoints.toml's default model, full memory
    model:tiny-random@off      a registry entry, memory off
    model:runs/a/step-1000.safetensors@rope       a checkpoint file, memory tokens only
    model@full+steps=2         a setting (KEY=VALUE) the kind accepts
    model+fast                 a shorthand the kind names: a bundle of settings (typed ones win)

This module is the syntax only: it splits text into a `SourceSpec` and says in one line what
is malformed. What each KIND accepts (a target? which modes, which settings?) and what it
builds is the registry's (registry.py), which also owns the list of valid specs shown in
errors. The parts are peeled from the right (settings, then mode, then target) so a TARGET path
may itself hold ':' (a drive letter) or '@' in a folder name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from worldplay.errors import WorldplayError

KIND_RE = re.compile(r"[a-z][a-z0-9_-]*")
SETTING_RE = re.compile(r"\+([a-z][a-z0-9_]*)(=[^+@,]*)?$")   # one trailing +KEY=VALUE or +SHORTHAND
MODE_RE = re.compile(r"@([A-Za-z0-9_-]*)$")                      # a trailing @MODE: a word, never a path
LIST_SEP = ","
# For --help, which must not import the registry (torch, the model); the registry's own list
# (registry.valid_specs, shown with every bad spec) is the authority and a test holds them together.
SPEC_HELP = ("world (ground truth), explicit (reprojection baseline), memory (colour memory only), "
             "vae[:NAME|:PATH] (ground truth through a VAE), floor (32-px cell means), "
             "model[:NAME|:PATH][@full|rope|latent|off][+steps=N][+window=W][+sink=S][+dtype=T][+fast] (NAME: a "
             "checkpoints.toml entry, default its default; PATH: a checkpoint file; @: the memory mode; "
             "+fast: the CPU real-time setting)")


class SpecError(WorldplayError):
    """A spec that does not parse; the registry adds the list of valid specs to the message."""


@dataclass(frozen=True)
class SourceSpec:
    text: str                       # as typed (stripped): HUD lines and eval rows show exactly this
    kind: str                       # "world", "model", ...
    target: str | None = None       # after ':': a checkpoints.toml name or a checkpoint path
    mode: str | None = None         # after '@': e.g. the model's memory mode
    options: dict = field(default_factory=dict)   # "+KEY=VALUE" settings, KEY -> VALUE (str until checked);
                                                  # a "+SHORTHAND" is KEY -> None until the registry expands it

    def __str__(self) -> str:
        return self.text


def parse_spec(text: str) -> SourceSpec:
    """'model:tiny-random@off' -> SourceSpec(kind='model', target='tiny-random', mode='off')."""
    s = text.strip()
    m = KIND_RE.match(s)
    if m is None:
        raise SpecError(f"source {text!r} does not start with a source name")
    kind, rest = m.group(0), s[m.end():]
    options: dict[str, str] = {}
    while (o := SETTING_RE.search(rest)) is not None:
        key, value = o.group(1), (o.group(2)[1:] if o.group(2) is not None else None)
        if key in options:
            raise SpecError(f"source {s!r} sets {key!r} twice")
        if value == "":
            raise SpecError(f"source {s!r}: setting {key!r} has no value (write +{key}=VALUE)")
        options[key] = value
        rest = rest[:o.start()]
    mode = None
    if (o := MODE_RE.search(rest)) is not None:
        mode, rest = o.group(1), rest[:o.start()]
        if not mode:
            raise SpecError(f"source {s!r} has an empty mode after '@'")
    target = None
    if rest.startswith(":"):
        target = rest[1:]
        if not target:
            raise SpecError(f"source {s!r} has nothing after ':' (write {kind}:NAME or {kind}:PATH)")
    elif rest:
        raise SpecError(f"source {s!r}: cannot read {rest!r} after {kind!r}")
    # settings were peeled last-first; keep them in the order typed
    return SourceSpec(s, kind, target, mode, dict(reversed(options.items())))


def split_specs(text: str) -> list[str]:
    """'explicit, floor,model@off' -> ['explicit', 'floor', 'model@off'] (empty items dropped)."""
    return [t.strip() for t in text.split(LIST_SEP) if t.strip()]
