"""torchrun worker for test_train.py: a few FSDP-sharded causal steps over gloo (not a test module)."""

import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file
from train_micro import causal_stage

from worldplay.train.loop import LoopConfig, train
from worldplay.train.sharding import full, is_sharded


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    stage = causal_stage(out / f"latents{rank}")
    if rank == 0:
        save_file({k: v.clone() for k, v in stage.module.state_dict().items()}, str(out / "start.safetensors"))
    result = train(stage, out / "run", LoopConfig(steps=3, progress=False, sample_minutes=1e9, save_minutes=1e9,
                                                  fsdp=True))
    assert is_sharded(stage.module) and len(result.losses) == 3
    weights = full(stage.module.state_dict())                  # a collective: both ranks call it
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out / f"rank{rank}.safetensors"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
