"""The ``odenets`` command line (also ``python -m odenets``).

Subcommands are modules of `odenets.commands`, found at start-up: a module there that defines

    HELP = "one line for `odenets --help`"
    ORDER = 50                       # optional: position in the help listing (low first)
    def add_parser(subparsers): ...  # returns subparsers.add_parser(NAME, ...) with its flags
    def run(args) -> int | None: ... # the exit status (None = 0)

is a subcommand named after the module (``bench.py`` -> ``odenets bench``; underscores become
dashes). Adding a subcommand is adding a file; nothing here changes. Command modules import
heavy dependencies inside ``run`` so that ``odenets --help`` stays fast.

Errors that are the user's (bad names or values, missing data, paths that cannot be written,
an optional package not installed, a diverged run) print one line, ``odenets CMD: error:
...``, and exit with status 2 (3 for a diverged run); set ODENETS_DEBUG=1 for the full
traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import commands


# file-system errors that are the user's (a --out or --run-dir that cannot be written)
PATH_ERRORS = (FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def subcommands() -> list:
    """The subcommand modules, sorted by (ORDER, name)."""
    mods = []
    for m in pkgutil.iter_modules(commands.__path__):
        if m.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{m.name}")
        if callable(getattr(mod, "add_parser", None)) and callable(getattr(mod, "run", None)):
            mods.append(mod)
    return sorted(mods, key=lambda mod: (getattr(mod, "ORDER", 50), mod.__name__))


def command_name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1].replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="odenets", description="Deep networks as numerical ODE solvers: train, inspect and "
        "compare ResNet / LM-ResNet / ... presets.",
        epilog="Run `odenets COMMAND --help` for the options of one command.")
    parser.add_argument("--version", action="version", version=f"odenets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in subcommands():
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


# exit status on a closed pipe (``odenets list | head``): 128 + SIGPIPE, as a shell reports a
# command that the signal killed (coreutils' ``seq 1 100000 | head`` exits so)
BROKEN_PIPE_STATUS = 141


def main(argv=None) -> int:
    """Run one subcommand; returns the exit status. A reader that closes the pipe early ends
    the command quietly with `BROKEN_PIPE_STATUS` (no traceback), following the recipe in
    Python's ``signal`` docs: stdout is pointed at devnull so the interpreter's last flush at
    exit does not fail again."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        return status
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor
            pass
        return BROKEN_PIPE_STATUS


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from solvers import DivergenceError

    from .train.epoch import TrainingDivergedError
    try:
        return args._run(args) or 0
    except KeyboardInterrupt:
        print(f"odenets {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # an OSError too: `main` ends the command quietly
        raise
    except (TrainingDivergedError, DivergenceError, ValueError, FileNotFoundError, *PATH_ERRORS,
            OSError, ImportError) as e:  # DivergenceError: a solver stopped (max_num_steps, NaN);
        # OSError: full disk; ImportError: an optional package (torchode, tensorboard) missing
        if os.environ.get("ODENETS_DEBUG"):
            raise
        print(f"odenets {args.command}: error: {e}", file=sys.stderr)
        return 3 if isinstance(e, (TrainingDivergedError, DivergenceError)) else 2


if __name__ == "__main__":
    sys.exit(main())
