"""DDP under torchrun: two CPU processes (gloo) train a tiny model on a tiny synthetic dataset."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from support.helpers import TINY, make_training_dataset

WORKER = textwrap.dedent("""
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from sice.training import load_config, train
    dataset, run_dir, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    r = train(dataset, run_dir, load_config(None, overrides), progress=False)
    rank = int(os.environ["RANK"])
    torch.save(r.model.state_dict(), os.path.join(run_dir, f"rank{rank}.weights"))
    with open(os.path.join(run_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"step": r.step, "wrote_checkpoint": r.last_checkpoint is not None,
                   "world": int(os.environ["WORLD_SIZE"])}, f)
""")


def test_two_cpu_processes_hold_identical_weights_and_learn(tmp_path):
    dataset = make_training_dataset(tmp_path / "data", n=8)
    run = tmp_path / "run"
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    overrides = TINY + ["run.steps=16", "run.log_every=4", "data.augment=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(worker), str(dataset), str(run), json.dumps(overrides)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    infos = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in infos] == [2, 2] and [i["step"] for i in infos] == [16, 16]
    # Rank 0 alone writes checkpoints and logs.
    assert [i["wrote_checkpoint"] for i in infos] == [True, False]
    w0 = torch.load(run / "rank0.weights", weights_only=True)
    w1 = torch.load(run / "rank1.weights", weights_only=True)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    saved = torch.load(run / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], w0[k]) for k in w0)
    losses = [float(r["loss"]) for r in csv.DictReader(open(run / "train_log.csv"))]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0]
    # The sampler shards the data: 6 training scenes (0.7 x 8) x 3 under-exposed frames = 18
    # pairs, 9 per rank, so 4 steps of batch 2 per epoch (not 9, as one process would have).
    rows = list(csv.DictReader(open(run / "train_log.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
