"""`worldplay info`: versions, device, and whether CUDA / Triton are usable here."""

from __future__ import annotations

import argparse
import os
import platform

import torch

import worldplay


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def collect() -> dict[str, str]:
    info = {"worldplay": worldplay.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "torch": torch.__version__,
            "cpu threads": str(torch.get_num_threads())}
    if torch.cuda.is_available():
        info["cuda"] = f"yes ({torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda})"
    else:
        info["cuda"] = "no (torch sees no CUDA device; everything runs on the CPU)"
    try:
        import triton  # Triton is optional (the dev extra): whether it imports is what we report
        usable = torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
        mode = "GPU kernels" if torch.cuda.is_available() else (
            "interpreter (TRITON_INTERPRET=1)" if usable else "installed, unused without CUDA")
        info["triton"] = f"{triton.__version__} ({mode})"
    except ImportError:
        info["triton"] = "not installed (torch reference kernels are used)"
    for mod in ("pygame", "av", "safetensors", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = "not installed"
    info["display"] = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or \
        ("dummy (SDL_VIDEODRIVER=dummy)" if os.environ.get("SDL_VIDEODRIVER") == "dummy" else "none")
    return info


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    for k, v in collect().items():
        print(f"{k:>12}: {v}")
    return 0
