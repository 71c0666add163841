"""Both stages with Lightning DDP on CPU, 2 processes (gloo): the ranks hold identical weights
after the steps, and a resumed run continues from the saved step. The same `--devices`,
`--num-nodes` and `--strategy ddp` flags run it on several GPUs or nodes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from maskgit_inpaint.config import preset
from maskgit_inpaint.model import MaskGIT

HELPER = Path(__file__).parent / "helpers" / "ddp_train.py"


def _train(stage, data, out, *extra):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(HELPER), stage, str(data), str(out), *map(str, extra)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _ranks(out):
    a, b = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    return a, b


def _identical(a, b):
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k


@pytest.fixture(scope="module")
def data(tmp_path_factory, tools):
    d = tmp_path_factory.mktemp("ddp_images")
    rng = np.random.default_rng(0)
    for i in range(16):
        tools.write_png(tools.synthetic_image(rng, 64), d / f"{i:02d}.png")
    return d


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    cfg = preset("tiny")
    cfg["transformer"] = None
    torch.manual_seed(0)
    return MaskGIT(cfg).save(tmp_path_factory.mktemp("ddp_tok"))


@pytest.mark.parametrize("stage", ["tokenizer", "transformer"])
def test_two_process_ddp_keeps_ranks_identical_and_resumes(stage, data, tok_dir, tmp_path):
    out = tmp_path / "run"
    r = _train(stage, data, out, tok_dir)
    assert "world_size=2" in (r.stdout + r.stderr) or "distributed_backend=gloo" in (r.stdout + r.stderr)
    a, b = _ranks(out)
    _identical(a, b)
    start = torch.load(out / "rank0.pt", weights_only=True)["state"]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    step = ckpt["global_step"]
    assert step == a["step"] > 0
    for k in ("rank0.pt", "rank1.pt"):
        (out / k).unlink()
    # the same rules as on one device: a second run into the directory is refused ...
    r = subprocess.run([sys.executable, str(HELPER), stage, str(data), str(out), str(tok_dir)], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode != 0 and "already holds a run" in r.stderr and "--overwrite" in r.stderr, r.stderr[-2000:]
    if stage == "transformer":  # ... and an unreadable last.ckpt falls back to the newest other checkpoint
        last = out / "checkpoints" / "last.ckpt"
        last.write_bytes(last.read_bytes()[:1000])
    r = _train(stage, data, out, "--resume")
    if stage == "transformer":
        assert "resuming from" in r.stderr and "best.ckpt at step 3 instead" in r.stderr, r.stderr[-2000:]
    a2, b2 = _ranks(out)
    _identical(a2, b2)
    assert a2["step"] == 2 * step  # 3 more steps of the module's own count, from where it stopped
    assert any(not torch.equal(start[k], a2["state"][k]) for k in start)
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["global_step"] \
        == a2["step"]
