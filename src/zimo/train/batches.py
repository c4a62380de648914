"""The rows a training run sees and the order it sees them in.

:class:`Example` is one pre-tokenised row; :func:`epoch_batches` fixes each epoch's batches as a
pure function of (seed, epoch), so a resumed run replays them; :class:`Batch` is a right-padded
batch with its loss index; :func:`shared_prefix` finds the prompt every row starts with, which
the loop computes once per batch instead of once per row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from zimo.infer.label import common_prefix


@dataclass
class Example:
    """One training row: ``ids`` and the positions whose next token is ``targets[i]``."""

    ids: list[int]
    pos: list[int]
    targets: list[int]
    group: int = 0  # label index for label tasks: batches mix groups (see epoch_batches)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)


def epoch_batches(
    lengths: Sequence[int],
    batch_size: int,
    seed: int,
    epoch: int,
    bucketing: bool,
    groups: Sequence[int] | None = None,
) -> list[list[int]]:
    """The batches of one epoch: a pure function of (seed, epoch), so a resume replays it.

    Bucketing groups rows of similar length so padding costs little. Rows are first cut into
    random pools of 16 batches; inside a pool each group (label) is sorted by length and dealt
    out in parallel, so batch *i* holds the i-th shortest slice of every label. A plain length
    sort would make batches label-homogeneous whenever length correlates with the label (spam
    SMS are longer than ham), and training then swings between "all ham" and "all spam".
    """
    rng = np.random.default_rng([seed, epoch])
    n = len(lengths)
    order = rng.permutation(n)
    if not bucketing:
        chunks = [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
        return [chunks[i] for i in rng.permutation(len(chunks))]
    lens = np.asarray(lengths)
    grp = np.zeros(n, dtype=int) if groups is None else np.asarray(groups)
    pool = batch_size * 16
    chunks = []
    for p in np.split(order, range(pool, n, pool)):
        nb = max(1, math.ceil(len(p) / batch_size))
        parts: list[list[int]] = [[] for _ in range(nb)]
        for g in np.unique(grp[p]):
            rows = p[grp[p] == g]
            rows = rows[np.argsort(lens[rows], kind="stable")]
            for b, piece in enumerate(np.array_split(rows, nb)):
                parts[b] += piece.tolist()
        chunks += [c for c in parts if c]
    return [chunks[i] for i in rng.permutation(len(chunks))]


class Batch:
    """Right-padded ids, mask, positions and the flat (row, col) loss index of a batch.

    With ``offset`` > 0 the rows' first ``offset`` tokens (a prompt prefix shared by every row)
    are left out: they come from a KV cache, and positions continue after them.
    """

    def __init__(self, rows: list[Example], pad_id: int, offset: int = 0):
        width = max(r.n_tokens for r in rows) - offset
        self.ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        self.mask = torch.zeros((len(rows), width), dtype=torch.long)
        r_idx, c_idx, tgt = [], [], []
        for i, r in enumerate(rows):
            n = r.n_tokens - offset
            self.ids[i, :n] = torch.tensor(r.ids[offset:])
            self.mask[i, :n] = 1
            r_idx += [i] * len(r.pos)
            c_idx += [p - offset for p in r.pos]
            tgt += r.targets
        self.offset = offset
        self.pos = torch.arange(offset, offset + width).unsqueeze(0).expand(len(rows), width)
        self.rows, self.cols = torch.tensor(r_idx), torch.tensor(c_idx)
        self.targets = torch.tensor(tgt)
        self.n_tokens = int(self.mask.sum()) + offset * len(rows)  # tokens of the rows themselves
        self.n_loss = len(tgt)
        self.lengths = [r.n_tokens - offset for r in rows]

    def to(self, device: torch.device) -> Batch:
        """Move the tensors to ``device`` (the model's; a no-op on the CPU)."""
        if device.type != "cpu":
            for k in ("ids", "mask", "pos", "rows", "cols", "targets"):
                setattr(self, k, getattr(self, k).to(device, non_blocking=True))
        return self

    def full_mask(self) -> torch.Tensor:
        """Attention mask over cached prefix + this batch's tokens."""
        if not self.offset:
            return self.mask
        ones = torch.ones(
            (self.mask.shape[0], self.offset), dtype=self.mask.dtype, device=self.mask.device
        )
        return torch.cat([ones, self.mask], dim=1)


def shared_prefix(examples: Sequence[Example], min_len: int = 4) -> int:
    """Tokens every row starts with (a label task's system prompt and instruction), stopping
    before the first trained position and leaving each row at least one token of its own.

    Those tokens are computed once per batch instead of once per row: for a label task the
    fixed prompt is often more than half of every row.
    """
    if not examples:
        return 0
    n = min(
        common_prefix([e.ids for e in examples]),
        min(e.n_tokens for e in examples) - 1,
        min(min(e.pos) for e in examples if e.pos),
    )
    return n if n >= min_len else 0


def micro_batches(
    train: Sequence[Example], batch_size: int, seed: int, bucketing: bool, start: int
) -> Iterator[tuple[int, int, list[int]]]:
    """Yield ``(global_micro_index, epoch, batch_indices)`` from micro-batch ``start`` on."""
    lengths = [e.n_tokens for e in train]
    groups = [e.group for e in train]
    per_epoch = math.ceil(len(train) / batch_size)
    k = start
    while True:
        epoch, i = divmod(k, per_epoch)
        batches = epoch_batches(lengths, batch_size, seed, epoch, bucketing, groups)
        for j in range(i, len(batches)):
            yield k, epoch, batches[j]
            k += 1
