"""Callbacks: loss curve, reconstruction grid, throughput, checkpoints."""
from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import matplotlib
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

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
    """Checkpoint callbacks from a stage's training settings (`ckpt_every_steps`, `epoch_checkpoints`)."""
    ck = run_dir / "checkpoints"
    # one per epoch (kept: `maskgit fid-curve` evaluates each; `epoch_checkpoints: false` turns
    # them off for runs of hundreds of short epochs), plus the best by `monitor`;
    # saved after validation when there is a val split, at the end of the epoch otherwise
    epochs = [ModelCheckpoint(dirpath=ck, filename="epoch{epoch:04d}", auto_insert_metric_name=False,
                              save_top_k=-1, every_n_epochs=1)] if t["epoch_checkpoints"] else []
    return epochs + [
        # with a val split, only after a validation: a run stopped mid-epoch (max_steps, time budget)
        # has no val metric for its last weights, and Lightning would warn that the key is missing
        ModelCheckpoint(dirpath=ck, filename="best", monitor=monitor, mode="min", save_top_k=1,
                        auto_insert_metric_name=False, enable_version_counter=False,
                        save_on_train_epoch_end=False if monitor.startswith("val/") else None),
        # frequent `last.ckpt` so a killed run loses little (overwritten in place, never last-v1)
        ModelCheckpoint(dirpath=ck, save_last=True, save_top_k=0, every_n_train_steps=t["ckpt_every_steps"],
                        enable_version_counter=False),
        FinalCheckpoint(ck / "last.ckpt"),
    ]


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
                step = torch.load(str(self.path), map_location="cpu", weights_only=True).get("global_step")
            except Exception:
                pass
        # every rank takes rank 0's decision: saving is collective (it ends in a barrier)
        if trainer.strategy.broadcast(step == trainer.global_step, src=0):
            return
        trainer.save_checkpoint(str(self.path), weights_only=False)  # full: optimiser too, for --resume


