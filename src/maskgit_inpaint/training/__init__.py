"""Training both stages with Lightning (precision, accumulation, checkpointing, DDP, logging).

A run directory holds `config.yaml` (the resolved config), `checkpoints/` (last, best and the
newest `keep_checkpoints` epoch ones), `logs/` (TensorBoard and CSV), `loss_curve.png` and, for
the tokenizer, `recon/`.
"""
from .callbacks import FinalCheckpoint, LossCurve, ReconGrid, StepTimer, plot_loss_curve, read_metrics
from .config import (DATA, TokenizerTraining, TransformerTraining, default_precision, run_length, training_config,
                     warmup_cosine)
from .export import export_decoder_parts, export_run, find_checkpoint, load_checkpoint_state, model_from_checkpoint
from .losses import PatchDiscriminator
from .runs import load_run_config, save_run_config, train_tokenizer, train_transformer
from .stage1 import TokenizerModule
from .stage2 import TransformerModule, context_inputs, inpaint_mask_bank, mvtm_mask

__all__ = ["DATA", "FinalCheckpoint", "LossCurve", "PatchDiscriminator", "ReconGrid", "StepTimer", "TokenizerModule",
           "TokenizerTraining", "TransformerModule", "TransformerTraining", "context_inputs", "default_precision",
           "export_decoder_parts", "export_run", "find_checkpoint", "inpaint_mask_bank", "load_checkpoint_state", "load_run_config",
           "model_from_checkpoint", "mvtm_mask", "plot_loss_curve", "read_metrics", "run_length", "save_run_config",
           "train_tokenizer", "train_transformer", "training_config", "warmup_cosine"]
