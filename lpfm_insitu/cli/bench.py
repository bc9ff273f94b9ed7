"""``lpfm bench``: the package's benchmarks on this machine, written as a report by
:func:`lpfm_insitu.bench.command.run_bench`."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    from ..bench import SECTIONS

    p = subparsers.add_parser(
        "bench", help="benchmarks: model throughput and memory, in-situ overhead, 1 vs 2 "
                      "ranks, accuracy against PTM/a-CNA; writes a report")
    p.add_argument("--model", default="default", help="shipped model name or model file")
    p.add_argument("--output", default="reports/bench", help="report folder")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help="comma-separated subset of " + ",".join(SECTIONS) + "; sections not "
                        "run keep their previous results from OUTPUT/results.json")
    p.add_argument("--threads", type=int, default=2, help="torch threads for throughput")
    p.add_argument("--eval-results", default=None,
                   help="take the accuracy section from this `lpfm eval` results.json (same "
                        "model file, checked by its sha256) instead of recomputing it")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few repeats (a smoke run, not figures to quote)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..bench.command import run_bench

    return run_bench(args)
