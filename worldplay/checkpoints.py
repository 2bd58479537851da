"""Model registry (checkpoints.toml) and safetensors checkpoints: find, verify, load, save.

Weights are only ever read with safetensors: a pickle file can run code when loaded, so it is
refused with a message on how to convert it. Every problem is a one-line WorldplayError that
names the file and the fix. Nothing here touches the network; `worldplay download`
(commands/download.py) is the only code path that reaches a hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_path
from worldplay.model.presets import PRESETS, ModelConfig, get_preset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pyproject pins tomli for 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent   # repo root: checkpoints.toml and assets/ live here
REGISTRY_PATH = ROOT / "checkpoints.toml"
SHARD_MB = 15.0                                 # shard size cap: fits git hosts' per-file limits
MIB = 1 << 20
HASH_BLOCK = MIB                                # bytes read per sha256 update
HEADER_LEN_BYTES = 8                            # safetensors: u64 little-endian header length
HEADER_BASE_BYTES = 1024                        # JSON header: metadata and padding per shard...
HEADER_TENSOR_BYTES = 160                       # ...plus dtype, shape and offsets per tensor
SOURCES = ("assets", "hub", "random")
TRAINING_KEY = "worldplay_training"             # shard metadata: JSON of steps/minutes per part
CONVERT_HINT = ("convert it in a trusted environment with safetensors.torch.save_file("
                "torch.load(path, weights_only=True), 'model.safetensors')")


@dataclass(frozen=True)
class ShardFile:
    path: str      # as written in the registry: relative to the registry's folder, or in the hub repo
    sha256: str    # hex digest of the whole file
    bytes: int     # file size; a cheap first check before hashing


@dataclass(frozen=True)
class ModelEntry:
    name: str
    preset: str
    source: str                  # "assets" | "hub" | "random"
    files: tuple[ShardFile, ...]
    hub: str | None = None       # "org/repo" for hub entries
    revision: str | None = None  # pinned hub revision (a commit hash keeps downloads reproducible)
    seed: int = 0                # init seed of random entries
    random: bool = False         # random weights: displays must say so
    description: str = ""


@dataclass(frozen=True)
class Registry:
    path: Path
    default: str
    models: dict[str, ModelEntry]

    @property
    def root(self) -> Path:
        """Folder that registry paths are relative to (the repo root for the shipped registry)."""
        return self.path.parent

    def get(self, name: str) -> ModelEntry:
        if name not in self.models:
            raise WorldplayError(f"unknown model {name!r}; models in {self.path.name}: "
                                 f"{', '.join(self.models)}")
        return self.models[name]


@dataclass(frozen=True)
class CheckpointInfo:
    name: str
    preset: str
    source: str
    random: bool                            # True: seeded random weights (state_dict is None)
    seed: int | None                        # init seed for random entries
    files: tuple[tuple[Path, str], ...]     # (local path, sha256) of each shard read
    training: dict | None = None            # what the shards say of their training (train export)

    @property
    def steps(self) -> int | None:
        """The DiT's training steps, when the checkpoint says."""
        return (self.training or {}).get("dit", {}).get("steps")

    @property
    def label(self) -> str:
        """Short text for the HUD / bench, flagging random weights and naming training steps."""
        if self.random:
            return f"{self.name} (random weights)"
        return f"{self.name} ({self.steps} steps)" if self.steps is not None else self.name


# ---- registry -------------------------------------------------------------------------------

def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Parse checkpoints.toml (default: the one at the repo root, never the CWD's)."""
    p = Path(path) if path is not None else REGISTRY_PATH
    if not p.is_file():
        raise WorldplayError(f"model registry {p} is missing; restore checkpoints.toml from git")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise WorldplayError(f"{p} is not valid TOML ({e}); fix it or restore it from git") from None
    models: dict[str, ModelEntry] = {}
    for i, raw in enumerate(data.get("model", [])):
        entry = _parse_entry(raw, f"{p.name}: model #{i + 1}")
        if entry.name in models:
            raise WorldplayError(f"{p.name}: model {entry.name!r} is listed twice; rename one")
        models[entry.name] = entry
    default = data.get("default", next(iter(models), ""))
    if default not in models:
        raise WorldplayError(f"{p.name}: default model {default!r} is not listed; set `default` "
                             f"to one of: {', '.join(models) or '(none)'}")
    return Registry(p.resolve(), default, models)


def _parse_entry(raw: dict, where: str) -> ModelEntry:
    for key in ("name", "preset", "source"):
        if key not in raw:
            raise WorldplayError(f"{where} lacks {key!r}; add it (see the comment at the top of the file)")
    name, src = str(raw["name"]), raw["source"]
    where = f"{where} ({name!r})"
    if raw["preset"] not in PRESETS:
        raise WorldplayError(f"{where} names unknown preset {raw['preset']!r}; known presets: "
                             f"{', '.join(sorted(PRESETS))}")
    hub = revision = None
    if isinstance(src, dict):
        if "hub" not in src:
            raise WorldplayError(f"{where}: a table `source` needs hub = \"org/repo\"")
        hub, revision, src = str(src["hub"]), src.get("revision"), "hub"
    if src not in SOURCES:
        raise WorldplayError(f"{where}: source {src!r} is not \"assets\", \"random\" or "
                             f"{{ hub = \"org/repo\", revision = ... }}")
    try:
        files = tuple(ShardFile(str(f["path"]), str(f["sha256"]).lower(), int(f["bytes"]))
                      for f in raw.get("files", []))
    except (KeyError, TypeError, ValueError):
        raise WorldplayError(f"{where}: each file needs path, sha256 and bytes") from None
    if src != "random" and not files:
        raise WorldplayError(f"{where}: source {src!r} lists no files; add them or use source = \"random\"")
    return ModelEntry(name, str(raw["preset"]), src, files, hub, revision, int(raw.get("seed", 0)),
                      bool(raw.get("random", src == "random")), str(raw.get("description", "")))


def default_download_dir(name: str) -> Path:
    """Where `worldplay download NAME` puts hub files (WORLDPLAY_CACHE overrides)."""
    base = os.environ.get("WORLDPLAY_CACHE") or \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "worldplay"
    return Path(base).expanduser() / "checkpoints" / name


def local_files(entry: ModelEntry, registry: Registry, download_dir: str | os.PathLike | None = None
                ) -> list[Path]:
    """Where each shard of `entry` should be on this machine."""
    if entry.source == "hub":
        base = Path(download_dir) if download_dir else default_download_dir(entry.name)
    else:
        base = registry.root
    return [base / f.path for f in entry.files]


# ---- file checks ----------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _show(path: Path, root: Path) -> str:
    """A path as short as it can be while still unambiguous (relative to the repo if inside)."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def read_header(path: Path, shown: str) -> dict:
    """The safetensors JSON header; anything else (pickle, zip, junk) is refused, never unpickled."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_LEN_BYTES)
        n = struct.unpack("<Q", head)[0] if len(head) == HEADER_LEN_BYTES else 0
        body = f.read(n) if 2 <= n <= size - HEADER_LEN_BYTES else b""
    try:
        header = json.loads(body) if body[:1] == b"{" else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise WorldplayError(f"{shown} is not a safetensors file (pickle checkpoints are refused "
                             f"for safety); {CONVERT_HINT}")
    return header


def _fix_hint(entry: ModelEntry) -> str:
    if entry.source == "hub":
        return f"re-download with `worldplay download {entry.name}`"
    return "restore it from git (`git checkout -- assets/`) or reinstall worldplay"


def verify(name: str, registry: Registry | str | os.PathLike | None = None,
           download_dir: str | os.PathLike | None = None) -> list[Path]:
    """Check every shard of model `name` exists, is safetensors and matches size and sha256."""
    reg = registry if isinstance(registry, Registry) else load_registry(registry)
    entry = reg.get(name)
    paths = local_files(entry, reg, download_dir)
    for f, p in zip(entry.files, paths):
        shown = _show(p, reg.root)
        if not p.is_file():
            fix = f"run `worldplay download {entry.name}`" if entry.source == "hub" else _fix_hint(entry)
            raise WorldplayError(f"{shown} is missing; {fix}")
        if p.stat().st_size != f.bytes:
            raise WorldplayError(f"{shown} is corrupt or modified (size {p.stat().st_size} bytes != "
                                 f"expected {f.bytes}); {_fix_hint(entry)}")
        got = sha256_file(p)
        if got != f.sha256:
            raise WorldplayError(f"{shown} is corrupt or modified (sha256 {got[:16]}... != expected "
                                 f"{f.sha256[:16]}...); {_fix_hint(entry)}")
        read_header(p, shown)  # a listed pickle with a matching hash is still refused
    return paths


# ---- loading --------------------------------------------------------------------------------

def load_checkpoint(name_or_path: str | os.PathLike, preset: str | None = None, device="cpu",
                    expected_shapes: dict[str, tuple[int, ...]] | None = None,
                    registry: Registry | str | os.PathLike | None = None,
                    download_dir: str | os.PathLike | None = None
                    ) -> tuple[ModelConfig, dict[str, Tensor] | None, CheckpointInfo]:
    """(config, state_dict, info) for a registry name, a .safetensors file or a shard folder.

    Random entries return state_dict None: build the model from `info.seed`. With
    `expected_shapes` (name -> shape, from the model's own state_dict) every tensor is checked.
    """
    reg = registry if isinstance(registry, Registry) else load_registry(registry)
    key = str(name_or_path)
    if key in reg.models:
        entry = reg.models[key]
        if preset is not None and preset != entry.preset:
            raise WorldplayError(f"model {key!r} is preset {entry.preset!r}, not {preset!r}; "
                                 f"drop --preset or pick a {preset} model")
        cfg = get_preset(entry.preset)
        if entry.source == "random":
            return cfg, None, CheckpointInfo(key, entry.preset, "random", True, entry.seed, ())
        paths, shown_root = verify(key, reg, download_dir), reg.root
        hashes = [f.sha256 for f in entry.files]
        name, source, random = key, entry.source, entry.random
    else:
        paths = _path_shards(Path(name_or_path), reg)
        shown_root, name, source, random = ROOT, Path(name_or_path).stem, "file", False
        preset = preset or read_header(paths[0], _show(paths[0], ROOT)).get(
            "__metadata__", {}).get("worldplay_preset")
        if preset is None:
            raise WorldplayError(f"{name_or_path} does not say which preset it was made for; "
                                 f"pass the preset (one of: {', '.join(sorted(PRESETS))})")
        cfg = get_preset(preset)
        hashes = [sha256_file(p) for p in paths]
    state, owner = _read_shards(paths, shown_root, device)
    if expected_shapes is not None:
        check_shapes(state, expected_shapes, cfg.name, owner)
    training = read_header(paths[0], _show(paths[0], shown_root)).get("__metadata__", {}).get(TRAINING_KEY)
    info = CheckpointInfo(name, cfg.name, source, random, None, tuple(zip(paths, hashes)),
                          json.loads(training) if training else None)
    return cfg, state, info


def _path_shards(p: Path, reg: Registry) -> list[Path]:
    if p.is_dir():
        shards = sorted(p.glob("*.safetensors"))
        if not shards:
            raise WorldplayError(f"folder {p} holds no .safetensors shards; point at the model's folder")
        return shards
    if p.is_file():
        return [p]
    if p.suffix or os.sep in str(p) or "/" in str(p):
        raise WorldplayError(f"checkpoint file {p} not found; check the path or use a model name "
                             f"from {reg.path.name} ({', '.join(reg.models)})")
    raise WorldplayError(f"unknown model {str(p)!r}; models in {reg.path.name}: {', '.join(reg.models)}")


def _read_shards(paths: list[Path], root: Path, device) -> tuple[dict[str, Tensor], dict[str, str]]:

    state: dict[str, Tensor] = {}
    owner: dict[str, str] = {}   # tensor name -> the shard it came from, for error messages
    for p in paths:
        shown = _show(p, root)
        read_header(p, shown)
        try:
            tensors = load_file(str(p), device=str(device))
        except Exception as e:  # safetensors raises its own error types for damaged files
            raise WorldplayError(f"{shown} could not be read as safetensors ({e}); "
                                 f"re-save or re-download it") from None
        for k, v in tensors.items():
            if k in state:
                raise WorldplayError(f"tensor {k!r} is in both {owner[k]} and {shown}; the shards "
                                     f"come from different saves, so re-save or re-download them")
            state[k], owner[k] = v, shown
    return state, owner


def shapes_of(state: dict[str, Tensor] | torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """name -> shape, the `expected_shapes` argument built from a model or its state_dict."""
    sd = state.state_dict() if isinstance(state, torch.nn.Module) else state
    return {k: tuple(v.shape) for k, v in sd.items()}


def check_shapes(state: dict[str, Tensor], expected: dict[str, tuple[int, ...]], preset: str,
                 owner: dict[str, str] | None = None) -> None:
    owner = owner or {}
    for k, shape in expected.items():
        if k not in state:
            raise WorldplayError(f"checkpoint lacks tensor {k!r} that preset {preset} expects; "
                                 f"the checkpoint was made for another preset or model version")
        if tuple(state[k].shape) != tuple(shape):
            raise WorldplayError(f"{owner.get(k, 'checkpoint')}: tensor {k!r} has shape "
                                 f"{tuple(state[k].shape)} but preset {preset} expects {tuple(shape)}; "
                                 f"the checkpoint was made for another preset")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise WorldplayError(f"{owner.get(extra[0], 'checkpoint')}: tensor {extra[0]!r} is not part "
                             f"of preset {preset}; the checkpoint was made for another preset or "
                             f"model version")


# ---- saving ---------------------------------------------------------------------------------

def save_checkpoint(state_dict: dict[str, Tensor], out_dir: str | os.PathLike, name: str,
                    preset: str, shard_mb: float = SHARD_MB, root: str | os.PathLike = ROOT,
                    meta: dict[str, str] | None = None) -> list[dict]:
    """Write `state_dict` as `{name}-00001.safetensors`, ... (each <= shard_mb MiB), atomically.

    Returns the registry `files` entries ({path, sha256, bytes}); paths are relative to `root`
    when the folder is inside it. Stale higher-numbered shards of the same name are removed.
    """

    get_preset(preset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = _shard_groups(state_dict, shard_mb * MIB - HEADER_BASE_BYTES, shard_mb)
    entries = []
    for i, keys in enumerate(groups, start=1):
        path = out / f"{name}-{i:05d}.safetensors"
        # Clone: safetensors refuses tensors that share storage (tied weights, views).
        tensors = {k: state_dict[k].detach().to("cpu").contiguous().clone() for k in keys}
        header = {**(meta or {}), "worldplay_name": name, "worldplay_preset": preset,
                  "shard": f"{i}/{len(groups)}"}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=header)
        entries.append({"path": _show(path, Path(root)), "sha256": sha256_file(path),
                        "bytes": path.stat().st_size})
    for stale in out.glob(f"{name}-*.safetensors"):
        suffix = stale.stem[len(name) + 1:]
        if suffix.isdigit() and int(suffix) > len(groups):
            stale.unlink()
    return entries


def _shard_groups(state: dict[str, Tensor], budget: float, shard_mb: float) -> list[list[str]]:
    """Greedy packing in state_dict order (keeps each block's tensors together)."""
    groups: list[list[str]] = [[]]
    used = 0
    for k, v in state.items():
        size = v.numel() * v.element_size() + len(k.encode()) + HEADER_TENSOR_BYTES
        if size > budget:
            raise WorldplayError(f"tensor {k!r} is {size / MIB:.1f} MiB, over the {shard_mb} MiB "
                                 f"shard limit; raise shard_mb")
        if used + size > budget and groups[-1]:
            groups.append([])
            used = 0
        groups[-1].append(k)
        used += size
    return groups


def registry_entry(name: str, preset: str, files: list[dict], description: str = "") -> str:
    """The [[model]] text for checkpoints.toml describing shards written by save_checkpoint."""
    lines = ["[[model]]", f'name = "{name}"', f'preset = "{preset}"', 'source = "assets"',
             f"description = {json.dumps(description)}", "files = ["]
    lines += [f'  {{ path = "{f["path"]}", sha256 = "{f["sha256"]}", bytes = {f["bytes"]} }},'
              for f in files]
    return "\n".join(lines + ["]"]) + "\n"
