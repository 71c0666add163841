"""Run by tests/test_kill_resume.py as `python pause_train.py MARKER POINT MASKGIT_ARGS...`: the
`maskgit` command line, which at POINT writes the file MARKER and then waits, so that the test
can kill it (SIGKILL) at exactly that point:

- `none`: never pauses (the uninterrupted reference run);
- `step:N`: before training step N (N steps done), i.e. between two steps;
- `save:N`: half-way through writing the first checkpoint of step N (half its bytes on disk).
"""
from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from maskgit_inpaint.cli import main
from maskgit_inpaint.training import callbacks, runs


def _pause(marker: Path, what: str) -> None:
    tmp = marker.with_suffix(".partial")
    tmp.write_text(what)
    os.replace(tmp, marker)
    time.sleep(600)  # the test kills this process long before
    sys.exit("pause_train.py: not killed")


def _run_step(pl_module, trainer) -> int:
    return int(getattr(pl_module, "step_count", trainer.global_step))  # stage 1 counts its own steps


class PauseAtStep(Callback):
    def __init__(self, marker: Path, step: int):
        self.marker, self.step = marker, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if _run_step(pl_module, trainer) == self.step:
            _pause(self.marker, f"step {self.step}")


def run(marker: Path, point: str, argv: list[str]) -> int:
    kind, _, n = point.partition(":")
    if kind == "step":
        real = runs._trainer

        def trainer_that_pauses(run_dir, t, cbs, *a, **kw):
            return real(run_dir, t, cbs + [PauseAtStep(marker, int(n))], *a, **kw)

        runs._trainer = trainer_that_pauses
    elif kind == "save":
        real_write = callbacks._write_checkpoint

        def write_half_then_pause(checkpoint, path):
            sd = checkpoint["state_dict"]
            step = int(sd["step_count"]) if "step_count" in sd else int(checkpoint["global_step"])
            if step != int(n):
                return real_write(checkpoint, path)
            buf = io.BytesIO()
            real_write(checkpoint, buf)
            data = buf.getvalue()
            with open(path, "wb") as f:
                f.write(data[:len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            _pause(marker, f"writing {path}")

        callbacks._write_checkpoint = write_half_then_pause
    elif kind != "none":
        raise SystemExit(f"unknown pause point {point!r}")
    return main(argv)


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
