"""Running the sections and writing results.json, the figures and README.md."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import SECTIONS
from ..errors import LPFMError
from ..progress import progress


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def command_line(args) -> str:
    parts = ["lpfm", "eval", "--model", str(args.model), "--output", str(args.output)]
    if args.cache:
        parts += ["--cache", str(args.cache)]
    for flag, value, default in (("--threads", args.threads, 2), ("--ranks", args.ranks, 2),
                                 ("--md-frames", args.md_frames, 2)):
        if value != default:
            parts += [flag, str(value)]
    return " ".join(parts)  # every section; --sections only reruns a subset


def _portable(path: Path) -> str:
    """A path a reader of the report can use: relative to the package's parent if inside it."""
    import lpfm_insitu

    root = Path(lpfm_insitu.__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return path.name


def model_identity(model, name: str) -> dict:
    path = Path(model.metadata.get("path", name))
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "?"
    training = model.metadata.get("training", {}) or {}
    losses = training.get("final_losses") or {}
    return {"name": str(model.metadata.get("name", name)), "argument": name,
            "path": _portable(path),
            "sha256": digest, "n_phases": len(model.phases),
            "confidence_threshold": model.confidence_threshold,
            "step_thresholds": {str(k): v for k, v in model.step_thresholds.items()},
            "phase_thresholds": {str(k): v for k, v in model.phase_thresholds.items()},
            "candidate_margins": {",".join(names): {str(k): v for k, v in by_steps.items()}
                                  for names, by_steps in model.candidate_margins.items()},
            "calibration": training.get("calibration"),
            "steps_done": training.get("steps_done"),
            "training_seconds": training.get("training_seconds"),
            "final_losses": {k: round(v, 4) for k, v in losses.items()
                             if k in ("ce", "sm") and isinstance(v, (int, float))},
            "step_size": model.step_size, "max_step": model.max_step,
            "log_prior": model.log_prior,
            "step_log_priors": {str(k): v for k, v in model.step_log_priors.items()},
            "averaging_radius": model.averaging_radius,
            "note": {k: v for k, v in model.metadata.items()
                     if k not in ("path", "training", "package_version", "name")},
            "modified": datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(
                timespec="seconds") if path.is_file() else None}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def run_evaluation(args) -> int:
    import torch

    from .. import __version__
    from ..model.files import load_model
    from .cost import load_average

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise LPFMError(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = {}
    if set(sections) != set(SECTIONS) and results_path.is_file():
        results = json.loads(results_path.read_text())
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    identity = model_identity(model, args.model)
    previous = results.get("meta", {}).get("model", {}).get("sha256")
    if not sections and "meta" in results:  # --sections "": re-render the report only
        if previous == identity["sha256"]:
            results["meta"]["model"] = identity  # the same file, perhaps moved
        else:  # the figures are the recorded model's, and so is the report
            _log(f"note: results.json was made with another model file (sha256 "
                 f"{str(previous)[:16]}); the report stays that model's")
        return _write(results, out, results_path, time.time())
    if not sections:
        raise LPFMError(f"--sections '' re-renders the report from {results_path}, which is "
                        "missing or holds no evaluation; run some sections first")
    if previous and previous != identity["sha256"]:
        _log("note: results.json was made with another model; dropping its sections")
        results = {}
    wall = dict(results.get("meta", {}).get("section_wall_s", {}))
    # threads per section: a subset rerun may use other threads than the sections it keeps
    previous_threads = results.get("meta", {}).get("threads")
    threads = {k: previous_threads for k in wall if previous_threads is not None}
    threads.update(results.get("meta", {}).get("section_threads", {}))
    start_all = time.time()
    load_start = load_average()
    for section in progress(sections, desc="lpfm eval", unit="section"):
        start = time.time()
        _log(f"[lpfm eval] {section}")
        if section == "synthetic":
            from .synthetic_eval import plot_synthetic, run_synthetic

            results["synthetic"] = run_synthetic(model, log=_log)
            plot_synthetic(results["synthetic"], out / "synthetic_accuracy.png")
        elif section == "physics":
            from .physics import plot_msd, plot_paths, run_physics

            results["physics"] = run_physics(model, log=_log)
            plot_paths(results["physics"], model.phases, out / "paths.png")
            plot_msd(results["physics"], out / "logit_vs_msd.png")
        elif section == "md":
            from .md_eval import plot_confidence, plot_md, run_md
            from .md_snapshots import DEFAULT_CACHE

            results["md"], _ = run_md(model, cache=args.cache or DEFAULT_CACHE,
                                      max_frames=args.md_frames, n_ranks=args.ranks, log=_log)
            plot_md(results["md"], out / "md_accuracy.png")
            plot_confidence(results["md"], out / "md_confidence.png")
        elif section == "strain":
            from .md_snapshots import DEFAULT_CACHE
            from .strain_eval import plot_strain, run_strain

            results["strain"] = run_strain(model, cache=args.cache or DEFAULT_CACHE,
                                           n_ranks=args.ranks, log=_log)
            plot_strain(results["strain"], out / "strain.png")
        elif section == "cost":
            from .cost import run_cost

            results["cost"] = run_cost(model, threads=max(args.threads, 2), log=_log)
        elif section == "real":
            from .md_snapshots import DEFAULT_CACHE
            from .real_cases import select_cases
            from .real_eval import merge_real_cases, run_real

            subset = getattr(args, "real_cases", None)
            real = run_real(model, cache=args.cache or DEFAULT_CACHE, n_ranks=args.ranks,
                            cases=select_cases(subset), log=_log)
            # a subset reruns those cases; the others keep their previous results
            results["real"] = merge_real_cases(results["real"], real) \
                if subset and "real" in results else real
        wall[section] = time.time() - start
        threads[section] = args.threads
        _log(f"[lpfm eval] {section} done in {wall[section]:.0f} s")
    results["meta"] = {
        "command": command_line(args),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": identity, "package_version": __version__, "torch_version": torch.__version__,
        "threads": args.threads, "cpu_count": os.cpu_count(), "load_average_start": load_start,
        "section_wall_s": wall, "section_threads": threads,
        "this_run_wall_s": time.time() - start_all,
        "sections_this_run": sections,
    }
    return _write(results, out, results_path, start_all)


def _write(results, out, results_path, start_all) -> int:
    results_path.write_text(json.dumps(_jsonable(results), indent=1))
    from .report import render

    (out / "README.md").write_text(render(_jsonable(results), out))
    _log(f"[lpfm eval] wrote {out / 'README.md'} and {results_path} "
         f"({time.time() - start_all:.0f} s)")
    return 0
