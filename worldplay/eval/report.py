"""The evaluation report: the paper's table as markdown, the raw numbers as JSON, a PNG strip.

Columns follow the paper: Method, RotErr, TransErr, PSNR, SSIM, ST-LPIPS, Dynamic, FPS.
Rows are ordered by ROW_ORDER (ground truth first, then baselines, then ablations of the
model) so tables from separate runs line up. Values that are not measurements are labelled:
PSNR at the cap says "capped", a missing ST-LPIPS says why, FID/FVD say they are not computed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from worldplay.eval.metrics import NOT_COMPUTED, PSNR_CAP, STLPIPS_NAME, format_psnr, is_capped
from worldplay.eval.png import downscale, tile, write_png
from worldplay.fileio import atomic_write_bytes

# Source names as `--source` takes them; ablation rows of the model keep this order when added.
ROW_ORDER = ("world", "explicit", "memory", "model:no-memory", "model:rope", "model:latent", "model:full",
             "model:full-no-prope")
LABELS = {
    "world": "Ground truth (renderer)",
    "explicit": "Explicit memory (reprojection)",
    "memory": "Mosaic memory view (no model)",
    "model:no-memory": "Model, no memory",
    "model:rope": "Model, Warped RoPE only",
    "model:latent": "Model, Warped Latent only",
    "model:full": "Model, MosaicMem (full)",
    "model:full-no-prope": "Model, full without PRoPE",
}
COLUMNS = ("Method", "RotErr (deg) ↓", "TransErr (m) ↓", "PSNR (dB) ↑", "SSIM ↑", f"{STLPIPS_NAME} ↓",
           "Dynamic (GT = 1)", "FPS ↑")
PARTLY_CAPPED_MARK = "†"  # marks a mean PSNR that includes capped (identical) frames
STRIP_DOWNSCALE = 2      # 640x360 pairs at half size keep the PNG small and readable


def sort_rows(rows: list[dict]) -> list[dict]:
    rank = {name: i for i, name in enumerate(ROW_ORDER)}
    return sorted(rows, key=lambda r: (rank.get(r["method"], len(ROW_ORDER)), r["method"]))


def _num(x, fmt: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return format(x, fmt)


def _partly_capped(r: dict) -> bool:
    return 0 < r.get("psnr_capped_frames", 0) < r.get("revisit_frames", 0)


def table_row(r: dict) -> list[str]:
    lp = _num(r["st_lpips"], ".4f") if r.get("st_lpips") is not None else "n/a"
    p = format_psnr(r["psnr"]) + (f" {PARTLY_CAPPED_MARK}" if _partly_capped(r) else "")
    return [LABELS.get(r["method"], r["method"]), _num(r["rot_err_deg"], ".3f"), _num(r["trans_err"], ".4f"),
            p, _num(r["ssim"], ".4f"), lp, _num(r["dynamic"], ".3f"), _num(r["fps"], ".1f")]


def markdown(rows: list[dict], protocol: dict, device: str) -> str:
    rows = sort_rows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_row(r)) + " |" for r in rows]
    notes = [f"Protocol: {protocol['scenes']} held-out scenes (seeds {protocol['seeds'][0]}..{protocol['seeds'][1]})"
             f" x paths {', '.join(protocol['paths'])}, {protocol['frames']} frames each at {protocol['size']},"
             f" scored on revisit frames; device {device}."]
    if any(is_capped(r["psnr"]) for r in rows if r["psnr"] is not None and not math.isnan(r["psnr"])):
        notes.append(f"PSNR of identical frames is infinite; it is reported as the cap {PSNR_CAP:.0f} dB.")
    for r in rows:
        if _partly_capped(r):
            notes.append(f"{PARTLY_CAPPED_MARK} {LABELS.get(r['method'], r['method'])}: PSNR is the mean over frames; "
                         f"{r['psnr_capped_frames']} of {r['revisit_frames']} revisit frames are pixel-identical "
                         f"to ground truth and count as the {PSNR_CAP:.0f} dB cap.")
    missing = {r["st_lpips_note"] for r in rows if r.get("st_lpips") is None and r.get("st_lpips_note")}
    for m in sorted(missing):
        notes.append(f"{STLPIPS_NAME}: {m}.")
    notes.append("RotErr/TransErr: dense photometric SE(3) alignment of each generated frame to ground truth "
                 f"(GT depth), mean over {sum(r['pose_frames'] for r in rows)} frames in all"
                 + (f"; {sum(r['pose_failed'] for r in rows)} frames had too little texture to align."
                    if any(r["pose_failed"] for r in rows) else "."))
    notes.append("Dynamic: motion energy inside moving-object masks after cancelling camera motion, "
                 "generated / ground truth (ground truth = 1, frozen = 0; "
                 f"stride {protocol['dynamic_stride']} frames).")
    notes.append("FPS: frames per second of the source's own frame calls on this device.")
    for k, why in NOT_COMPUTED.items():
        notes.append(f"{k}: not computed ({why}).")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _clean(x):
    """JSON has no NaN: write null so other tools can read the file."""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def to_json(rows: list[dict], protocol: dict, device: str) -> str:
    out = {"protocol": protocol, "device": device, "psnr_cap_db": PSNR_CAP,
           "rows": [dict(r, label=LABELS.get(r["method"], r["method"]),
                         psnr_capped=bool(r["psnr"] is not None and not math.isnan(r["psnr"]) and is_capped(r["psnr"])))
                    for r in sort_rows(rows)],
           "not_computed": NOT_COMPUTED}
    return json.dumps(_clean(out), indent=2)


def write_json(path: str | Path, rows: list[dict], protocol: dict, device: str) -> Path:
    atomic_write_bytes(path, to_json(rows, protocol, device).encode())
    return Path(path)


def strip_image(pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]]) -> torch.Tensor:
    """Top row: ground truth on revisit frames; one row per method below it."""
    first = next(iter(pairs.values()))
    rows = [[downscale(gt, STRIP_DOWNSCALE) for gt, _ in first]]
    for name in sorted(pairs, key=lambda n: ROW_ORDER.index(n) if n in ROW_ORDER else len(ROW_ORDER)):
        rows.append([downscale(gen, STRIP_DOWNSCALE) for _, gen in pairs[name]])
    return tile(rows)


def write_report(out_dir: str | Path, rows: list[dict], protocol: dict, device: str,
                 pairs: dict[str, list] | None = None) -> list[Path]:
    """report.md, report.json and (when pairs are given) strip.png into `out_dir`."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, protocol, device)
    if pairs and any(pairs.values()):
        md += "\n![ground truth (top) vs generated on revisits](strip.png)\n"
    atomic_write_bytes(out / "report.md", md.encode())
    written = [out / "report.md", write_json(out / "report.json", rows, protocol, device)]
    if pairs and any(pairs.values()):
        written.append(write_png(out / "strip.png", strip_image({k: v for k, v in pairs.items() if v})))
    return written
