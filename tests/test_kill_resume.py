"""`kill -9` of a training command at three points, each followed by `--resume`, in both stages:
before the first checkpoint, in the middle of an epoch (after a periodic save) and in the middle
of writing a checkpoint; then last.ckpt made unreadable, so the last resume falls back to the
newest other checkpoint. The run must end at exactly --max-steps with the weights, optimiser
state and LR schedule of the same run never interrupted (same seed), leave no half-written or
temporary file behind, and keep at most last + best + keep_checkpoints (3) checkpoint files.

The kills are deterministic: tests/helpers/pause_train.py runs the real command line and, at the
chosen point, writes a marker file and waits; the test SIGKILLs the process when the marker
appears. 16 training images of 32x32, batch 4: 4 steps per epoch, epochs end at steps 4, 8, 12;
last.ckpt is also refreshed every 3 steps."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from maskgit_inpaint.config import preset
from maskgit_inpaint.model import MaskGIT

HELPER = Path(__file__).parent / "helpers" / "pause_train.py"
STEPS = 14
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _write_images(folder: Path, n: int, tools, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(n):
        tools.write_png(tools.synthetic_image(rng, 32), folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory, tools):
    root = tmp_path_factory.mktemp("kill_data")
    cfg = preset("tiny")
    cfg["image_size"] = 32
    cfg["tokenizer"]["image_size"] = 32
    cfg["transformer"] = None
    torch.manual_seed(0)
    return {"train": _write_images(root / "train", 16, tools, 0), "val": _write_images(root / "val", 2, tools, 1),
            "tok": MaskGIT(cfg).save(root / "tok")}


def _args(stage: str, data: dict, out: Path, *extra: str) -> list[str]:
    sec = f"{stage}_training"
    common = ["--data", str(data["train"]), "--val", str(data["val"]), "--out", str(out), "--preset", "tiny",
              "--max-steps", str(STEPS), "--batch-size", "4", "--accelerator", "cpu",
              "--set", f"{sec}.precision=32-true", "--set", f"{sec}.log_every=1", "--set", f"{sec}.warmup_steps=2",
              "--set", f"{sec}.ckpt_every_steps=3"]
    if stage == "tokenizer":
        # the GAN from step 0 (two optimisers) and dead codes revived from the RNG
        return ["train-tokenizer", *common, "--set", "tokenizer.image_size=32", "--set", f"{sec}.disc_start=0",
                "--set", f"{sec}.disc_channels=8", "--set", f"{sec}.disc_layers=1", "--set", f"{sec}.revive_every=5",
                *extra]
    return ["train", *common, "--tokenizer", str(data["tok"]), "--set", f"{sec}.flip=false", *extra]


def _start(marker: Path, point: str, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HELPER), str(marker), point, *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_at(marker: Path, point: str, args: list[str]) -> str:
    """Runs the command until it pauses at `point`, SIGKILLs it; returns its stderr."""
    marker.unlink(missing_ok=True)
    proc = _start(marker, point, args)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    err = proc.communicate()[1]
    assert alive and marker.exists(), f"never reached {point}:\n{err[-3000:]}"
    return err


def _finish(args: list[str]) -> str:
    r = subprocess.run([sys.executable, str(HELPER), "-", "none", *args], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stderr


def _load(path: Path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=True)  # raises on a half-written file


def _step(ck: dict) -> int:
    sd = ck["state_dict"]
    return int(sd["step_count"]) if "step_count" in sd else int(ck["global_step"])


def _checkpoints(run: Path) -> dict[str, int]:
    return {p.name: _step(_load(p)) for p in sorted((run / "checkpoints").glob("*.ckpt"))}


@pytest.mark.parametrize("stage", ["tokenizer", "transformer"])
def test_kill_9_at_three_points_then_resume_equals_an_uninterrupted_run(stage, data, tmp_path):
    ref_run, run, marker = tmp_path / "straight", tmp_path / "killed", tmp_path / "paused"
    # the reference run, beside the killed ones (the machine has two cores)
    ref = _start(tmp_path / "never", "none", _args(stage, data, ref_run))

    # 1. before the first save: nothing to resume from, so --resume starts again at step 0
    _kill_at(marker, "step:2", _args(stage, data, run))
    assert not list((run / "checkpoints").glob("*.ckpt"))
    # 2. in the middle of the second epoch (steps 4-7), after the periodic save at step 6
    err = _kill_at(marker, "step:7", _args(stage, data, run, "--resume"))
    assert "starts again from step 0" in err
    assert _checkpoints(run)["last.ckpt"] == 6
    # 3. half-way through writing the periodic checkpoint of step 9
    err = _kill_at(marker, "save:9", _args(stage, data, run, "--resume"))
    assert re.search(r"resuming \S+ from \S+last\.ckpt at step 6", err), err[-2000:]
    ck = run / "checkpoints"
    assert list(ck.glob(".*.tmp")), "the kill should have hit the write of a temporary file"
    held = _checkpoints(run)  # every file under a checkpoint name loads: the write never reached one
    assert held["last.ckpt"] == 8 and held["epoch0001.ckpt"] == 8
    # 4. last.ckpt damaged (e.g. a disk that filled up): the newest other checkpoint is taken
    (ck / "last.ckpt").write_bytes((ck / "last.ckpt").read_bytes()[:1000])
    err = _finish(_args(stage, data, run, "--resume"))
    assert re.search(r"last\.ckpt is unreadable.*resuming from \S+epoch0001\.ckpt at step 8 instead", err), \
        err[-2000:]

    assert ref.wait(timeout=300) == 0, ref.stderr.read()[-3000:]
    a, b = _load(ref_run / "checkpoints" / "last.ckpt"), _load(ck / "last.ckpt")
    assert _step(a) == _step(b) == STEPS
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k].float(), b["state_dict"][k].float(), atol=1e-6, rtol=1e-5), k
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert oa["state"].keys() == ob["state"].keys()
        for i in oa["state"]:
            for k, v in oa["state"][i].items():
                assert torch.allclose(v.float(), ob["state"][i][k].float(), atol=1e-7, rtol=1e-4), (i, k)
    for sa, sb in zip(a["lr_schedulers"], b["lr_schedulers"], strict=True):
        assert sa["last_epoch"] == sb["last_epoch"] and sa["_last_lr"] == pytest.approx(sb["_last_lr"])
    # nothing half-written or temporary left; the same files as the uninterrupted run
    assert not list(ck.glob("*.tmp"))
    assert _checkpoints(run) == _checkpoints(ref_run)
    # (stopping in epoch 3 ends it with a validation and its checkpoint; 3 epoch files are kept)
    assert sorted(_checkpoints(run)) == ["best.ckpt", "epoch0001.ckpt", "epoch0002.ckpt", "epoch0003.ckpt",
                                         "last.ckpt"]
