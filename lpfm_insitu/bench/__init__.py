"""``lpfm bench``: the figures users judge the package by, measured on this machine.

Sections, one module each: ``throughput`` (model us/atom and peak memory at 10^3-10^5
atoms, fp32 and bf16), ``insitu_overhead`` (a LAMMPS run with LPFM every 100 steps, and
with LAMMPS' own ``compute cna/atom``, against the bare run), ``parallel`` (1 against 2
ranks and ghost atoms per owned atom) and ``accuracy``
(near-melting LAMMPS snapshots: LPFM against PTM and a-CNA), ``gpu`` (us/atom end to end
and for the network alone at 10^4-10^6 atoms, fp32/bf16/fp16, memory per atom; skipped,
with a line saying so, without CUDA). ``report`` writes
results.json, the figures and README.md.
"""

from __future__ import annotations

SECTIONS = ("throughput", "gpu", "insitu", "parallel", "accuracy")


def register_command(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmarks: model throughput and memory, in-situ overhead against "
                      "compute cna/atom, 1 vs 2 ranks, accuracy against PTM/a-CNA; writes a report")
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
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .command import run_bench

    return run_bench(args)
