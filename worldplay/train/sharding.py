"""Fully sharded data parallel (FSDP2) for models too large to hold whole on every rank (`base`).

`worldplay train ... --fsdp` under torchrun shards the trained module with PyTorch's
`torch.distributed.fsdp.fully_shard`: each DiT block is its own unit (its parameters are
gathered just before the block runs and freed after), then the root holds the embeddings and the
head. Stages call `forward_full` / `forward_chunk`, not `forward`, so those are registered as
forward methods (`register_fsdp_forward_method`); otherwise the root's parameters would stay
sharded when they run. Gradients are reduce-scattered by FSDP itself, so the loop's explicit
all-reduce (plain data parallelism) is skipped. Checkpoints gather full tensors
(`DTensor.full_tensor`, a collective every rank joins) and rank 0 writes the same files a plain
run writes, so a sharded run exports, resumes and evaluates like any other.

With bf16, parameters are gathered in bf16 and gradients reduced in float32
(`MixedPrecisionPolicy`), the optimizer keeps float32 shards.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor, distribute_tensor

FORWARD_METHODS = ("forward_full", "forward_chunk", "memory_kv")   # the DiT's entry points besides forward


def shard_module(module: nn.Module, bf16: bool) -> nn.Module:
    """Shard `module` in place over the default process group (one unit per entry of a
    `blocks` list when it has one, then the root)."""
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for block in getattr(module, "blocks", []):
        fully_shard(block, mp_policy=policy)
    fully_shard(module, mp_policy=policy)
    for name in FORWARD_METHODS:
        if hasattr(module, name):
            register_fsdp_forward_method(module, name)
    return module


def is_sharded(module: nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in module.parameters())


def full(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Whole tensors from possibly sharded ones (a collective for DTensors: every rank calls it)."""
    return {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in tensors.items()}


def like(value: Tensor, ref: Tensor) -> Tensor:
    """`value`, a whole tensor, sharded the way `ref` is (unchanged when `ref` is not a DTensor)."""
    if not isinstance(ref, DTensor):
        return value
    return distribute_tensor(value.to(ref.device, ref.dtype), ref.device_mesh, ref.placements)
