"""torchrun worker for test_train.py: a few data-parallel VAE steps over gloo (not a test module)."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from train_micro import vae_stage

from worldplay.train.loop import LoopConfig, train


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    stage = vae_stage()
    if rank == 0:
        save_file({k: v.clone() for k, v in stage.module.state_dict().items()}, str(out / "start.safetensors"))
    train(stage, out / "run", LoopConfig(steps=3, progress=False, sample_minutes=1e9, save_minutes=1e9))
    save_file({k: v.clone() for k, v in stage.module.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
