"""Configs: YAML presets shipped with the package, files, and dotted overrides."""
from __future__ import annotations

import copy
from dataclasses import fields
from importlib import resources
from pathlib import Path

import re

import yaml

from .settings import TOP_LEVEL

PRESETS = ("tiny", "small", "base")
# Pixel normalisation of a model's inputs: "default" maps [0, 1] to [-1, 1]; "lab" is the course
# lab's (ImageNet-like statistics of its training set).
NORMALIZATIONS = {
    "default": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "lab": {"mean": [0.4816, 0.4324, 0.3845], "std": [0.2602, 0.2518, 0.2537]},
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-4` as a float (YAML 1.1 insists on `1.0e-4`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def dataclass_from_dict(cls, d: dict | None, section: str):
    """The config dataclass `cls` from one section of a config, validated. Unknown keys are
    refused by name: a typo in config.yaml or a --set would otherwise fail inside the constructor."""
    d = dict(d or {})
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {section} config keys: {sorted(unknown)}")
    cfg = cls(**d)
    cfg.validate()
    return cfg


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    text = resources.files("maskgit_inpaint").joinpath(f"configs/{name}.yaml").read_text()
    return parse_yaml(text)


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; `update` wins."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings (value parsed as YAML) to a nested dict."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = cfg
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = parse_yaml(raw)
    return cfg


# How a model inpaints, as opposed to its architecture and training: a run started from a model
# directory (`--init`) keeps these unless its --config or --set change them.
INFERENCE_KEYS = ("sampler",) + TOP_LEVEL  # the keys of a config that say how a model inpaints


def inference_settings(model_dir: str | Path) -> dict:
    """The INFERENCE_KEYS of a model directory's config.yaml ({} when it has none: loading the
    model reports the missing file)."""
    path = Path(model_dir) / "config.yaml"
    if not path.is_file():
        return {}
    cfg = load_yaml(path)
    return {k: copy.deepcopy(cfg[k]) for k in INFERENCE_KEYS if cfg.get(k) is not None}


def resolve(preset_name: str | None = None, config_path: str | Path | None = None,
            overrides: list[str] | None = None, base: dict | None = None) -> dict:
    """preset, then `base` (e.g. the inference settings of an --init model), then config file,
    then overrides: the resolved config saved with every run."""
    cfg = preset(preset_name) if preset_name else {}
    if base:
        cfg = merge(cfg, base)
    if config_path:
        cfg = merge(cfg, load_yaml(config_path))
    return apply_overrides(cfg, overrides or [])


def default_model_dir() -> Path:
    """The pretrained model shipped inside the package."""
    return Path(str(resources.files("maskgit_inpaint").joinpath("default_model")))


def has_default_model() -> bool:
    d = default_model_dir()
    return (d / "config.yaml").is_file() and (d / "transformer.safetensors").is_file()
