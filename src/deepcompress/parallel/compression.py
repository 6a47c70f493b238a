"""Deep Compression's training stages, data-parallel: every rank runs the same pipeline as one `RankTeam`.

Each of N processes calls deepcompress.compress.compress_model with a RankTeam. Training (baseline,
every prune-retrain round, gradual pruning, centroid fine-tuning) goes through one DistributedDataParallel
wrapper on the rank's share of every global batch (RankShard), so the recipe's batch_size is the
global batch and N workers train like one process. Decisions are rank 0's: after every pruning the
masks, and after k-means the codebooks and assignments, are broadcast from rank 0, so no rank can keep
a mask or cluster of its own. Only rank 0 prints and writes checkpoints, stage files and the .dcz.
"""

from __future__ import annotations

import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..compress.pipeline import Team
from .data_parallel import RankShard


class RankTeam(Team):
    """This process as one rank of the initialised process group's compression run."""

    def __init__(self):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.writes = self.rank == 0
        self._ddp: DistributedDataParallel | None = None

    def wrap(self, model: nn.Module) -> nn.Module:
        """One DDP wrapper per model for the whole run (a second one would all-reduce every gradient twice)."""
        if self._ddp is None or self._ddp.module is not model:
            self._ddp = DistributedDataParallel(model)
        return self._ddp

    def shard(self) -> RankShard:
        """Positions rank, rank + world, ... of every global batch, loss weighted by the share."""
        return RankShard(self.rank, self.world)

    def share(self, value):
        """Rank 0's `value` on every rank (a collective: every rank must call it at the same point)."""
        box = [value if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]
