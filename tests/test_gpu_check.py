"""`python -m kernels.gpu_check` (`make gpu-check`) where there is no GPU, and its summary.

The check itself only means something on CUDA; here it must say so in one line, exit 0 and write
nothing (so a CPU machine running `make gpu-check` by mistake is told, not failed). The summary is
built from the JSONs the steps leave, so fabricated ones test its tables.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from kernels import gpu_check
from kernels.gpu_summary import KERNEL_JSON, bench_name, summarize

ROOT = Path(__file__).resolve().parents[1]


def test_without_cuda_one_line_and_exit_0(tmp_path):
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}    # no GPU, even on one
    r = subprocess.run([sys.executable, "-m", "kernels.gpu_check", "--out", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and "CUDA is absent" in lines[0]
    assert not out.exists()


NO_PYGAME_NO_AV = """
import sys
class Block:   # a lent GPU machine has neither: importing them must not be needed to bench
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pygame", "av"):
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, Block())
from worldplay.cli import main
rc = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] in ("pygame", "av")]
raise SystemExit(rc)
"""


def test_worldplay_bench_needs_neither_pygame_nor_av(tmp_path):
    """The model bench gpu_check runs, at its smallest (one step, one-frame chunks), on CPU."""
    args = ["bench", "--source", "model:tiny-random", "--seconds", "0.01", "--steps", "1", "--chunk", "1",
            "--json", str(tmp_path / "b.json")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", NO_PYGAME_NO_AV, *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "b.json").read_text())["fps"] > 0


def test_steps_fit_the_budget_and_run_from_the_tree(tmp_path):
    steps = gpu_check.steps(tmp_path)
    assert sum(s.cap_s for s in steps[:-1]) < gpu_check.TOTAL_S      # pytest, last, gets the rest
    assert all(s.argv[0] == sys.executable for s in steps)
    benches = [s for s in steps if "worldplay" in s.argv]
    assert len(benches) == 4 and all("--device" in s.argv and "cuda" in s.argv for s in benches)
    assert {s.argv[s.argv.index("--kernels") + 1] for s in benches} == {"torch", "triton"}
    assert len(benches) + 3 <= 8                                     # + kernels.json, log.txt, summary.md
    pytest_step = steps[-1]
    assert "tests/test_kernels.py" in pytest_step.argv and "tests/test_attention_split.py" in pytest_step.argv
    env = gpu_check.child_env()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT) and "TRITON_INTERPRET" not in env


def test_a_failing_or_slow_step_is_recorded_and_the_others_run(tmp_path, monkeypatch, capsys):
    """main() with CUDA pretended and three stand-in steps: fails, hangs past its budget, works."""
    py = sys.executable
    fake = [gpu_check.Step("fails", [py, "-c", "raise SystemExit(3)"], 30),
            gpu_check.Step("hangs", [py, "-c", "import time; print('started', flush=True); time.sleep(60)"], 2),
            gpu_check.Step("works", [py, "-c", "print('fine')"], 30)]
    monkeypatch.setattr(gpu_check, "steps", lambda out: fake)
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Pretend GPU")
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    assert [s.status for s in fake] == ["failed (exit 3)", "timed out after 2 s", "ok"]
    assert fake[1].seconds < 2 + gpu_check.INTERRUPT_GRACE_S + 1 and "started" in fake[1].output
    summary = (tmp_path / "summary.md").read_text()
    assert "| works | ok |" in summary and "Pretend GPU" in summary
    assert "fine" in (tmp_path / "log.txt").read_text()
    assert "2 step(s) failed: fails, hangs" in capsys.readouterr().out


def test_summary_tables(tmp_path):
    for slug, fps in (("shipped", {"torch": 20.0, "triton": 25.0}), ("base", {"torch": 2.0})):
        for mode, f in fps.items():
            (tmp_path / bench_name(slug, mode)).write_text(json.dumps(
                {"fps": f, "label": f"{slug} weights", "chunk_latency_p50_ms": 200.0}))
    row = {"shape": "tiny chunk", "keys": 5040, "splits": 8,
           "ms": {"triton_auto": 0.05, "triton_unsplit": 0.1, "sdpa": 0.08, "torch_path": 0.3},
           "max_err_vs_fp32": {"triton_auto": 0.004, "triton_unsplit": 0.004, "torch_path": 0.004},
           "speedup_auto_vs_unsplit": 2.0, "speedup_auto_vs_sdpa": 1.6}
    (tmp_path / KERNEL_JSON).write_text(json.dumps({"attention": [row]}))
    steps = [("kernels.bench", "ok", 20.0, "done\n"), ("worldplay bench ...", "failed (exit 2)", 3.0, "error: x|y\n")]
    text = summarize(tmp_path, steps, gpu="Test GPU", total_s=225, models=gpu_check.MODELS,
                     modes=gpu_check.KERNEL_MODES)
    assert "| model | shipped weights | 20.00 | 25.00 | 1.25x |" in text
    assert "| model:base-random | base weights | 2.00 | - | - |" in text
    assert "| tiny chunk | 5040 | 8 | 0.050 | 0.100 | 0.080 | 0.300 | 2.00x | 1.60x | 0.0040 |" in text
    assert "| worldplay bench ... | failed (exit 2) | 3.0 | error: x/y |" in text
