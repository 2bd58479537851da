"""summary.md of `python -m kernels.gpu_check`: the numbers a reader wants first, from its JSONs.

Three tables: each step's status and time; streamer FPS per model with --kernels torch and
triton and the speed-up of the Triton kernels; the attention kernel's timings at the streamer's
shapes (split as the launcher chooses, unsplit, SDPA, the torch path) with its error against fp32.
A step that failed leaves its cells as "-", so a partial run still summarises what it got.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

MISSING = "-"
BF16_TOL = 2e-2          # bf16 kernel vs an fp32 reference: more than this is flagged
KERNEL_JSON = "kernels.json"
StepRow = tuple[str, str, float, str]   # (name, status, seconds, output)


def bench_name(slug: str, mode: str) -> str:
    """File name of one `worldplay bench` row: bench_<model>_<kernels>.json."""
    return f"bench_{slug}_{mode}.json"


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _num(v, fmt: str = ".2f") -> str:
    return MISSING if v is None else format(v, fmt)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else MISSING


def fps_table(out: Path, models: list[tuple[str, str]], modes: tuple[str, str]) -> list[str]:
    base, fast = modes
    rows = [f"| model | weights | {base} FPS | {fast} FPS | {fast} / {base} | {base} chunk p50 ms | "
            f"{fast} chunk p50 ms |", "|---|---|---|---|---|---|---|"]
    for source, slug in models:
        a, b = (_load(out / bench_name(slug, m)) or {} for m in modes)
        fa, fb = a.get("fps"), b.get("fps")
        speed = f"{fb / fa:.2f}x" if fa and fb else MISSING
        label = a.get("label") or b.get("label") or MISSING
        rows.append(f"| {source} | {label} | {_num(fa)} | {_num(fb)} | {speed} | "
                    f"{_num(a.get('chunk_latency_p50_ms'), '.1f')} | {_num(b.get('chunk_latency_p50_ms'), '.1f')} |")
    return rows


def kernel_table(out: Path) -> list[str]:
    res = _load(out / KERNEL_JSON) or {}
    rows = ["| shape | keys | splits | auto ms | unsplit ms | SDPA ms | torch path ms | x unsplit | x SDPA | "
            "max err vs fp32 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res.get("attention", []):
        ms = r["ms"]
        err = max(r["max_err_vs_fp32"][k] for k in ("triton_auto", "triton_unsplit"))
        flag = " (over bf16 tolerance)" if err > BF16_TOL else ""
        rows.append(f"| {r['shape']} | {r['keys']} | {r['splits']} | {ms['triton_auto']:.3f} | "
                    f"{ms['triton_unsplit']:.3f} | {ms['sdpa']:.3f} | {ms['torch_path']:.3f} | "
                    f"{r['speedup_auto_vs_unsplit']:.2f}x | {r['speedup_auto_vs_sdpa']:.2f}x | {err:.4f}{flag} |")
    if not res.get("attention"):
        rows.append("| (no kernel timings: see the kernels.bench step) |" + f" {MISSING} |" * 9)
    return rows


def summarize(out: Path, steps: list[StepRow], *, gpu: str, total_s: float,
              models: list[tuple[str, str]], modes: tuple[str, str]) -> str:
    """The whole summary.md as text."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# gpu-check on {gpu}, {date}", "",
             f"Steps (each in its own process, {total_s:.0f} s budget in all):", "",
             "| step | status | seconds | last line |", "|---|---|---|---|"]
    for name, status, seconds, output in steps:
        lines.append(f"| {name} | {status} | {seconds:.1f} | {_last_line(output).replace('|', '/')} |")
    lines += ["", "## Streamer FPS (`worldplay bench --device cuda`, bf16)", "", *fps_table(out, models, modes),
              "", "## Attention kernel (`python -m kernels.bench`, bf16)", "", *kernel_table(out), ""]
    return "\n".join(lines)
