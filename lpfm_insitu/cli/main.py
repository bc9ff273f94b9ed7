"""The ``lpfm`` command line: the parser of every subcommand, and how errors end a run.

Each subcommand is a module of this package with ``add_parser(subparsers)`` and
``run(args)``. The modules import their heavy libraries (torch, the model, ASE, h5py,
LAMMPS' helpers) only inside ``run``, so ``lpfm --help`` and ``lpfm --version`` answer at
once.

A mistake in the input (:class:`~lpfm_insitu.errors.LPFMError` and its subclasses) is
printed as one line ``lpfm COMMAND: error: ...`` naming the file or option and the fix,
exit status 2; Ctrl-C ends with status 130; anything else is a bug or a broken
installation and keeps its traceback. ``--debug`` shows the traceback in every case.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import LPFMError
from . import bench, calibrate, classify, demo, doctor, plot, track, train
from . import eval as evaluate

#: in the order ``lpfm --help`` lists them
COMMANDS = (doctor, train, classify, demo, track, plot, evaluate, calibrate, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpfm", description="Crystal-phase labels for atoms: classify structure files, "
                                 "track phases in LAMMPS dumps, plot time series.",
        epilog="Phases are named by common name (fcc, bcc, hcp, omega, beta-Sn, ...) or "
               "AFLOW label. Run 'lpfm COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"lpfm_insitu {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.debug:
        return int(args.func(args) or 0)
    try:
        return int(args.func(args) or 0)
    except LPFMError as exc:
        print(f"lpfm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lpfm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
