"""`worldplay train export`: the EMA weights of a VAE run and a DiT run as shipped fp16 shards.

Writes `{name}-0000N.safetensors` (each <= 15 MiB) into assets/ and prints the [[model]] entry
for checkpoints.toml, with the training steps of each part in the shards' metadata (the HUD
shows them).
"""

from __future__ import annotations

import json
from pathlib import Path

from worldplay.checkpoints import ROOT, TRAINING_KEY, load_checkpoint, registry_entry, save_checkpoint
from worldplay.errors import WorldplayError
from worldplay.train.weights import run_state, weights_from


def _steps(run: str, part: str) -> dict:
    """Steps, minutes and origin of a run folder's part (a DiT run reports its VAE's run too).
    A run that started from another run folder counts that run's steps and minutes too, so the
    HUD shows all the training behind the weights."""
    p = run_state(Path(run), part)
    if not p.exists():
        return {"from": run}
    st = json.loads(p.read_text())
    out = {"steps": st["step"], "minutes": round(st["seconds"] / 60, 1), "init": st.get("init", "")}
    init = out["init"]
    if init in ("", "scratch") or Path(init).resolve() == Path(run).resolve():
        return out
    before = _steps(init, part) if Path(init).is_dir() else _shipped(init, part)
    if "steps" in before:
        out = {"steps": before["steps"] + out["steps"], "minutes": round(before["minutes"] + out["minutes"], 1),
               "init": before.get("init", init), "runs": [*before.get("runs", [init]), run]}
    return out


def _shipped(model: str, part: str) -> dict:
    """What a registry model or checkpoint file says of a part's training (its shards' metadata):
    a run that continued from the shipped weights (`--init mosaic-tiny`) adds to their steps."""
    try:
        _, _, info = load_checkpoint(model)
    except WorldplayError:
        return {}
    return dict((info.training or {}).get(part, {}))


def export(args) -> None:
    if not args.vae or not args.dit:
        raise WorldplayError("train export needs --vae RUN_OR_MODEL and --dit RUN_OR_MODEL")
    state = {**{f"vae.{k}": v.half() for k, v in weights_from(args.vae, "vae").items()},
             **{f"dit.{k}": v.half() for k, v in weights_from(args.dit, "dit").items()}}
    training = {"vae": _steps(args.vae, "vae"), "dit": _steps(args.dit, "dit")}
    out = Path(args.out) if args.out else ROOT / "assets"
    files = save_checkpoint(state, out, args.name, args.preset, meta={TRAINING_KEY: json.dumps(training)})
    total = sum(f["bytes"] for f in files)
    print(f"wrote {len(files)} shard(s), {total / 2 ** 20:.1f} MiB, into {out}; training: {training}")
    print(registry_entry(args.name, args.preset, files, f"{args.preset} model trained on MosaicWorld ({training})"))
