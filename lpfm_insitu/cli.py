"""The ``lpfm`` command line. Each subcommand imports its heavy modules only when run."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _doctor(args) -> int:
    from .doctor import main
    return main()


def _train(args) -> int:
    from .training import Trainer, TrainingConfig

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
            raise FileNotFoundError(f"no checkpoint at {trainer.checkpoint_path} to export")
    else:
        trainer.train()
    path = trainer.finish()
    print(f"wrote {path} after {trainer.step} steps ({trainer.elapsed:.0f} s of training)")
    return 0


def _classify(args) -> int:
    from .offline import classify_command
    return classify_command(args)


def _demo(args) -> int:
    from .demo import run_demo
    return run_demo(n_ranks=args.np, workdir=args.workdir, quick=args.quick,
                    example=args.example)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpfm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lpfm_insitu {__version__}")
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
    p.add_argument("input", help="any file ASE reads (LAMMPS text dumps included)")
    p.add_argument("--model", default="default", help="shipped model name or model file")
    p.add_argument("--denoise-steps", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=None,
                   help="stop denoising once no atom moves more than this (length units)")
    p.add_argument("--nn-distance", type=float, default=None,
                   help="density-equivalent nearest-neighbour distance in Å (the FCC NN "
                        "distance at the input's volume per atom); default: from the cell")
    p.add_argument("--candidates", default=None,
                   help="comma-separated AFLOW labels to restrict the classification to")
    p.add_argument("--averaging-radius", type=float, default=None,
                   help="labels and OPs from logits averaged over each atom's neighbours "
                        "within this radius, in Å at the model's reference density of "
                        "15 Å^3/atom (4.0 takes the first two FCC shells); 0: each atom's "
                        "own logits; default: the model file's setting")
    p.add_argument("--index", default="-1", help="frame(s) to read, ASE syntax (default: last)")
    p.add_argument("--format", default=None, help="input format for ASE (default: guessed)")
    p.add_argument("--output", default=None,
                   help="write per-atom labels, confidence and OPs (.xyz: extended XYZ; "
                        ".dump: LAMMPS dump with extra columns)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--json", action="store_true", help="print one JSON object per run")
    p.set_defaults(func=_classify)

    p = sub.add_parser("demo", help="run a phase-tracking example (the Fe shock, or Ti "
                                    "alpha -> omega) with the shipped model")
    p.add_argument("--example", default="shock", choices=("shock", "ti"),
                   help="shock: BCC Fe shocked, BCC -> HCP (default); ti: HCP Ti ramped "
                        "along c, alpha -> omega, with a model-free check of the omega")
    p.add_argument("--np", type=int, default=2, help="MPI ranks")
    p.add_argument("--workdir", default="lpfm_demo", help="folder for the run's outputs")
    p.add_argument("--quick", action="store_true", help="a shortened run (for tests)")
    p.set_defaults(func=_demo)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Subcommands that live beside the modules they drive."""
    registrars = []
    import importlib

    for module_name in ("lpfm_insitu.offline_tracking", "lpfm_insitu.evaluation",
                        "lpfm_insitu.calibration",
                        "lpfm_insitu.bench"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # a missing dependency is an error, not an absence
                raise
            continue
        if hasattr(module, "register_command"):
            registrars.append(module.register_command)
    return registrars


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"lpfm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
