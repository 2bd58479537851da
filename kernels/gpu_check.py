"""`python -m kernels.gpu_check --out DIR` (`make gpu-check`): what a lent GPU should tell us, in 4 minutes.

GPU time is rare and short (DESIGN §11), so one command gathers it all from the working tree,
installing nothing (PYTHONPATH = the repo root, this interpreter), into DIR:

- kernels.json        `python -m kernels.bench`: the attention kernel split / unsplit vs SDPA
- bench_<model>_<kernels>.json, four of them: `python -m worldplay bench --device cuda --seconds 10`
                      for the shipped model and base-random, with --kernels torch and triton
- log.txt             each step's command, exit status, time and the tail of its output
- summary.md          FPS per row, the kernels' speed-up, the kernel timings, each step's status

then `pytest -m gpu -q` over the test files that have GPU tests (last: the benches come first and
leave the Triton cache warm for it; when pytest is not installed the step says so, and the
kernel bench's error against fp32 is the numerics check). Every step runs in its own process
with a timeout, cut to what is left of TOTAL_S; a step that fails or times out is recorded and
the next one runs; the exit status is 1 if any step failed or timed out. Without CUDA it
prints one line and exits 0, writing nothing.

It imports nothing of worldplay: `worldplay bench` runs as a subprocess, like the others.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kernels.gpu_summary import KERNEL_JSON, bench_name, summarize

ROOT = Path(__file__).resolve().parents[1]
TOTAL_S = 225                 # the steps' share of the 4 minutes (start-up and a timed-out step's grace aside)
MIN_STEP_S = 10               # a step left less time than this is skipped (recorded), not started
BENCH_SECONDS = 10            # `worldplay bench --seconds`: measurement after the warm-up
MODELS = [("model", "shipped"), ("model:base-random", "base")]   # (--source, name in the JSON's file name)
KERNEL_MODES = ("torch", "triton")
LOG_TAIL_CHARS = 3000         # of each step's output, in log.txt
INTERRUPT_GRACE_S = 5         # after SIGINT on timeout, before SIGKILL
# Per-step caps (seconds). Base builds 1.3B random parameters and, with triton, may autotune.
CAP_KERNEL_BENCH = 40
CAP_TINY_BENCH = 35
CAP_BASE_BENCH = 50
CAP_PYTEST = 90
GPU_MARK = "pytest.mark.gpu"


@dataclass
class Step:
    name: str
    argv: list[str]
    cap_s: float
    status: str = "not run"
    seconds: float = 0.0
    output: str = field(default="", repr=False)


def steps(out: Path) -> list[Step]:
    py = sys.executable
    todo = [Step("kernels.bench", [py, "-m", "kernels.bench", "--json", str(out / KERNEL_JSON)], CAP_KERNEL_BENCH)]
    for source, slug in MODELS:
        for mode in KERNEL_MODES:
            todo.append(Step(f"worldplay bench --source {source} --kernels {mode}",
                             [py, "-m", "worldplay", "bench", "--source", source, "--device", "cuda",
                              "--seconds", str(BENCH_SECONDS), "--kernels", mode,
                              "--json", str(out / bench_name(slug, mode))],
                             CAP_TINY_BENCH if slug == "shipped" else CAP_BASE_BENCH))
    gpu_tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                       if GPU_MARK in p.read_text())
    todo.append(Step("pytest -m gpu", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *gpu_tests],
                     CAP_PYTEST))
    return todo


def child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "WORLDPLAY_KERNELS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_step(step: Step, budget_s: float) -> None:
    """Run one step in its own process group, killed (with its children) past `budget_s`."""
    if step.name.startswith("pytest") and importlib.util.find_spec("pytest") is None:
        step.status = "skipped: pytest is not installed (see the kernel bench's max err vs fp32)"
        return
    if budget_s < MIN_STEP_S:
        step.status = f"skipped: {budget_s:.0f} s left of the {TOTAL_S} s budget"
        return
    start = time.monotonic()
    proc = subprocess.Popen(step.argv, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        step.output, _ = proc.communicate(timeout=budget_s)
        step.status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)          # let Python print where it was
        try:
            step.output, _ = proc.communicate(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            step.output, _ = proc.communicate()
        step.status = f"timed out after {budget_s:.0f} s"
    step.seconds = time.monotonic() - start


def write_log(out: Path, done: list[Step]) -> None:
    parts = []
    for s in done:
        tail = s.output[-LOG_TAIL_CHARS:]
        parts.append(f"$ {' '.join(s.argv)}\n# {s.status}, {s.seconds:.1f} s\n{tail}\n")
    (out / "log.txt").write_text("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/gpu", help="folder for the JSONs, log.txt and summary.md")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("kernels.gpu_check: CUDA is absent on this machine; nothing to check (run it where a GPU is lent)")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + TOTAL_S
    todo = steps(out.resolve())
    for step in todo:
        run_step(step, min(step.cap_s, deadline - time.monotonic()))
        print(f"gpu_check: {step.name}: {step.status} ({step.seconds:.1f} s)", flush=True)
    write_log(out, todo)
    text = summarize(out, [(s.name, s.status, s.seconds, s.output) for s in todo],
                     gpu=torch.cuda.get_device_name(0), total_s=TOTAL_S, models=MODELS, modes=KERNEL_MODES)
    (out / "summary.md").write_text(text)
    print(text)
    failed = [s.name for s in todo if s.status.startswith(("failed", "timed out"))]
    if failed:
        print(f"gpu_check: {len(failed)} step(s) failed: {', '.join(failed)} (see {out / 'log.txt'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
