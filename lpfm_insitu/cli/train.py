"""``lpfm train``: train a model on synthetic perturbed prototypes, or export a checkpoint."""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model on synthetic perturbed prototypes")
    p.add_argument("config", help="training configuration (YAML or JSON)")
    p.add_argument("--output", help="model file to write (overrides the config)")
    p.add_argument("--steps", type=int, help="total optimisation steps (overrides the config)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--checkpoint", help="checkpoint file (default: OUTPUT with .checkpoint.pt)")
    p.add_argument("--export", action="store_true",
                   help="write a model file from the checkpoint as it is, without training")
    p.add_argument("--device", help="where the network trains: cpu, cuda, cuda:N or auto "
                   "(overrides the config's device; a run resumes on any device)")
    p.add_argument("--prefetch", type=int,
                   help="batches built ahead by a background thread (default: 2 on a GPU, "
                   "0 on the CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from .paths import existing_input

    config_path = existing_input(args.config)  # before the seconds torch takes to import
    from ..errors import LPFMError
    from ..training.trainer import Trainer, TrainingConfig

    config = TrainingConfig.from_file(config_path)
    if args.output:
        config.output = args.output
    if args.steps is not None:
        config.steps = args.steps
    if args.device:
        config.device = args.device
    if args.prefetch is not None:
        config.prefetch = args.prefetch
    trainer = Trainer(config, progress=not args.quiet, checkpoint_path=args.checkpoint)
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
