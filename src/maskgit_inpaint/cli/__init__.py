"""The `maskgit` command line: each subcommand is a thin layer over the pipeline, training and
experiments, and shares their one settings object."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from ..checkpoints import WeightsError
from ..experiments import set_command
from ..images import InputError
from ..model import ModelDirError
from . import experiments, inpaint, train
from .options import CLIError

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maskgit", description="MaskGIT image inpainting: train, inpaint, evaluate.")
    p.add_argument("--version", action="version", version=f"maskgit-inpaint {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for module in (inpaint, train, experiments):
        module.register(sub)
    return p


def _setup_logging() -> None:
    """The package's progress messages (token cache, skipped files, ...) go to stderr."""

    class ToStderr(logging.Handler):
        # the stderr of the moment (not the one at set-up), so redirections and captures see it
        def emit(self, record):
            print(self.format(record), file=sys.stderr, flush=True)

    log = logging.getLogger("maskgit_inpaint")
    if not any(type(h).__name__ == "ToStderr" for h in log.handlers):
        h = ToStderr()
        h.setFormatter(logging.Formatter("maskgit: %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    set_command(["maskgit"] + (list(argv) if argv is not None else sys.argv[1:]))
    try:
        return int(args.func(args) or 0)
    except (CLIError, InputError, ModelDirError, WeightsError, FileNotFoundError, FileExistsError, ValueError) as e:
        if os.environ.get("MASKGIT_DEBUG"):
            raise
        msg = " ".join(str(e).split())  # one line, even for YAML's multi-line messages
        print(f"maskgit {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
