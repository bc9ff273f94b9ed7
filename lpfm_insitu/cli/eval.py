"""``lpfm eval``: the model's evaluation report (Markdown, PNG figures, results.json),
run section by section by :func:`lpfm_insitu.evaluation.command.run_evaluation`."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    from ..evaluation import SECTIONS

    p = subparsers.add_parser(
        "eval", help="evaluate a model: synthetic accuracy, order-parameter physics, "
                     "near-melting MD against PTM/CNA, cost; writes a Markdown report")
    p.add_argument("--model", default="default", help="shipped model name or model file")
    p.add_argument("--output", default="reports/model", help="report folder")
    p.add_argument("--cache", default=None,
                   help="folder for cached LAMMPS snapshots (default ~/.cache/lpfm_insitu/md)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--ranks", type=int, default=2, help="MPI ranks for LAMMPS (default 2)")
    p.add_argument("--md-frames", type=int, default=2, help="MD frames per system (default 2)")
    p.add_argument("--real-cases", default=None,
                   help="comma-separated subset of the real section's cases to rerun; the "
                        "others keep their results from OUTPUT/results.json (default: all; "
                        "names as in its report table)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="comma-separated subset of " + ",".join(SECTIONS) + "; sections not "
                        "run keep their previous results from OUTPUT/results.json; an empty "
                        "value only re-renders README.md from results.json")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..evaluation.command import run_evaluation

    return run_evaluation(args)
