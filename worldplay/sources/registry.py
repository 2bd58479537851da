"""The one registry of frame sources: a spec (spec.py) in, a built FrameSource out.

    source = make_source("model:tiny-random@off", seed=7, device="cpu")

`play`, `record`, `bench` and `eval` build every source here, so each takes the same specs and
a bad one fails the same way: one line naming what was wrong and listing what is valid. Each
kind says what its spec may carry (a ':TARGET', which '@MODE's, which '+KEY=VALUE' settings)
and how to build it. Tests and plug-ins add kinds with `register` (and drop them with
`unregister`); the built-in ones are world, explicit, memory, vae, floor and model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

from worldplay.checkpoints import load_registry
from worldplay.devices import resolve_device, serving_dtype
from worldplay.errors import WorldplayError
from worldplay.sources.explicit import ExplicitSource
from worldplay.sources.floor import FloorSource
from worldplay.sources.memory import MemorySource
from worldplay.sources.model import FAST, FAST_SETTINGS, ModelSource
from worldplay.sources.protocol import FrameSource
from worldplay.sources.spec import KIND_RE, SourceSpec, SpecError, parse_spec, split_specs
from worldplay.sources.vae import VaeSource
from worldplay.sources.weights import parse_dtype
from worldplay.sources.world import WorldSource
from worldplay.stream.streamer import MEMORY_MODES


@dataclass(frozen=True)
class SourceEnv:
    """What every source is built with besides its spec."""
    seed: int = 0                 # scene seed
    prompt: str | None = None     # scene words (None: picked from the seed)
    device: str = "cpu"           # a resolved torch device ("cpu", "cuda", "cuda:1")


@dataclass(frozen=True)
class Setting:
    """A '+KEY=VALUE' a kind accepts: how to read VALUE, and what to call it in the valid list."""
    parse: Callable[[str], object]
    metavar: str


Builder = Callable[[SourceSpec, SourceEnv], FrameSource]


@dataclass(frozen=True)
class SourceKind:
    name: str
    build: Builder
    about: str                                   # one line: what it shows
    target: str | None = None                    # what ':TARGET' may be, e.g. "NAME|PATH"; None: takes none
    modes: tuple[str, ...] = ()                  # accepted '@MODE's; () takes none
    settings: Mapping[str, Setting] = field(default_factory=dict)
    shorthands: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # "+NAME" -> its settings
    check_target: Callable[[str], None] | None = None   # raises WorldplayError for a bad TARGET

    def grammar(self) -> str:
        """e.g. 'model[:NAME|:PATH][@full|rope|latent|off][+steps=N]'."""
        s = self.name
        if self.target:
            s += "[" + "|".join(f":{t}" for t in self.target.split("|")) + "]"
        if self.modes:
            s += f"[@{'|'.join(self.modes)}]"
        s += "".join(f"[+{k}={v.metavar}]" for k, v in self.settings.items())
        return s + "".join(f"[+{k}]" for k in self.shorthands)


KINDS: dict[str, SourceKind] = {}


def register(kind: SourceKind) -> None:
    """Add a kind of source; its name must be new and a valid spec word (lower case)."""
    if not KIND_RE.fullmatch(kind.name):
        raise WorldplayError(f"source kind {kind.name!r}: use a lower-case word (letters, digits, - and _)")
    if kind.name in KINDS:
        raise WorldplayError(f"source kind {kind.name!r} is already registered; unregister it first")
    KINDS[kind.name] = kind


def unregister(name: str) -> None:
    KINDS.pop(name, None)


def valid_specs() -> str:
    """The one line every bad spec ends with: each kind's grammar, and the model names."""
    line = ", ".join(k.grammar() for k in KINDS.values())
    if any(k.target == MODEL_TARGET for k in KINDS.values()):
        try:
            reg = load_registry()
            line += f" (NAME from {reg.path.name}: {', '.join(reg.models)}; default {reg.default})"
        except WorldplayError:   # a broken registry has its own error when a model is built
            pass
    return line


def _check(spec: SourceSpec) -> SourceSpec:
    """The spec with its settings read, or SpecError saying what this kind does not take."""
    kind = KINDS.get(spec.kind)
    if kind is None:
        raise SpecError(f"unknown source {spec.text!r}")
    if spec.target is not None:
        if kind.target is None:
            raise SpecError(f"source {spec.text!r}: {kind.name} takes no ':{spec.target}'")
        if kind.check_target is not None:
            kind.check_target(spec.target)
    if spec.mode is not None and spec.mode not in kind.modes:
        raise SpecError(f"source {spec.text!r}: unknown mode {spec.mode!r} for {kind.name}")
    values = {}
    for key, raw in _expand(spec, kind).items():
        if key not in kind.settings:
            raise SpecError(f"source {spec.text!r}: {kind.name} has no setting {key!r}")
        try:   # text is read; a value already read (a checked spec checked again) stays
            values[key] = kind.settings[key].parse(raw) if isinstance(raw, str) else raw
        except (ValueError, WorldplayError) as e:
            raise SpecError(f"source {spec.text!r}: setting {key}={raw!r} ({e})") from None
    return replace(spec, options=values)


def _expand(spec: SourceSpec, kind: SourceKind) -> dict:
    """The spec's settings with each "+SHORTHAND" replaced by its bundle; settings typed in the
    spec win over a bundle's, whatever their order."""
    out: dict = {}
    for key, raw in spec.options.items():
        if raw is not None:
            continue
        if key not in kind.shorthands:
            hint = f" (write +{key}={kind.settings[key].metavar})" if key in kind.settings else ""
            raise SpecError(f"source {spec.text!r}: {kind.name} has no shorthand {key!r}{hint}")
        out.update(kind.shorthands[key])
    out.update({k: v for k, v in spec.options.items() if v is not None})
    return out


def source_spec(text: str | SourceSpec) -> SourceSpec:
    """Parse and check one spec; any problem is one WorldplayError line that lists the valid specs."""
    try:
        return _check(text if isinstance(text, SourceSpec) else parse_spec(text))
    except WorldplayError as e:
        raise WorldplayError(f"{e}; valid sources: {valid_specs()}") from None


def source_specs(text: str) -> list[SourceSpec]:
    """Every spec of a comma-separated list, all checked before any is built."""
    items = split_specs(text)
    if not items:
        raise WorldplayError(f"--source is empty; valid sources: {valid_specs()}")
    return [source_spec(t) for t in items]


def client_spec(spec: SourceSpec, device: str) -> tuple[SourceSpec, str | None]:
    """What the interactive commands (play, record) run: a model spec that sets nothing gets the
    kind's `+fast` shorthand on a CPU, so a first run is real time; eval and bench never do this
    (they measure exactly what the spec says). Returns the spec and a line saying what changed."""
    kind = KINDS.get(spec.kind)
    if (kind is None or FAST not in kind.shorthands or spec.options
            or resolve_device(device).type != "cpu"):
        return spec, None
    fast = source_spec(replace(spec, text=f"{spec.text}+{FAST}", options={FAST: None}))
    about = ", ".join(f"{k} {v}" for k, v in kind.shorthands[FAST].items())   # "steps 2, window 1, sink 1"
    return fast, (f"CPU: running {fast.text} ({about}) for real time; "
                  f"--source {spec.text}+steps=N sets the model yourself")


def make_source(spec: str | SourceSpec, seed: int = 0, prompt: str | None = None,
                device: str = "cpu") -> FrameSource:
    """Build the source a spec names, in scene `seed` / `prompt`, on `device` ('cpu', 'cuda', 'auto')."""
    spec = source_spec(spec)
    source = KINDS[spec.kind].build(spec, SourceEnv(int(seed), prompt, str(resolve_device(device))))
    source.name = spec.text   # the HUD and the eval rows show the spec as typed
    return source


# ---- the built-in kinds ---------------------------------------------------------------------------

MODEL_TARGET = "NAME|PATH"


def check_model(target: str) -> None:
    """A checkpoints.toml name or an existing checkpoint file / shard folder."""
    reg = load_registry()
    if target in reg.models or Path(target).exists():
        return
    if target.endswith(".safetensors") or "/" in target or "\\" in target:
        raise WorldplayError(f"checkpoint {target} not found; check the path")
    raise WorldplayError(f"unknown model {target!r}")


def positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise ValueError("must be at least 1")
    return n


def natural_int(text: str) -> int:
    n = int(text)
    if n < 0:
        raise ValueError("must be 0 or more")
    return n


def _model(spec: SourceSpec, env: SourceEnv) -> FrameSource:
    o = spec.options
    return ModelSource(spec.target, env.seed, env.prompt, env.device, memory=spec.mode or "full", lookahead=True,
                       steps=o.get("steps"), chunk=o.get("chunk"), window=o.get("window"), sink=o.get("sink"),
                       dtype=o.get("dtype", serving_dtype(env.device)))


for _kind in (
    SourceKind("world", lambda s, e: WorldSource(e.seed, e.prompt, e.device), "the renderer: ground truth"),
    SourceKind("explicit", lambda s, e: ExplicitSource(e.seed, e.prompt, e.device),
               "the reprojection baseline: ground-truth context, then only what it reprojects"),
    SourceKind("memory", lambda s, e: MemorySource(e.seed, e.prompt, e.device),
               "only what a colour mosaic memory reprojects (unseen places are black)"),
    SourceKind("vae", lambda s, e: VaeSource(s.target, e.seed, e.prompt, e.device),
               "ground truth through a model's VAE: the ceiling of any model on it",
               target=MODEL_TARGET, check_target=check_model),
    SourceKind("floor", lambda s, e: FloorSource(e.seed, e.prompt, e.device),
               "ground truth averaged over 32-px cells: what knowing only the layout shows"),
    SourceKind("model", _model, "the streamer on a checkpoint, with a memory mode",
               target=MODEL_TARGET, modes=MEMORY_MODES, check_target=check_model,
               settings={"steps": Setting(positive_int, "N"), "window": Setting(positive_int, "W"),
                         "sink": Setting(natural_int, "S"),
                         "chunk": Setting(positive_int, "F"), "dtype": Setting(parse_dtype, "T")},
               shorthands={FAST: FAST_SETTINGS}),
):
    register(_kind)
