"""The evaluation report: the paper's table as markdown, the raw numbers as JSON, a PNG strip.

Columns follow the paper (Method, RotErr, TransErr, PSNR, SSIM, ST-LPIPS, Dynamic, FPS), with
PSNR / SSIM on revisit frames and on the other scored frames apart, GMSD for detail, and the
number of frames the pose estimator could not align; the long protocol adds revisit PSNR over
the first and the last quarter of its revisit frames (drift). Rows show the source spec as
typed after a description of its kind, ordered by kind (ground truth, its ceiling and floor,
baselines, then the model by memory mode) so tables from separate runs line up. Values that
are not measurements are labelled: PSNR at the cap says "capped", a missing ST-LPIPS says why,
FID/FVD say they are not computed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from worldplay.eval.metrics import NOT_COMPUTED, PSNR_CAP, STLPIPS_NAME, format_psnr, is_capped
from worldplay.fileio import atomic_write_bytes
from worldplay.png import downscale, tile, write_png

# Source kinds as `--source` specs start, in row order, with what each row is.
KINDS = {
    "world": "Ground truth (renderer)",
    "vae": "Ground truth through the VAE (ceiling)",
    "floor": "Layout only (GT in 32-px cells)",
    "explicit": "Explicit memory (reprojection)",
    "memory": "Mosaic memory view (no model)",
    "model": "Model",
}
# Memory modes of `model[...]@MODE` specs, in the paper's ablation order.
MODES = {"off": "no memory", "rope": "Warped RoPE only", "latent": "Warped Latent only", "full": "MosaicMem (full)"}
COLUMNS = ("Method", "RotErr (deg) ↓", "TransErr (m) ↓", "PSNR revisit (dB) ↑", "SSIM revisit ↑",
           "PSNR non-revisit (dB) ↑", "SSIM non-revisit ↑", "GMSD revisit ↓", f"{STLPIPS_NAME} ↓",
           "Dynamic (GT = 1)", "Pose fails", "FPS ↑")
DRIFT_COLUMNS = ("Revisit PSNR first 25 % (dB) ↑", "Revisit PSNR last 25 % (dB) ↑")
PARTLY_CAPPED_MARK = "†"  # marks a mean PSNR that includes capped (identical) frames
STRIP_DOWNSCALE = 2      # 640x360 pairs at half size keep the PNG small and readable
FRAME_SETS = (("", "revisit"), ("_nonrevisit", "non-revisit"))   # JSON key suffix, words for notes


def _parts(spec: str) -> tuple[str, str | None]:
    """(kind, memory mode or None) of a source spec such as `model:base@rope` (display only)."""
    kind = spec.split(":", 1)[0].split("@", 1)[0]
    mode = spec.rsplit("@", 1)[1] if "@" in spec else None
    return kind, mode if mode in MODES else None


def label(spec: str) -> str:
    """The Method cell: what the row is, then the spec as typed."""
    kind, mode = _parts(spec)
    if kind not in KINDS:
        return spec
    desc = KINDS[kind] + (f", {MODES[mode]}" if mode else "")
    return desc if spec == kind else f"{desc} [{spec}]"


def _rank(spec: str) -> tuple:
    kind, mode = _parts(spec)
    kinds, modes = list(KINDS), list(MODES)
    return (kinds.index(kind) if kind in KINDS else len(kinds),
            modes.index(mode) if mode else -1, spec)


def sort_rows(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: _rank(r["method"]))


def _num(x, fmt: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return format(x, fmt)


def _psnr_frames(r: dict, suffix: str) -> int:
    return r.get("revisit_frames" if not suffix else "nonrevisit_frames", 0)


def _partly_capped(r: dict, suffix: str = "") -> bool:
    return 0 < r.get(f"psnr{suffix}_capped_frames", 0) < _psnr_frames(r, suffix)


def _psnr_cell(r: dict, suffix: str) -> str:
    return format_psnr(r.get(f"psnr{suffix}")) + (f" {PARTLY_CAPPED_MARK}" if _partly_capped(r, suffix) else "")


def table_row(r: dict, drift: bool = False) -> list[str]:
    lp = _num(r["st_lpips"], ".4f") if r.get("st_lpips") is not None else "n/a"
    cells = [label(r["method"]), _num(r["rot_err_deg"], ".3f"), _num(r["trans_err"], ".4f"),
             _psnr_cell(r, ""), _num(r["ssim"], ".4f"), _psnr_cell(r, "_nonrevisit"),
             _num(r.get("ssim_nonrevisit"), ".4f"), _num(r.get("gmsd"), ".4f"), lp, _num(r["dynamic"], ".3f"),
             str(r.get("pose_failed", 0)), _num(r["fps"], ".1f")]
    if drift:
        cells += [format_psnr(r.get("psnr_first_quarter")), format_psnr(r.get("psnr_last_quarter"))]
    return cells


def _measured(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _notes(rows: list[dict], protocol: dict, device: str, peak_rss_mb: float | None) -> list[str]:
    notes = [f"Protocol: {protocol['scenes']} held-out scenes (seeds {protocol['seeds'][0]}..{protocol['seeds'][1]})"
             f" x paths {', '.join(protocol['paths'])}, {protocol['frames']} frames each at {protocol['size']};"
             f" device {device}. Revisit frames come from a run whose context (ground truth a source may"
             " observe) ends at the first revisit; non-revisit frames are the frames before it, from a run"
             f" started from {protocol.get('explore_context_frames', 1)} ground-truth frame(s), and any later"
             " frames that revisit nothing."]
    psnrs = [r.get(f"psnr{sfx}") for r in rows for sfx, _ in FRAME_SETS]
    if any(is_capped(x) for x in psnrs if _measured(x)):
        notes.append(f"PSNR of identical frames is infinite; it is reported as the cap {PSNR_CAP:.0f} dB.")
    for r in rows:
        for sfx, words in FRAME_SETS:
            if _partly_capped(r, sfx):
                notes.append(f"{PARTLY_CAPPED_MARK} {label(r['method'])}: {words} PSNR is the mean over frames; "
                             f"{r[f'psnr{sfx}_capped_frames']} of {_psnr_frames(r, sfx)} {words} frames are "
                             f"pixel-identical to ground truth and count as the {PSNR_CAP:.0f} dB cap.")
    missing = {r["st_lpips_note"] for r in rows if r.get("st_lpips") is None and r.get("st_lpips_note")}
    for m in sorted(missing):
        notes.append(f"{STLPIPS_NAME}: {m}.")
    notes.append("GMSD: gradient magnitude similarity deviation (Xue et al. 2014), 0 for identical edges; "
                 "it sees the fine detail that PSNR and SSIM barely weigh against large flat sky and ground.")
    notes.append("RotErr/TransErr: dense photometric SE(3) alignment of each generated frame to ground truth "
                 f"(GT depth), mean over {sum(r['pose_frames'] for r in rows)} revisit frames in all. "
                 "Pose fails: picked revisit frames with too little texture to align "
                 f"({sum(r['pose_failed'] for r in rows)} in all), left out of the mean.")
    notes.append("Dynamic: motion energy inside moving-object masks after cancelling camera motion, "
                 "generated / ground truth (ground truth = 1, frozen = 0; "
                 f"stride {protocol['dynamic_stride']} frames).")
    if protocol.get("drift"):
        notes.append(f"Drift: revisit PSNR over the first and the last {protocol['drift_share']:.0%} of each "
                     "walk's revisit frames; a memory that holds keeps the two close.")
    kinds = {_parts(r["method"])[0] for r in rows}
    if "floor" in kinds:
        notes.append("floor: ground truth averaged over 32-px cells, what knowing only the layout scores; "
                     "a row scoring no better than it shows no detail.")
    if "vae" in kinds:
        notes.append("vae: ground truth through the VAE, the best any model decoding through it can score.")
    notes.append("FPS: frames per second of the source's own frame calls on this device.")
    if peak_rss_mb is not None:
        notes.append(f"Peak resident memory of this run: {peak_rss_mb:.0f} MB.")
    for k, why in NOT_COMPUTED.items():
        notes.append(f"{k}: not computed ({why}).")
    return notes


def markdown(rows: list[dict], protocol: dict, device: str, peak_rss_mb: float | None = None) -> str:
    rows = sort_rows(rows)
    drift = bool(protocol.get("drift"))
    cols = COLUMNS + (DRIFT_COLUMNS if drift else ())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(table_row(r, drift)) + " |" for r in rows]
    notes = _notes(rows, protocol, device, peak_rss_mb)
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


def to_json(rows: list[dict], protocol: dict, device: str, peak_rss_mb: float | None = None) -> str:
    out = {"protocol": protocol, "device": device, "psnr_cap_db": PSNR_CAP, "peak_rss_mb": peak_rss_mb,
           "rows": [dict(r, label=label(r["method"]),
                         psnr_capped=bool(_measured(r["psnr"]) and is_capped(r["psnr"])))
                    for r in sort_rows(rows)],
           "not_computed": NOT_COMPUTED}
    return json.dumps(_clean(out), indent=2)


def write_json(path: str | Path, rows: list[dict], protocol: dict, device: str,
               peak_rss_mb: float | None = None) -> Path:
    atomic_write_bytes(path, to_json(rows, protocol, device, peak_rss_mb).encode())
    return Path(path)


def strip_image(pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor, bool]]]) -> torch.Tensor:
    """Top row: ground truth; one row per method below it. Columns: (GT, generated, is_revisit)
    triples as the protocol picked them (revisit frames first, then non-revisit ones)."""
    first = next(iter(pairs.values()))
    rows = [[downscale(gt, STRIP_DOWNSCALE) for gt, _, _ in first]]
    for name in sorted(pairs, key=_rank):
        rows.append([downscale(gen, STRIP_DOWNSCALE) for _, gen, _ in pairs[name]])
    return tile(rows)


def strip_caption(pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor, bool]]]) -> str:
    first = next(iter(pairs.values()))
    n_rev = sum(1 for *_, rev in first if rev)
    names = ", ".join(sorted(pairs, key=_rank))     # specs: a label's brackets would end the alt text
    return (f"ground truth (top), then {names}: {n_rev} revisit frames"
            + (f", then {len(first) - n_rev} non-revisit frames" if len(first) > n_rev else ""))


def write_report(out_dir: str | Path, rows: list[dict], protocol: dict, device: str,
                 pairs: dict[str, list] | None = None, peak_rss_mb: float | None = None) -> list[Path]:
    """report.md, report.json and (when pairs are given) strip.png into `out_dir`."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, protocol, device, peak_rss_mb)
    pairs = {k: v for k, v in (pairs or {}).items() if v}
    if pairs:
        md += f"\n![{strip_caption(pairs)}](strip.png)\n"
    atomic_write_bytes(out / "report.md", md.encode())
    written = [out / "report.md", write_json(out / "report.json", rows, protocol, device, peak_rss_mb)]
    if pairs:
        written.append(write_png(out / "strip.png", strip_image(pairs)))
    return written
