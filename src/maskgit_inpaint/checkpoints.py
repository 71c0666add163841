"""Weight files: atomic writes, safetensors, and strict loading with one readable error."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn


class WeightsError(ValueError):
    """A weights file does not fit the model it is loaded into (or cannot be read)."""


def atomic_write(path: str | Path, write) -> None:
    """Call `write(tmp_path)` and move the result to `path` only when it succeeded, so a
    crash never leaves a half-written file under the final name. The bytes reach the disk
    before the rename, so a power cut cannot leave an empty file under that name either."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_safetensors(state_dict: dict, path: str | Path, dtype: torch.dtype | None = None) -> None:
    from safetensors.torch import save_file

    sd = {}
    for k, v in state_dict.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        sd[k] = v.contiguous().clone()
    atomic_write(path, lambda tmp: save_file(sd, tmp))


def load_safetensors(path: str | Path) -> dict:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None


def load_torch_state_dict(path: str | Path) -> dict:
    """A plain state dict saved with torch.save, loaded without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path}: cannot be loaded as a weights-only torch checkpoint ({e})") from None
    for key in ("state_dict", "model", "model_state_dict", "transformer"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_strict(module: nn.Module, state_dict: dict, source: str | Path) -> None:
    """Load every tensor or fail with one error that lists every missing, unexpected and
    wrongly shaped key."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if items:
                shown = ", ".join(items[:20]) + (f", ... ({len(items)} in all)" if len(items) > 20 else "")
                parts.append(f"{label}: {shown}")
        raise WeightsError(f"{source}: does not match the model configuration; " + "; ".join(parts))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()}, strict=True)
