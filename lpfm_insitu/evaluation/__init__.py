"""``lpfm eval``: the model's evaluation report (Markdown, PNG figures, results.json).

One module per job: ``synthetic_eval`` (prototype accuracy and denoising), ``physics``
and ``paths`` (Bain/Burgers paths, logit versus displacement), ``md_templates`` and
``md_snapshots`` (cached LAMMPS snapshots near melting; ``lammps_cache`` builds a cache
entry), ``baselines`` (PTM, a-CNA via
OVITO), ``md_eval`` (the comparison), ``strain_eval``
(compressed hot crystals), ``cost`` (timing, bf16), ``real_cases``, ``real_truth``,
``real_eval`` and ``real_report`` (slabs, a particle, a void, a solid-liquid interface,
compressed MD crystals, the Ti ramp and the shocked Fe, with their geometric truth),
``metrics`` (scoring), ``report`` (Markdown) and ``command`` (the CLI glue). Unknown
thresholds are set by ``training.calibration``, on the liquids this package makes.
"""

from __future__ import annotations

SECTIONS = ("synthetic", "physics", "md", "strain", "cost", "real")


def register_command(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a model: synthetic accuracy, order-parameter physics, "
                     "near-melting MD against PTM/CNA, cost, real systems (surfaces, "
                     "liquid, compression, Ti ramp, shock); writes a Markdown report")
    p.add_argument("--model", default="default", help="shipped model name or model file")
    p.add_argument("--output", default="reports/model", help="report folder")
    p.add_argument("--cache", default=None,
                   help="folder for cached LAMMPS snapshots (default ~/.cache/lpfm_insitu/md)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--ranks", type=int, default=2, help="MPI ranks for LAMMPS (default 2)")
    p.add_argument("--md-frames", type=int, default=2, help="MD frames per system (default 2)")
    p.add_argument("--real-cases", default=None,
                   help="comma-separated subset of the real section's cases (default: all; "
                        "names as in its report table)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="comma-separated subset of " + ",".join(SECTIONS) + "; sections not "
                        "run keep their previous results from OUTPUT/results.json; an empty "
                        "value only re-renders README.md from results.json")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .command import run_evaluation

    return run_evaluation(args)
