"""``lpfm demo``: the shock example with on-the-fly phase tracking, from a checkout.

Copies ``lammps_examples/shock`` into the work folder, runs ``in.shock`` on N MPI ranks
with the package importable (``launch.run_lammps``), draws the time series
(``plot_time_series``) and prints what the run found: fractions at the start and at the
end, what the shocked region turned into, which triggers fired, and the files written.
``--quick`` runs a smaller, shorter shock (the variant the tests use). More ``-var``
settings come from ``LPFM_DEMO_VARIABLES="material=ti"`` (the Ti variant of the example).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .lammps.launch import PACKAGE_PARENT, run_lammps
from .prototypes import common_name

EXAMPLES = PACKAGE_PARENT / "lammps_examples"
DEMO_EXAMPLE = "shock"
DEMO_INPUT = "in.shock"
#: ``-var`` overrides of the shortened variant: 2,560 Fe atoms, 0.2 ps NPT, 1 ps of shock
QUICK_VARIABLES = {"nshock": 20, "steps_eq": 100, "steps_shock": 1000}
TRACK = "track.h5"
#: outputs of an earlier run in the same folder, removed first (a new run must not
#: continue an old time series)
OUTPUTS = (TRACK, "checkpoints", "plots", "shock.dump", "log.lammps")
#: phases the summary always lists (others only where their fraction shows)
SHOWN = ("A_cI2_229_a", "A_hP2_194_c", "A_cF4_225_a", "A_hP3_191_ad", "unknown")


def run_demo(n_ranks: int = 2, workdir: str | Path = "lpfm_demo", quick: bool = False,
             timeout: float | None = None, variables: dict | None = None) -> int:
    """Run the example; ``variables`` are extra ``-var`` settings (e.g. material=ti)."""
    source = EXAMPLES / DEMO_EXAMPLE
    if not source.is_dir():
        raise FileNotFoundError(f"example folder {source} not found: 'lpfm demo' runs from a "
                                "checkout of the lpfm_insitu repository")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        old = workdir / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for item in source.iterdir():
        if item.is_file():
            shutil.copy2(item, workdir / item.name)
    variables = {**(QUICK_VARIABLES if quick else {}), **_env_variables(), **(variables or {})}
    what = "shortened " if quick else ""
    print(f"running the {what}shock example ({DEMO_INPUT}) on {n_ranks} MPI rank(s) in {workdir}",
          flush=True)
    start = time.perf_counter()
    result = run_lammps(DEMO_INPUT, n_ranks, variables=variables, cwd=workdir, capture=False,
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

    from .plotting import plot_time_series

    figures = plot_time_series(track, workdir / "plots")
    print(summarize(track, workdir, wall, figures), flush=True)
    return 0


def _env_variables() -> dict:
    """``LPFM_DEMO_VARIABLES="material=ti,steps_shock=3000"``: more ``-var`` settings."""
    import os

    spec = os.environ.get("LPFM_DEMO_VARIABLES", "").strip()
    out = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"LPFM_DEMO_VARIABLES: {item!r} is not NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def parent_phase(data) -> str | None:
    """The dominant known phase at the first classification (the unshocked crystal)."""
    phases = data["phases"]
    if not len(data["fractions"]):
        return None
    return phases[int(np.argmax(np.asarray(data["fractions"][0])[:-1]))]


def shocked_region(data) -> dict | None:
    """Fractions in the slabs next to the wall (z = 0) where the parent phase is below
    half, in the last profile: the contiguous run of such slabs from the lowest filled one.

    The profile stores fractions per slab; slabs count alike (the shocked slabs hold
    similar numbers of atoms).
    """
    phases = data["phases"]
    parent = parent_phase(data)
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
    return ", ".join(f"{common_name(p)} {fractions[p]:.3f}" for p in phases
                     if fractions[p] >= 0.0005 or p in SHOWN)


def _length(value: float) -> str:
    """A position in Å to 0.1 Å, never "-0.0" (a slab edge a hair below zero)."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def summarize(track: Path, workdir: Path, wall: float, figures) -> str:
    from .timeseries import read_time_series

    data = read_time_series(track)
    phases = data["phases"]
    fr = np.asarray(data["fractions"])
    shown = [p for p in SHOWN if p in phases]
    first = dict(zip(phases, fr[0]))
    last = dict(zip(phases, fr[-1]))
    peak = dict(zip(phases, fr.max(axis=0)))
    t = np.asarray(data["time"])
    lines = ["", "=== lpfm demo: summary ===",
             f"wall time {wall:.0f} s; {len(fr)} classifications, steps {int(data['step'][0])}"
             f"-{int(data['step'][-1])} (t = {t[0]:.2f}-{t[-1]:.2f} ps after the shock started)",
             f"fractions at the first classification: {_fmt(first, shown)}",
             f"fractions at the end:                  {_fmt(last, shown)}",
             f"largest fraction seen:                 {_fmt(peak, shown)}",
             f"mean confidence {data['mean_confidence'][0]:.2f} -> "
             f"{data['mean_confidence'][-1]:.2f}"]
    region = shocked_region(data)
    if region:
        lo, hi = region["z_range"]
        name = common_name(region["parent"])
        lines.append(f"shocked region at the end (z = {_length(lo)} to {_length(hi)} Å from "
                     f"the wall, {region['slabs']} slabs where {name} < 0.5): "
                     f"{_fmt(region['fractions'], shown)}")
    trig = data["triggers"]
    lines.append(f"checkpoint triggers fired: {len(trig['step'])}")
    for step, time_, desc, files in zip(trig["step"], trig["time"], trig["description"],
                                        trig["files"]):
        present = [f for f in files if (workdir / f).exists()]
        lines.append(f"  step {int(step)} (t = {time_:.2f} ps): {desc}")
        lines.append(f"    files: {', '.join(present) or '(missing)'}")
    written = [TRACK] + [str(Path(f).relative_to(workdir)) if Path(f).is_absolute() else str(f)
                         for f in figures]
    dumps = sorted(p.name for p in workdir.glob("*.dump"))
    lines.append(f"files written in {workdir}: {', '.join(written + dumps)}, log.lammps, "
                 "checkpoints/")
    lines.append(f"(re-plot: lpfm plot {workdir / TRACK}; continue from a checkpoint: "
                 "mpirun -np 2 lmp -in in.shock -var restart_step STEP -var dumpfile other.dump)")
    return "\n".join(lines)
