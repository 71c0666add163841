"""`kill -9` in the middle of training, then `--resume`: no checkpoint is ever half-written (each
one on disk loads, whatever moment the kill hit) and the resumed run ends at the same step count
as one that was never killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from maskgit_inpaint.config import preset
from maskgit_inpaint.model import MaskGIT

STEPS = 40


def _cmd(data, tok, out, *extra):
    return [sys.executable, "-m", "maskgit_inpaint", "train", "--data", str(data), "--tokenizer", str(tok),
            "--out", str(out), "--preset", "tiny", "--max-steps", str(STEPS), "--batch-size", "4",
            "--accelerator", "cpu", "--set", "data.val_fraction=0", "--set", "transformer_training.ckpt_every_steps=1",
            "--set", "transformer_training.precision=32-true", *extra]


def _step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception:
        return None


def _all_checkpoints_load(run: Path) -> None:
    ckpts = sorted((run / "checkpoints").glob("*.ckpt"))
    assert ckpts
    for p in ckpts:
        ck = torch.load(p, map_location="cpu", weights_only=False)  # raises on a half-written file
        assert "state_dict" in ck and "optimizer_states" in ck, p


def test_kill_9_then_resume_reaches_the_same_step(tools, tmp_path):
    data = tmp_path / "images"
    rng = np.random.default_rng(0)
    for i in range(16):
        tools.write_png(tools.synthetic_image(rng), data / f"{i:02d}.png")
    cfg = preset("tiny")
    cfg["transformer"] = None
    torch.manual_seed(0)
    tok = MaskGIT(cfg).save(tmp_path / "tok")
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    last = run / "checkpoints" / "last.ckpt"
    killed_at = []
    for cycle, wait_steps in enumerate((3, 4)):
        extra = ("--resume",) if cycle else ()
        proc = subprocess.Popen(_cmd(data, tok, run, *extra), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        start = _step(last) or 0 if last.exists() else 0
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            s = _step(last) if last.exists() else None
            if s is not None and s >= start + wait_steps:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(0.02 * cycle)  # another phase of the step, more likely in the middle of a save
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at.append(_step(last))
        _all_checkpoints_load(run)
    assert all(s is not None and 0 < s < STEPS for s in killed_at)
    r = subprocess.run(_cmd(data, tok, run, "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    _all_checkpoints_load(run)
    assert _step(last) == STEPS
    assert not list((run / "checkpoints").glob("*.tmp"))
