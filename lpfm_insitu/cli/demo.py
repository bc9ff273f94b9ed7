"""``lpfm demo``: an example with on-the-fly phase tracking, from a checkout.

Two examples (``--example``):

* ``shock`` (the default): ``lammps_examples/shock/in.shock``, BCC Fe shocked by a momentum
  mirror, BCC -> HCP behind the front;
* ``ti``: ``lammps_examples/ti_omega/in.ti_omega``, HCP Ti compressed along c by a ramp,
  alpha -> omega; after the run the model-free check ``analyze_omega.py`` (template
  match of the denoised positions, PTM beside it) runs on the last frame.

The example folder is copied into the work folder; the input runs on N MPI ranks with the
package importable (``launch.run_lammps``); the time series is drawn
(``plot_time_series``) and a summary says what the run found: fractions at the start and
at the end, which triggers fired, and the files written. ``--quick`` runs a smaller,
shorter variant (the one the tests use). More ``-var`` settings come from
``LPFM_DEMO_VARIABLES="material=ti"``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LPFMError, MissingFileError
from ..lammps.launch import PACKAGE_PARENT, lammps_environment, run_lammps
from ..tracking.summary import parent_index, series_summary

EXAMPLES = PACKAGE_PARENT / "lammps_examples"
TRACK = "track.h5"


@dataclass(frozen=True)
class Example:
    """One runnable example: its folder, input, quick variant and the files it writes."""

    folder: str
    input: str
    description: str
    #: ``-var`` overrides of the shortened variant
    quick: dict
    #: outputs of an earlier run in the same folder, removed first (a new run must not
    #: continue an old time series)
    outputs: tuple
    #: the shocked region next to the wall is summarised (the shock example)
    wall_region: bool = False
    #: a model-free check run on the last frame: (script, arguments)
    check: tuple = field(default_factory=tuple)
    #: how to go on from a checkpoint
    restart_hint: str = "the checkpoints/restart.STEP files are LAMMPS restarts"


DEMOS = {
    "shock": Example(
        "shock", "in.shock", "shock example",
        # 2,560 Fe atoms, 0.2 ps NPT, 1 ps of shock
        {"nshock": 20, "steps_eq": 100, "steps_shock": 1000},
        (TRACK, "checkpoints", "plots", "shock.dump", "log.lammps"), wall_region=True,
        restart_hint="continue from a checkpoint: mpirun -np 2 lmp -in in.shock "
                     "-var restart_step STEP -var dumpfile other.dump"),
    "ti": Example(
        "ti_omega", "in.ti_omega", "Ti alpha -> omega ramp example",
        # 288 Ti atoms (4 x 3 x 6 cells), 0.2 ps NPT, 4 %/ps to 6 %, 0.5 ps held: the
        # machinery, not the transformation (the full run's HCP transforms at 13.5 %)
        {"nx": 4, "ny": 3, "nz": 6, "steps_eq": 100, "erate": -0.04, "steps_ramp": 750,
         "steps_hold": 250},
        (TRACK, "checkpoints", "plots", "ti_omega.dump", "log.lammps", "omega_check.json"),
        check=("analyze_omega.py", "ti_omega.dump", "--json", "omega_check.json",
               "--timeline", "plots/ptm_vs_model.png")),
}
DEFAULT_EXAMPLE = "shock"
# the shock example's names, kept for callers of earlier versions
DEMO_EXAMPLE, DEMO_INPUT = DEMOS["shock"].folder, DEMOS["shock"].input
QUICK_VARIABLES = DEMOS["shock"].quick
OUTPUTS = DEMOS["shock"].outputs
#: phases the summary always lists (others only where their fraction shows)
SHOWN = ("A_cI2_229_a", "A_hP2_194_c", "A_cF4_225_a", "A_hP3_191_ad", "unknown")


def run_demo(n_ranks: int = 2, workdir: str | Path = "lpfm_demo", quick: bool = False,
             timeout: float | None = None, variables: dict | None = None,
             example: str = DEFAULT_EXAMPLE) -> int:
    """Run an example; ``variables`` are extra ``-var`` settings (e.g. material=ti)."""
    if example not in DEMOS:
        raise LPFMError(f"unknown example {example!r}: choose one of {', '.join(DEMOS)}")
    spec = DEMOS[example]
    source = EXAMPLES / spec.folder
    if not source.is_dir():
        raise MissingFileError(f"example folder {source} not found: 'lpfm demo' runs from a "
                               "checkout of the lpfm_insitu repository")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in spec.outputs:
        old = workdir / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for item in source.iterdir():
        if item.is_file():
            shutil.copy2(item, workdir / item.name)
    variables = {**(spec.quick if quick else {}), **_env_variables(), **(variables or {})}
    what = "shortened " if quick else ""
    print(f"running the {what}{spec.description} ({spec.input}) on {n_ranks} MPI rank(s) in "
          f"{workdir}", flush=True)
    start = time.perf_counter()
    result = run_lammps(spec.input, n_ranks, variables=variables, cwd=workdir, capture=False,
                        timeout=timeout)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        print(f"LAMMPS failed with exit code {result.returncode}; see {workdir}/log.lammps",
              file=sys.stderr)
        return result.returncode
    track = workdir / TRACK
    if not track.exists():
        print(f"LAMMPS ended but wrote no {TRACK}; see {workdir}/log.lammps", file=sys.stderr)
        return 1

    from ..tracking.plotting import plot_time_series

    figures = plot_time_series(track, workdir / "plots")
    check = None
    if spec.check:
        check = _run_check(spec.check, workdir, timeout)
        if check is None:
            return 1
    print(summarize(track, workdir, wall, figures, spec, check), flush=True)
    return 0


def _run_check(command: tuple, workdir: Path, timeout: float | None) -> dict | None:
    """Run the example's model-free check script; returns its JSON result."""
    script, *args = command
    print(f"running the model-free check: python {script} {' '.join(args)}", flush=True)
    result = subprocess.run([sys.executable, script, *args], cwd=workdir, timeout=timeout,
                            env=lammps_environment(), capture_output=True, text=True)
    if result.returncode != 0:
        print(f"{script} failed (exit {result.returncode}):\n{result.stderr[-3000:]}",
              file=sys.stderr)
        return None
    return json.loads((workdir / args[args.index("--json") + 1]).read_text())


def _env_variables() -> dict:
    """``LPFM_DEMO_VARIABLES="material=ti,steps_shock=3000"``: more ``-var`` settings."""
    import os

    spec = os.environ.get("LPFM_DEMO_VARIABLES", "").strip()
    out = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LPFMError(f"LPFM_DEMO_VARIABLES: {item!r} is not NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def shocked_region(data) -> dict | None:
    """Fractions in the slabs next to the wall (z = 0) where the parent phase is below
    half, in the last profile: the contiguous run of such slabs from the lowest filled one.

    The profile stores fractions per slab; slabs count alike (the shocked slabs hold
    similar numbers of atoms).
    """
    phases = data["phases"]
    k = parent_index(data)
    parent = phases[k] if k >= 0 else None
    if parent is None or "profile" not in data or not np.isfinite(data["profile"][-1]).all():
        return None
    prof = np.asarray(data["profile"][-1])
    j_parent = phases.index(parent)
    run = []
    for k in np.flatnonzero(prof.sum(axis=1) > 0):
        if prof[k, j_parent] >= 0.5:
            break
        run.append(k)
    if not run:
        return None
    edges = np.asarray(data["profile_edges"][-1])
    return {"z_range": (float(edges[run[0]]), float(edges[run[-1] + 1])),
            "slabs": len(run), "parent": parent,
            "fractions": {p: float(prof[run, j].mean()) for j, p in enumerate(phases)}}


def _fmt(fractions: dict, phases) -> str:
    from ..training.prototypes import common_name  # ASE: not for `lpfm --help`

    return ", ".join(f"{common_name(p)} {fractions[p]:.3f}" for p in phases
                     if fractions[p] >= 0.0005 or p in SHOWN)


def _length(value: float) -> str:
    """A position in Å to 0.1 Å, never "-0.0" (a slab edge a hair below zero)."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def summarize(track: Path, workdir: Path, wall: float, figures,
              spec: Example = DEMOS[DEFAULT_EXAMPLE], check: dict | None = None) -> str:
    from ..tracking.timeseries import read_time_series
    from ..training.prototypes import common_name

    data = read_time_series(track)
    numbers = series_summary(data)
    shown = [p for p in SHOWN if p in numbers["phases"]]
    (step0, step1), (t0, t1) = numbers["steps"], numbers["times"]
    conf0, conf1 = numbers["mean_confidence"]
    lines = ["", "=== lpfm demo: summary ===",
             f"wall time {wall:.0f} s; {numbers['rows']} classifications, steps {step0}"
             f"-{step1} (t = {t0:.2f}-{t1:.2f} ps"
             + (" after the shock started)" if spec.wall_region else ")"),
             f"fractions at the first classification: {_fmt(numbers['first'], shown)}",
             f"fractions at the end:                  {_fmt(numbers['last'], shown)}",
             f"largest fraction seen:                 {_fmt(numbers['peak'], shown)}",
             f"mean confidence {conf0:.2f} -> {conf1:.2f}"]
    region = shocked_region(data) if spec.wall_region else None
    if region:
        lo, hi = region["z_range"]
        name = common_name(region["parent"])
        lines.append(f"shocked region at the end (z = {_length(lo)} to {_length(hi)} Å from "
                     f"the wall, {region['slabs']} slabs where {name} < 0.5): "
                     f"{_fmt(region['fractions'], shown)}")
    lines.append(f"checkpoint triggers fired: {len(numbers['triggers'])}")
    for step, time_, desc, files in numbers["triggers"]:
        present = [f for f in files if (workdir / f).exists()]
        lines.append(f"  step {step} (t = {time_:.2f} ps): {desc}")
        lines.append(f"    files: {', '.join(present) or '(missing)'}")
    if check:
        lines += _check_lines(check)
    written = [TRACK] + [str(Path(f).relative_to(workdir)) if Path(f).is_absolute() else str(f)
                         for f in figures]
    dumps = sorted(p.name for p in workdir.glob("*.dump"))
    lines.append(f"files written in {workdir}: {', '.join(written + dumps)}, log.lammps, "
                 "checkpoints/")
    lines.append(f"(re-plot: lpfm plot {workdir / TRACK}; {spec.restart_hint})")
    return "\n".join(lines)


def _check_lines(check: dict) -> list[str]:
    """The model-free check of the last frame (analyze_omega.py's JSON), in a few lines."""
    def fmt(fr: dict) -> str:
        return ", ".join(f"{k} {v:.3f}" for k, v in fr.items())

    lines = [f"last frame (step {check['step']}), model-free check:",
             f"  model, step 0:            {fmt(check['model_step0'])}"]
    if "model_denoised" in check:
        lines.append(f"  model, denoised:          {fmt(check['model_denoised'])}")
    key = "templates_denoised" if "templates_denoised" in check else "templates_dumped"
    templates = check[key]
    where = "denoised" if key.endswith("denoised") else "dumped"
    lines.append(f"  best template ({where}):  {fmt(templates['best_phase'])}")
    if "best_phase_on_model_omega" in templates:
        lines.append(f"  best template on the model's omega atoms: "
                     f"{fmt(templates['best_phase_on_model_omega'])}")
    ptm = check.get(f"ptm_{where}_cutoff_0")
    if ptm:
        lines.append(f"  PTM, no cutoff ({where}): {fmt(ptm)} (PTM has no omega template)")
    return lines


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run a phase-tracking example (the Fe shock, or Ti "
                                           "alpha -> omega) with the shipped model")
    p.add_argument("--example", default=DEFAULT_EXAMPLE, choices=tuple(DEMOS),
                   help="shock: BCC Fe shocked, BCC -> HCP (default); ti: HCP Ti ramped "
                        "along c, alpha -> omega, with a model-free check of the omega")
    p.add_argument("--np", type=int, default=2, help="MPI ranks")
    p.add_argument("--workdir", default="lpfm_demo",
                   help="folder for the run's outputs (default: ./lpfm_demo, which the "
                        "repository's .gitignore ignores)")
    p.add_argument("--quick", action="store_true", help="a shortened run (for tests)")
    p.set_defaults(func=run)


def run(args) -> int:
    return run_demo(n_ranks=args.np, workdir=args.workdir, quick=args.quick,
                    example=args.example)
