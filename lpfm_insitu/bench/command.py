"""Running the benchmark sections and keeping their figures in OUTPUT/results.json."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

from . import SECTIONS
from .timing import load_average
from ..errors import LPFMError, MissingFileError
from ..progress import progress


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _throughput(args) -> dict:
    from .throughput import run_throughput

    sizes = (1_000,) if args.quick else (1_000, 10_000, 100_000)
    return run_throughput(args.model, sizes=sizes, threads=args.threads,
                          repeats=1 if args.quick else 3,
                          compare_e3nn_at=sizes[0] if args.quick else 10_000,
                          profile_at=sizes[0] if args.quick else 10_000, log=_log)


def _gpu(args) -> dict:
    from .gpu import SIZES, run_gpu

    return run_gpu(args.model, sizes=SIZES[:1] if args.quick else SIZES,
                   repeats=1 if args.quick else 3, log=_log)


def _insitu(args) -> dict:
    from .insitu_overhead import run_insitu_overhead

    if args.quick:
        return run_insitu_overhead(args.model, systems=("cu_eam",), n_atoms_target=2000,
                                   steps=200, every=100, repeat=1, log=_log)
    return run_insitu_overhead(args.model, steps=500, every=100, repeat=2, log=_log)


def _parallel(args) -> dict:
    from .parallel import parser, run_parallel

    options = ["--model", args.model, "--threads", "1"]
    options += (["--cells", "5", "--repeat", "1", "--ranks", "1", "2", "--cost-cells", "4", "6"]
                if args.quick
                else ["--cells", "14", "--repeat", "3", "--ranks", "1", "2", "4", "8"])
    return run_parallel(parser().parse_args(options))


def _accuracy(args) -> dict:
    from ..model.files import load_model, resolve_model_path
    from .accuracy import accuracy_from_eval, run_accuracy

    if args.eval_results:
        results_path = Path(args.eval_results)
        if not results_path.exists():
            raise MissingFileError.of(results_path)
        return accuracy_from_eval(results_path, resolve_model_path(args.model))
    import torch

    torch.set_num_threads(args.threads)
    return run_accuracy(load_model(args.model), max_frames=1 if args.quick else 2, log=_log)


RUNNERS = {"throughput": _throughput, "gpu": _gpu, "insitu": _insitu, "parallel": _parallel,
           "accuracy": _accuracy}


def command_line(args) -> str:
    parts = ["lpfm", "bench", "--model", str(args.model), "--output", str(args.output)]
    if args.threads != 2:
        parts += ["--threads", str(args.threads)]
    if args.quick:
        parts.append("--quick")
    if getattr(args, "eval_results", None):
        parts += ["--eval-results", str(args.eval_results)]
    return " ".join(parts)


def run_bench(args: argparse.Namespace) -> int:
    from .report import write_report

    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise LPFMError(f"unknown benchmark section(s) {unknown}; choose from {list(SECTIONS)}")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    results_path = output / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in progress(wanted, desc="lpfm bench", unit="section"):
        _log(f"lpfm bench: {name} ...")
        start, load_before = time.time(), load_average(2)
        section = RUNNERS[name](args)
        section["meta"] = {"wall_s": round(time.time() - start, 1),
                           "load_average_before": load_before,
                           "load_average_after": load_average(2),
                           "date": datetime.date.today().isoformat(),
                           "command": command_line(args) + f" --sections {name}"}
        results[name] = section
        results["machine"] = {"cpu_count": os.cpu_count(), "processor": platform.processor(),
                              "python": platform.python_version()}
        results["command"] = command_line(args)
        # after every section, so an interrupted run keeps what it measured
        results_path.write_text(json.dumps(results, indent=1, default=float))
        write_report(results, output)
    _log(f"lpfm bench: wrote {output / 'README.md'}")
    return 0
