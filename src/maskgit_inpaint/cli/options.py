"""What every command shares: one-line errors, and the flags derived from InpaintSettings."""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import fields

from ..config import default_model_dir, load_yaml
from ..settings import InpaintSettings


class CLIError(Exception):
    """An error to print as one line, with a non-zero exit."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _bundled_settings():
    """The bundled model's settings, shown as the defaults in --help (the class defaults without it)."""
    try:
        return InpaintSettings.from_config(load_yaml(default_model_dir() / "config.yaml"))
    except (OSError, ValueError):
        return InpaintSettings()


def _fmt(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _caster(f):
    """The parser of one settings field's value, from its type."""
    kind = str(f.type).replace(" ", "")
    if kind == "bool":
        return on_off
    if kind == "int|None":
        return optional_int
    return {"int": int, "float": float}.get(kind, str)


class _Deprecated(argparse.Action):
    """An old flag name: works as the new one, with a warning that names it."""

    def __init__(self, option_strings, dest, new: str = "", **kw):
        self.new = new
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated, use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


# old flag -> the field it set
DEPRECATED_FLAGS = {"--temperature": "choice_temperature", "--sample-temperature": "token_temperature"}


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help on one screen: one line per flag where the terminal allows."""
    return argparse.HelpFormatter(prog, max_help_position=30, width=min(110, shutil.get_terminal_size().columns))


def add_settings_args(p: argparse.ArgumentParser, sweep: bool = False, only: tuple[str, ...] | None = None,
                      sweep_defaults: dict | None = None) -> None:
    """One flag per InpaintSettings field (`only`: a subset), default None = the model's config,
    shown in brackets as the bundled model has it. With `sweep`, each takes a comma-separated
    list (a sweep axis)."""
    shown = _bundled_settings()
    common = p.add_argument_group("inpainting (default: the model's config; [the bundled model's])")
    rare = p.add_argument_group("more inpainting settings")
    sweep_defaults = sweep_defaults or {}
    for f in fields(InpaintSettings):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        group = common if f.metadata.get("common") or only else rare
        choices = f.metadata.get("choices")
        what = f.metadata["help"] + (f": {', '.join(map(str, choices))}" if choices else "")
        help_ = f"{what} [{_fmt(getattr(shown, f.name))}]".replace("%", "%%")
        if sweep:
            default = sweep_defaults.get(f.name)
            group.add_argument(flag, dest=f.name, metavar="LIST", default=default,
                               help=help_ + (f" (sweep: {default})" if default else ""))
        elif _caster(f) is on_off:
            group.add_argument(flag, dest=f.name, nargs="?", const=True, type=on_off, metavar="on|off", help=help_)
            group.add_argument("--no-" + flag[2:], dest=f.name, action="store_const", const=False,
                               help=argparse.SUPPRESS)
        else:
            metavar = "NAME" if choices else {"float": "X", "int": "N"}.get(str(f.type), "N")
            group.add_argument(flag, dest=f.name, type=_caster(f), choices=choices, help=help_, metavar=metavar)
    for old, name in DEPRECATED_FLAGS.items():
        if only is None or name in only:
            new = "--" + name.replace("_", "-")
            p.add_argument(old, dest=name, action=_Deprecated, new=new, help=argparse.SUPPRESS,
                           type=str if sweep else float)


class _HoleValue(argparse.Action):
    """The old --hole-value 0|255 flag: 0 (black = hole) is --invert-mask."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("warning: --hole-value is deprecated: masks are white = hole; use --invert-mask for black holes",
              file=sys.stderr)
        setattr(namespace, self.dest, values == 0)


def add_mask_args(p, regions: bool = False) -> None:
    """How masks are read (one rule for every command) and, with `regions`, which part of a large
    image the model sees."""
    p.add_argument("--invert-mask", action="store_true",
                   help="masks are black where the hole is (e.g. the course lab's); default: white = hole")
    p.add_argument("--hole-value", dest="invert_mask", type=int, choices=(0, 255), action=_HoleValue,
                   help=argparse.SUPPRESS)
    if regions:
        p.add_argument("--resize-mode", choices=("crop", "resize"), default="crop",
                       help="a large image: inpaint a square around the hole (crop) or the whole image "
                            "resized (resize) [crop]")
        p.add_argument("--crop-margin", type=int, metavar="PX",
                       help="pixels of context around the hole in crop mode [half the hole's size]")


def settings_from_args(args) -> dict:
    """The InpaintSettings fields given on the command line, by name (None = not given)."""
    return {n: getattr(args, n) for n in InpaintSettings.field_names() if getattr(args, n, None) is not None}


def sweep_axes(args) -> dict[str, list]:
    """Each settings field given as a comma-separated list: the sweep's axes."""
    axes = {}
    for f in fields(InpaintSettings):
        text = getattr(args, f.name, None)
        if text is not None:
            axes[f.name] = parse_list(text, _caster(f), "--" + f.name.replace("_", "-"))
    return axes


def optional_int(text: str) -> int | None:
    """An int, or none/all/off for "not set" (e.g. --guidance-steps all = every step)."""
    if str(text).strip().lower() in ("none", "all", "off", "t"):
        return None
    return int(text)


optional_int.__name__ = "integer (or none)"


def on_off(text: str) -> bool:
    """A boolean list item of the sweep: on/off, true/false, yes/no, 1/0."""
    t = text.strip().lower()
    if t in ("on", "true", "yes", "1"):
        return True
    if t in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"{text!r} is not on or off")


on_off.__name__ = "on/off value"  # what parse_list names in its error



def parse_list(text: str, cast, what: str) -> list:
    """A comma-separated list of `cast` values (a sweep axis); the error names the flag."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"{what}: empty list")
    out = []
    for t in items:
        try:
            out.append(cast(t))
        except ValueError:
            raise ValueError(f"{what}: {t!r} is not a valid {cast.__name__}") from None
    return out
