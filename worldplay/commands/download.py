"""`worldplay download [NAME] [--dest DIR]`: fetch a hub model listed in checkpoints.toml.

The only code path in worldplay that reaches a network. Shipped (assets/) and random models
need nothing; for them this only verifies and says so. Without NAME it lists the models and
whether each is ready to load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from worldplay.checkpoints import Registry, default_download_dir, load_registry, local_files, sha256_file, verify
from worldplay.errors import WorldplayError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="model name from checkpoints.toml (omit to list them)")
    p.add_argument("--dest", type=Path, default=None,
                   help="folder for the files (default: ~/.cache/worldplay/checkpoints/NAME, "
                        "or $WORLDPLAY_CACHE/checkpoints/NAME)")
    p.add_argument("--registry", type=Path, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    reg = load_registry(args.registry)
    if args.name is None:
        for line in list_models(reg):
            print(line)
        return 0
    print(download(args.name, args.dest, reg))
    return 0


def list_models(reg: Registry) -> list[str]:
    lines = []
    for name, e in reg.models.items():
        status = _status(e, reg)
        mark = "*" if name == reg.default else " "
        lines.append(f"{mark} {name:<16} preset={e.preset:<6} source={e.source:<7} {status}  {e.description}")
    return lines


def _status(entry, reg: Registry) -> str:
    if entry.source == "random":
        return f"random weights (seed {entry.seed})"
    if all(p.is_file() for p in local_files(entry, reg)):
        return "ready"
    return "not downloaded" if entry.source == "hub" else "missing files"


def download(name: str, dest: str | Path | None = None, registry: Registry | None = None) -> str:
    """Fetch and verify model `name`; returns a one-line summary of what happened."""
    reg = registry or load_registry()
    entry = reg.get(name)
    if entry.source == "random":
        return (f"model {name} is built from seed {entry.seed} (random weights); "
                f"nothing to download")
    if entry.source == "assets":
        verify(name, reg)
        return f"model {name} ships in assets/ and its files verify; nothing to download"
    out = Path(dest) if dest else default_download_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for f, path in zip(entry.files, local_files(entry, reg, out)):
        if path.is_file() and path.stat().st_size == f.bytes and sha256_file(path) == f.sha256:
            continue  # already here and intact
        _fetch(entry.hub, f.path, entry.revision, out)
        fetched += 1
    verify(name, reg, out)
    return (f"model {name}: {fetched} file(s) downloaded, {len(entry.files) - fetched} already "
            f"present, all verified in {out}")


def _fetch(repo: str, filename: str, revision: str | None, out: Path) -> None:
    try:
        from huggingface_hub import hf_hub_download  # huggingface_hub: only a download needs it (network, slow import)
    except ImportError:
        raise WorldplayError("huggingface_hub is not installed; `pip install huggingface-hub` "
                             "to download models") from None
    try:
        hf_hub_download(repo_id=repo, filename=filename, revision=revision, local_dir=out)
    except Exception as e:  # network, auth and missing-file errors all end the same way
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WorldplayError(f"could not download {filename} from hub repo {repo}"
                             f"{'@' + revision if revision else ''} ({msg}); check the network "
                             f"connection and the repo name in checkpoints.toml") from None
