"""Run by tests/test_ddp.py as `python ddp_train.py STAGE DATA OUT [TOKENIZER_DIR] [--resume]` with
Lightning DDP on CPU (2 processes, gloo). Lightning re-runs this script for rank 1. Each rank
saves its weights at the end to OUT/rank{R}.pt so the test can compare them."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from maskgit_inpaint.config import merge, preset
from maskgit_inpaint.training import runs, train_tokenizer, train_transformer


class SaveRankWeights(Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"state": state, "step": trainer.global_step}, self.out / f"rank{trainer.global_rank}.pt")


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--resume"]
    resume = "--resume" in sys.argv
    stage, data, out = args[0], args[1], Path(args[2])
    steps = 6 if resume else 3
    real = runs._trainer

    def trainer_with_dump(run_dir, t, callbacks, *a, **kw):
        return real(run_dir, t, callbacks + [SaveRankWeights(out)], *a, **kw)

    runs._trainer = trainer_with_dump
    dist = {"devices": 2, "strategy": "ddp", "precision": "32-true", "log_every": 1, "warmup_steps": 1,
            "max_steps": steps, "ckpt_every_steps": 1, "batch_size": 4, "epoch_checkpoints": False}
    base = merge(preset("tiny"), {"data": {"train": data, "val_fraction": 0.0}})
    if stage == "tokenizer":
        cfg = merge(base, {"tokenizer_training": {**dist, "disc_start": 0, "gan_weight": 0.1, "disc_channels": 8,
                                                  "disc_layers": 1, "ema_decay": 0.9,
                                                  "revive_every": 2}})  # vq: dead codes revived
        train_tokenizer(cfg, out, resume=resume, accelerator="cpu")
    else:
        cfg = merge(base, {"transformer_training": {**dist, "flip": False}})
        train_transformer(cfg, out, None if resume else args[3], resume=resume, accelerator="cpu")


if __name__ == "__main__":
    main()
