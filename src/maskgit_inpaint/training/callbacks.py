"""Callbacks: loss curve, reconstruction grid, throughput, checkpoints."""
from __future__ import annotations

import csv
import logging
import random
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..checkpoints import atomic_write
from ..images import save_png

log = logging.getLogger("maskgit_inpaint")


class LossCurve(Callback):
    """Redraws RUN/loss_curve.png from the CSV log after every validation."""

    def __init__(self, run_dir: Path, keys: tuple[str, ...]):
        self.run_dir, self.keys = Path(run_dir), keys

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        try:
            plot_loss_curve(self.run_dir, self.keys)
        except Exception as e:  # a figure must never stop training
            log.warning("loss curve not drawn: %s", e)


def read_metrics(run_dir: Path) -> list[dict]:
    rows = []
    for f in sorted(Path(run_dir, "logs").rglob("metrics.csv")):
        with open(f) as fh:
            rows += list(csv.DictReader(fh))
    return rows


def plot_loss_curve(run_dir: Path, keys: tuple[str, ...]) -> Path:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the backend: no display here

    rows = read_metrics(run_dir)
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        pts = [(int(r["step"]), float(r[k])) for r in rows if r.get(k) not in (None, "")]
        if pts:
            xs, ys = zip(*sorted(pts))
            ax.plot(xs, ys, label=k, marker="o" if k.startswith("val") else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    else:  # a run stopped before its first logged step
        ax.text(0.5, 0.5, f"no {' / '.join(keys)} logged yet", ha="center", va="center", transform=ax.transAxes)
    out = Path(run_dir) / "loss_curve.png"
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return out


class ReconGrid(Callback):
    """Saves originals over reconstructions of the first val images after each validation."""

    def __init__(self, run_dir: Path, images: torch.Tensor):
        self.run_dir, self.images = Path(run_dir), images

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.global_rank != 0 or self.images is None:
            return
        x = self.images.to(pl_module.device)
        xr = pl_module.vqgan(x)[0].float()
        mean, std = pl_module._norm(x)
        both = torch.cat([x * std + mean, xr * std + mean]).clamp(0, 1)
        n = len(x)
        grid = both.reshape(2, n, 3, *x.shape[2:]).permute(0, 3, 1, 4, 2).reshape(2 * x.shape[2], n * x.shape[3], 3)
        save_png((grid * 255).round().byte().cpu().numpy(), self.run_dir / "recon" / f"epoch{trainer.current_epoch:04d}.png")


class StepTimer(Callback):
    """Logs images/s so throughput is visible in the logs and progress bar."""

    def __init__(self):
        self.t0, self.n = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.t0 is None:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.n += len(x)
        dt = time.perf_counter() - self.t0
        if dt > 5:
            pl_module.log("img_per_s", self.n / dt, prog_bar=True)
            self.t0, self.n = time.perf_counter(), 0



def _checkpoints(run_dir: Path, monitor: str, t: dict) -> list[Callback]:
    """Checkpoint callbacks from a stage's training settings: `last.ckpt` (what --resume takes)
    every `ckpt_every_minutes`, every `ckpt_every_steps` and at each epoch end; `best.ckpt` by
    `monitor`; and the newest `keep_checkpoints` epoch checkpoints (`epoch_checkpoints`)."""
    ck = run_dir / "checkpoints"
    # saved after validation when there is a val split, at the end of the epoch otherwise;
    # `maskgit fid-curve` evaluates the ones kept
    keep = t["keep_checkpoints"]
    epochs = [ModelCheckpoint(dirpath=ck, filename="epoch{epoch:04d}", auto_insert_metric_name=False,
                              monitor="epoch", mode="max", save_top_k=keep, every_n_epochs=1,
                              enable_version_counter=False)] \
        if t["epoch_checkpoints"] and keep != 0 else []
    # `last.ckpt`, refreshed in place (never last-v1): at each epoch end the newest checkpoint kept
    # under that name (Lightning's `save_last` writes only beside a checkpoint saved at the same
    # step, so it would miss epoch ends), and on the clock and every N steps
    lasts = [ModelCheckpoint(dirpath=ck, filename="last", save_top_k=1, enable_version_counter=False,
                             every_n_epochs=1),
             PeriodicCheckpoint(ck / "last.ckpt", t["ckpt_every_steps"], t["ckpt_every_minutes"])]
    return epochs + [
        # with a val split, only after a validation: a run stopped mid-epoch (max_steps, time budget)
        # has no val metric for its last weights, and Lightning would warn that the key is missing
        ModelCheckpoint(dirpath=ck, filename="best", monitor=monitor, mode="min", save_top_k=1,
                        auto_insert_metric_name=False, enable_version_counter=False,
                        save_on_train_epoch_end=False if monitor.startswith("val/") else None),
        *lasts,
        FinalCheckpoint(ck / "last.ckpt"),
        RngState(),
    ]


class PeriodicCheckpoint(Callback):
    """Refreshes `path` (last.ckpt) every `every_steps` steps of the run's own count and every
    `every_minutes` of training, after an optimiser step (never inside an accumulation). Not
    ModelCheckpoint's triggers: they count optimiser steps (two per step in stage 1) and ignore
    the time interval under manual optimisation (stage 1)."""

    def __init__(self, path: Path, every_steps: int, every_minutes: float):
        self.path, self.every_steps, self.every_s = Path(path), every_steps, every_minutes * 60
        self._t0, self._prev = time.monotonic(), None

    def on_train_start(self, trainer, pl_module):
        self._t0, self._prev = time.monotonic(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self._prev:  # inside a gradient accumulation: nothing stepped
            return
        self._prev = trainer.global_step
        step = int(getattr(pl_module, "step_count", trainer.global_step))
        due = self.every_steps > 0 and step % self.every_steps == 0
        if self.every_s > 0:  # rank 0's clock decides: saving is collective
            due = trainer.strategy.broadcast(due or time.monotonic() - self._t0 >= self.every_s, src=0)
        if due:
            trainer.save_checkpoint(str(self.path))
            self._t0 = time.monotonic()


def _write_checkpoint(checkpoint: dict, path: str) -> None:
    """The one place a checkpoint's bytes are written (tests pause a run in the middle of it)."""
    torch.save(checkpoint, path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with every file written to a temporary name, flushed to disk and
    then renamed: a run killed at any moment leaves each checkpoint either whole or as before."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_write(path, lambda tmp: _write_checkpoint(checkpoint, tmp))


class RngState(Callback):
    """Keeps the global RNG states (torch, CUDA, numpy, random) in each checkpoint and puts them
    back when training resumes, so the masks, dropout and code revivals after a resume are the
    ones the uninterrupted run draws."""

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, py_state, py_gauss = random.getstate()
        state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
                 "numpy_rest": [int(pos), int(has_gauss), float(gauss)],
                 "python": [version, list(py_state), py_gauss]}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module):
        s, self._pending = self._pending, None
        if not s:
            return
        torch.set_rng_state(s["torch"])
        pos, has_gauss, gauss = s["numpy_rest"]
        np.random.set_state(("MT19937", s["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, py_state, py_gauss = s["python"]
        random.setstate((version, tuple(py_state), py_gauss))
        if "cuda" in s and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(s["cuda"])


class StepLimit(Callback):
    """Stops the run after `total_steps` steps of its own count (stage 1 counts its own steps: two
    optimisers make `global_step` count double). Lightning is given no step limit: with one it
    restarts a run resumed from an epoch-end checkpoint one epoch further on, and the data order
    after the resume would no longer be the uninterrupted run's."""

    def __init__(self, total_steps: int = -1):
        self.total_steps = total_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if 0 < self.total_steps <= int(getattr(pl_module, "step_count", trainer.global_step)):
            trainer.should_stop = True


class StepProgressBar(TQDMProgressBar):
    """Lightning's bar with the run's length: "Epoch e/last" and the step out of the total (stage
    1 counts its own steps: two optimisers make `global_step` count double); the last epoch's
    bar ends where the run does. `training/runs.py` sets the totals once they are known."""

    def __init__(self, total_steps: int = -1, epochs: int = -1, accumulate: int = 1):
        super().__init__()
        self.total_steps, self.epochs, self.accumulate = total_steps, epochs, accumulate

    @staticmethod
    def _step(trainer, pl_module) -> int:
        return int(getattr(pl_module, "step_count", trainer.global_step))

    def on_train_epoch_start(self, trainer, pl_module):
        super().on_train_epoch_start(trainer, pl_module)
        if self.epochs > 0:
            self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch}/{self.epochs - 1}")
        left = (self.total_steps - self._step(trainer, pl_module)) * self.accumulate
        if self.total_steps > 0 and 0 < left < (self.train_progress_bar.total or 0):
            self.train_progress_bar.total = left

    def get_metrics(self, trainer, pl_module):
        step = self._step(trainer, pl_module)
        return {"step": f"{step}/{self.total_steps}", **super().get_metrics(trainer, pl_module)}


class FinalCheckpoint(Callback):
    """Writes `last.ckpt` at the very end when the periodic one is older: a run stopped by
    max_steps mid-epoch must still leave its final weights for export and resume."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_end(self, trainer, pl_module):
        if trainer.global_step == 0:
            return
        step = None
        if trainer.global_rank == 0 and self.path.is_file():
            try:
                step = torch.load(str(self.path), map_location="cpu", weights_only=True, mmap=True).get("global_step")
            except Exception:
                pass
        # every rank takes rank 0's decision: saving is collective (it ends in a barrier)
        if trainer.strategy.broadcast(step == trainer.global_step, src=0):
            return
        trainer.save_checkpoint(str(self.path), weights_only=False)  # full: optimiser too, for --resume


