"""Retrieval: the memory patches a set of target views should see, within a token budget.

Pipeline: frustum test and projection of every entry into each target's token grid, a
footprint z-buffer per cell (occluded patches are dropped: an entry is visible only within
`occlusion_tol` of the nearest surface in its cell), then a ranking that fills the budget
coverage-first (the best entry of every cell before any cell's second) by
visibility + view-angle similarity + recency - dynamic-ness.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.memory.config import MemoryConfig
from worldplay.memory.splat import Candidates, as_targets, project_candidates, zbuffer
from worldplay.memory.store import EntryStore, intr_to_K


@dataclass
class MemoryBatch:
    """Retrieved memory tokens, most important first (rows past `valid` are padding).

    For the DiT, a memory token's RoPE position is (time of target view `target`, pos_yx) and its
    PRoPE camera is (src_c2w, src_K): it sits where it belongs in the view being generated, seen
    by the camera that actually observed it.
    """
    features: Tensor   # (N, D) float32
    pos_yx: Tensor     # (N, 2) fractional (y, x) in the target token grid (Warped RoPE positions)
    target: Tensor     # (N,) long: which target view the position refers to
    src_c2w: Tensor    # (N, 4, 4) camera that saw the patch (PRoPE camera of the memory token)
    src_K: Tensor      # (N, 3, 3) that camera's full-res intrinsics
    times: Tensor      # (N,) float64 seconds when it was seen
    depth: Tensor      # (N,) z-depth in the target view
    valid: Tensor      # (N,) bool
    ids: Tensor        # (N,) long entry id (-1 for padding)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to(self, device) -> "MemoryBatch":
        return MemoryBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _rank_scores(store: EntryStore, cfg: MemoryConfig, c: Candidates, zmin_own: Tensor,
                 cam_centres: Tensor) -> Tensor:
    vis = (1.0 - (c.z - zmin_own) / (cfg.occlusion_tol * zmin_own)).clamp(0.0, 1.0)
    centre = store.centre.index_select(0, c.ids)                              # (n, 3)
    tgt_dir = F.normalize(centre - cam_centres.index_select(0, c.target), dim=-1)
    angle = 0.5 * (1.0 + (store.vdir.index_select(0, c.ids) * tgt_dir).sum(-1))  # 1 = same direction
    age = (store.now - store.time.index_select(0, c.ids)).clamp_min(0.0).float()
    recency = torch.exp(-age / cfg.recency_tau)
    return (cfg.rank_visibility * vis + cfg.rank_angle * angle + cfg.rank_recency * recency
            - cfg.rank_dynamic * store.dynamic.index_select(0, c.ids))


def _best_per(group: Tensor, score: Tensor, n_groups: int, among: Tensor) -> Tensor:
    """For each group present in `among` (indices), the index with the highest score (ties: the
    highest index). Returns the chosen indices, in increasing order."""
    g, sc = group[among], score[among]
    best = torch.full((n_groups,), -float("inf"), device=score.device).scatter_reduce(0, g, sc, reduce="amax")
    top = among[sc >= best[g]]
    pick = torch.full((n_groups,), -1, dtype=torch.long, device=score.device)
    pick = pick.scatter_reduce(0, group[top], top, reduce="amax")
    return pick[pick >= 0].sort().values


def _coverage_select(group: Tensor, score: Tensor, n_groups: int, budget: int) -> Tensor:
    """Up to `budget` indices, coverage first: every group's best before any group's second
    (tiers), by score within a tier. Each tier is one scatter pass, no sort of all candidates."""
    remaining = torch.arange(group.numel(), device=group.device)
    chosen = []
    need = budget
    while need > 0 and remaining.numel():
        tier = _best_per(group, score, n_groups, remaining)
        tier = tier[torch.argsort(-score[tier], stable=True)][:need]
        chosen.append(tier)
        need -= tier.numel()
        taken = torch.zeros(group.numel(), dtype=torch.bool, device=group.device)
        taken[tier] = True
        remaining = remaining[~taken[remaining]]
    return torch.cat(chosen) if chosen else remaining[:0]


def retrieve(store: EntryStore, cfg: MemoryConfig, c2w: Tensor, K: Tensor, budget: int, *,
             min_age: float | None = None, unique_entries: bool = True, pad: bool = False) -> MemoryBatch:
    """Visible memory for target poses c2w (T, 4, 4) or (4, 4); K full-res (3, 3) or (T, 3, 3).

    At most `budget` rows in total. unique_entries: an entry seen by several targets is
    returned once, for the target where it ranks best. pad: pad to exactly `budget` rows.
    """
    if budget < 0:
        raise WorldplayError(f"memory: retrieval budget must be >= 0, got {budget}")
    c2w, K = as_targets(c2w, K)
    grid = cfg.grid_hw
    n_cells = c2w.shape[0] * grid[0] * grid[1]
    c = project_candidates(store, cfg, c2w, K, grid, cfg.min_age if min_age is None else min_age)
    sel = torch.zeros(0, dtype=torch.long, device=store.device)
    if len(c) and budget:
        zmin, _ = zbuffer(c, c2w.shape[0], grid, cfg.max_footprint)
        zown = zmin[c.cell]
        visible = (c.z <= zown * (1.0 + cfg.occlusion_tol)).nonzero()[:, 0]
        c = Candidates(**{f.name: getattr(c, f.name)[visible] for f in fields(c)})
        score = _rank_scores(store, cfg, c, zown[visible], c2w[:, :3, 3].to(store.device))
        keep = torch.arange(len(c), device=store.device)
        if unique_entries and c2w.shape[0] > 1:
            keep = _best_per(c.ids, score, store.n_used, keep)
        sel = keep[_coverage_select(c.cell[keep], score[keep], n_cells, budget)]
    ids = c.ids[sel]
    batch = MemoryBatch(
        features=store.feat[ids].float(), pos_yx=torch.stack([c.gy[sel], c.gx[sel]], dim=-1),
        target=c.target[sel], src_c2w=store.c2w[ids], src_K=intr_to_K(store.intr[ids]),
        times=store.time[ids], depth=c.z[sel], valid=torch.ones_like(ids, dtype=torch.bool), ids=ids)
    return pad_batch(batch, budget, K[0].to(store.device)) if pad else batch


def pad_batch(b: MemoryBatch, budget: int, K: Tensor) -> MemoryBatch:
    """Pad to `budget` rows: zero features, identity cameras, valid False, id -1."""
    m = budget - len(b)
    if m <= 0:
        return b
    dev = b.features.device

    def grow(x: Tensor, fill: Tensor) -> Tensor:
        return torch.cat([x, fill.to(x.dtype).expand(m, *x.shape[1:])], dim=0)

    return MemoryBatch(
        features=grow(b.features, torch.zeros(1, device=dev)), pos_yx=grow(b.pos_yx, torch.zeros(1, device=dev)),
        target=grow(b.target, torch.zeros(1, device=dev)), src_c2w=grow(b.src_c2w, torch.eye(4, device=dev)),
        src_K=grow(b.src_K, K.float()), times=grow(b.times, torch.zeros(1, device=dev)),
        depth=grow(b.depth, torch.zeros(1, device=dev)), valid=grow(b.valid, torch.zeros(1, device=dev)),
        ids=grow(b.ids, torch.full((1,), -1, device=dev)))
