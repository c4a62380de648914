"""Two processes, gloo backend on CPU: the same training code under DDP; ranks must agree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))


def _worker(rank: int, world: int, init_file: str, out: str, result_dir: str) -> None:
    import torch.distributed as dist

    from train_fixtures import LABELS, records, tiny_cfg
    from zimo.train import train_label

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        s = train_label(records(16), records(4), LABELS, tiny_cfg(max_steps=3), out)
        Path(result_dir, f"rank{rank}.json").write_text(json.dumps(s))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes each load gecko: ~20 s quiet, minutes on a busy 2-core box
def test_two_rank_gloo_ranks_agree(tmp_path):
    args = (2, str(tmp_path / "init"), str(tmp_path / "out"), str(tmp_path))
    mp.spawn(_worker, args=args, nprocs=2, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["steps"] == r1["steps"] == 3
    assert r0["weights_sha1"] == r1["weights_sha1"]  # identical weights on both ranks
    assert r0["final_loss"] == r1["final_loss"]
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()  # rank 0 wrote it
