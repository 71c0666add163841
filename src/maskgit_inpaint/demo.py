"""`maskgit demo`: inpaint the bundled samples with the default model and write a sheet."""
from __future__ import annotations

from pathlib import Path


def run_demo(out_dir: str | Path = "maskgit-demo", device: str = "auto") -> Path:
    from .cli import CLIError
    from .model import has_default_model

    if not has_default_model():
        raise CLIError("no default model is bundled yet: train one (`maskgit train-tokenizer`, `maskgit train`, "
                       "`maskgit export`) and run `maskgit inpaint --model MODEL_DIR`")
    raise CLIError("demo samples are not bundled yet")
