"""The `maskgit` command line: each subcommand is a thin layer over the pipeline, training and
experiments, and shares their one settings object. Parsing imports no torch: each command
imports what it needs when it runs, so `--help` and argument errors answer at once."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from .. import __version__
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
    """The package's progress messages and warnings (token cache, skipped files, a mask that is
    all hole, ...) go to stderr as one line each."""

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

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr, flush=True)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    from ..experiments import set_command

    set_command(["maskgit"] + (list(argv) if argv is not None else sys.argv[1:]))
    try:
        return int(args.func(args) or 0)
    # the package's own errors (bad input, model directory, weights, evaluation) are ValueErrors
    except (CLIError, FileNotFoundError, FileExistsError, ValueError) as e:
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
