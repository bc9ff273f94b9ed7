"""The ``lpfm`` command line. Each subcommand imports its heavy modules only when run.

``lpfm --help`` and ``lpfm --version`` import neither torch nor the model: the subcommands
that live beside the modules they drive (``track``, ``plot``, ``eval``, ``calibrate``,
``bench``) are registered from those modules only when one of them is run.

A mistake in the input (:class:`~lpfm_insitu.errors.LPFMError`, a missing file) is
printed as one line naming the file and the fix; anything else is a bug or a broken
installation and keeps its traceback. ``--debug`` shows the traceback in every case.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

#: subcommand -> (module whose ``register_command`` defines it, help for ``lpfm --help``)
LAZY_COMMANDS = {
    "track": ("lpfm_insitu.tracking.offline",
              "phase-fraction time series (HDF5) from a dump trajectory: the offline twin of "
              "in-situ tracking"),
    "plot": ("lpfm_insitu.tracking.offline", "PNG figures of a phase time series (HDF5)"),
    "eval": ("lpfm_insitu.evaluation",
             "evaluate a model: synthetic accuracy, order-parameter physics, near-melting MD "
             "against PTM/CNA, cost; writes a Markdown report"),
    "calibrate": ("lpfm_insitu.training.calibration",
                  "after training: choose the denoising step size and the unknown thresholds"),
    "bench": ("lpfm_insitu.bench",
              "benchmarks: model throughput and memory, in-situ overhead, 1 vs 2 ranks, "
              "accuracy against PTM/a-CNA; writes a report"),
}


def _doctor(args) -> int:
    from .doctor import main
    return main()


def _train(args) -> int:
    from ..errors import LPFMError
    from ..training.trainer import Trainer, TrainingConfig

    config = TrainingConfig.from_file(args.config)
    if args.output:
        config.output = args.output
    if args.steps is not None:
        config.steps = args.steps
    checkpoint = args.checkpoint
    trainer = Trainer(config, progress=not args.quiet,
                      checkpoint_path=checkpoint)
    if not args.restart and trainer.resume():
        print(f"resumed from {trainer.checkpoint_path} at step {trainer.step}", file=sys.stderr)
    if args.export:
        if trainer.step == 0:
            raise LPFMError(f"no checkpoint at {trainer.checkpoint_path} to export: train "
                            "first, or give the checkpoint with --checkpoint")
    else:
        trainer.train()
    path = trainer.finish()
    print(f"wrote {path} after {trainer.step} steps ({trainer.elapsed:.0f} s of training)")
    return 0


def _classify(args) -> int:
    from .classify import classify_command
    return classify_command(args)


def _demo(args) -> int:
    from .demo import run_demo
    return run_demo(n_ranks=args.np, workdir=args.workdir, quick=args.quick,
                    example=args.example)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s lazily registered module is imported (if any)."""
    parser = argparse.ArgumentParser(
        prog="lpfm", description="Crystal-phase labels for atoms: classify structure files, "
                                 "track phases in LAMMPS dumps, plot time series.",
        epilog="Phases are named by common name (fcc, bcc, hcp, omega, beta-Sn, ...) or "
               "AFLOW label. Run 'lpfm COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"lpfm_insitu {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("doctor", help="report what this installation found and how to fix gaps")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("train", help="train a model on synthetic perturbed prototypes")
    p.add_argument("config", help="training configuration (YAML or JSON)")
    p.add_argument("--output", help="model file to write (overrides the config)")
    p.add_argument("--steps", type=int, help="total optimisation steps (overrides the config)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--checkpoint", help="checkpoint file (default: OUTPUT with .checkpoint.pt)")
    p.add_argument("--export", action="store_true",
                   help="write a model file from the checkpoint as it is, without training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("classify", help="classify the atoms of a structure or dump file")
    p.add_argument("input", help="any file ASE reads (LAMMPS text dumps and data files "
                                 "included)")
    p.add_argument("--model", default="default", help="shipped model name or model file")
    p.add_argument("--denoise-steps", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=None,
                   help="stop denoising once no atom moves more than this (length units)")
    p.add_argument("--nn-distance", type=float, default=None,
                   help="density-equivalent nearest-neighbour distance in Å (the FCC NN "
                        "distance at the input's volume per atom) for all atoms; default: each "
                        "atom's own, from its neighbourhood")
    p.add_argument("--candidates", default=None,
                   help="comma-separated phases to restrict the classification to, by common "
                        "name or AFLOW label (e.g. bcc,hcp,omega)")
    p.add_argument("--averaging-radius", type=float, default=None,
                   help="labels and OPs from logits averaged over each atom's neighbours "
                        "within this radius, in Å at the model's reference density of "
                        "15 Å^3/atom (4.0 takes the first two FCC shells); 0: each atom's "
                        "own logits; default: the model file's setting")
    p.add_argument("--index", default="-1", help="frame(s) to read, ASE syntax (default: last; "
                                                 "':' all)")
    p.add_argument("--format", default=None,
                   help="input format for ASE (default: guessed; e.g. lammps-dump-text, "
                        "lammps-data, extxyz)")
    p.add_argument("--atom-style", default=None,
                   help="atom style of a LAMMPS data file (default: from its Atoms # comment, "
                        "else atomic)")
    p.add_argument("--output", default=None,
                   help="write per-atom labels, confidence and OPs (.xyz: extended XYZ; "
                        ".dump: LAMMPS dump with the in-situ fix's column names); both open "
                        "in OVITO with the phase as a typed, colour-coded property")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--json", action="store_true", help="print one JSON object per run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_classify)

    p = sub.add_parser("demo", help="run a phase-tracking example (the Fe shock, or Ti "
                                    "alpha -> omega) with the shipped model")
    p.add_argument("--example", default="shock", choices=("shock", "ti"),
                   help="shock: BCC Fe shocked, BCC -> HCP (default); ti: HCP Ti ramped "
                        "along c, alpha -> omega, with a model-free check of the omega")
    p.add_argument("--np", type=int, default=2, help="MPI ranks")
    p.add_argument("--workdir", default="lpfm_demo",
                   help="folder for the run's outputs (default: ./lpfm_demo, which the "
                        "repository's .gitignore ignores)")
    p.add_argument("--quick", action="store_true", help="a shortened run (for tests)")
    p.set_defaults(func=_demo)

    wanted = LAZY_COMMANDS[command][0] if command in LAZY_COMMANDS else None
    if wanted:
        importlib.import_module(wanted).register_command(sub)
    for name, (module_name, help_text) in LAZY_COMMANDS.items():
        if module_name != wanted:
            # a stand-in for `lpfm --help`; running the command builds the real parser
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word
        if word == "--":
            break
    return None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.debug:
        return int(args.func(args) or 0)
    from ..errors import LPFMError

    try:
        return int(args.func(args) or 0)
    except (LPFMError, FileNotFoundError) as exc:
        print(f"lpfm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lpfm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
