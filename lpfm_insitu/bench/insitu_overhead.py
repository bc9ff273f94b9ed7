'''``lpfm bench``'s insitu section: what classifying in situ costs a LAMMPS run, against
LAMMPS' own ``compute cna/atom``.

For each system (EAM Cu fcc, spline-MEAM Ti hcp, ~10^4 atoms, NVE from a lattice with
velocities for ~600 K) the same run is launched three ways through ``mpirun``:

* ``plain``: MD only;
* ``lpfm``: MD + the README's lines: ``fix python/invoke EVERY end_of_step``
  classifying every EVERY steps, with labels at step 0 (``lpfm_setup``, in the run's
  setup) and the tracking hook writing fractions and a profile to HDF5, with the
  ``comm_modify cutoff`` the model needs (receptive field + the default metal skin of
  2 Å);
* ``cna``: MD + ``compute cna/atom`` forced every EVERY steps by a ``fix print`` whose
  text reduces it (count of atoms with the lattice's CNA code). ``fix print`` also
  evaluates at step 0, but in the run's setup, which ``Loop time`` does not include.

Wall time is LAMMPS' ``Loop time`` (the time-step loop only: model loading at the
``python`` command and the run's setup are left out). What the loop leaves out is timed
apart: the whole ``mpirun`` process minus its loop time is start-up (imports, model
loading, the run's setup with LPFM's step-0 labels) plus the short teardown, and its
difference between the LPFM and bare runs is what the fix adds before the first step.
Variants are interleaved (plain, lpfm, cna, plain, ...) so that a change of machine load
hits all of them; the figures use the median per variant. Evidence that the work was
really done is read back from every run: the number of classifications (the adapter's own
counter) and the fraction of atoms labelled, and the number of CNA evaluations inside the
loop.
'''

from __future__ import annotations

import math
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ..training.prototypes import BCC, FCC, HCP, OMEGA
from .timing import load_average

VARIANTS = ("plain", "lpfm", "cna")
SKIN = 2.0  # the default neighbor skin of units metal: ghosts need reach + skin
TEMPERATURE = 600.0
SEED = 4928459
COMMON_OPS = (FCC, HCP, BCC, OMEGA)

# CNA codes of compute cna/atom: 1 fcc, 2 hcp.
SYSTEMS = {
    "cu_eam": dict(element="Cu", mass=63.546, structure="fcc", a=3.615, c_over_a=None,
                   pair_style="eam/alloy", potential="Cu_mishin1.eam.alloy",
                   phase=FCC, cna_code=1),
    "ti_meam": dict(element="Ti", mass=47.867, structure="hcp", a=2.95, c_over_a=1.587,
                    pair_style="meam/spline", potential="Ti.meam.spline",
                    phase=HCP, cna_code=2),
}

TEMPLATE = """\
# lpfm_insitu in-situ overhead benchmark: {system}, variant {variant}
units           metal
atom_style      atomic
boundary        p p p
{lattice}
region          box block 0 {nx} 0 {ny} 0 {nz}
create_box      1 box
create_atoms    1 box
mass            1 {mass}
pair_style      {pair_style}
pair_coeff      * * {potential} {element}
timestep        0.001
# twice the target: half goes into potential energy; loop geom = same on any rank count
velocity        all create {t_start} {seed} mom yes rot yes dist gaussian loop geom
fix             md all nve
{variant_block}
run             {steps}
{after_run}"""

LPFM_BLOCK = '''\
comm_modify     cutoff {comm_cutoff}
fix             lpfm all property/atom i_lpfm_phase d_lpfm_conf{op_column} ghost no
# -1 before the first classification, so labels >= 0 afterwards prove it ran
set             group all i_lpfm_phase -1
# LAMMPS does not substitute ${{...}} inside quotes: the model goes through the environment
shell           putenv LPFM_MODEL=${{lpfm_model}}
python          lpfm_invoke here """
from lpfm_insitu.lammps import configure
from lpfm_insitu.lammps.tracking import track
from lpfm_insitu.bench.insitu_overhead import invocation_report
lpfm_invoke = configure(model="$LPFM_MODEL", fix="lpfm", every={every},
                        denoise_steps={denoise_steps}, ops={ops!r})
track(lpfm_invoke, h5="track.h5", profile_axis="z", profile_bins=20)
lpfm_report = invocation_report(lpfm_invoke, {phase!r})
"""
fix             lpfm_run all python/invoke {every} end_of_step lpfm_invoke
python          lpfm_setup input 1 SELF format p exists
python          lpfm_setup invoke
'''

LPFM_AFTER = """\
python          lpfm_report input 1 SELF format p exists
python          lpfm_report invoke
"""

# Quotes keep $(...) from being substituted when the line is read: fix print evaluates it
# (and so the reduce, the atom variable and compute cna/atom) at every print.
CNA_BLOCK = """\
compute         cna all cna/atom {cna_cutoff:.4f}
variable        cna_match atom c_cna=={cna_code}
compute         cna_count all reduce sum v_cna_match
fix             cna_eval all print {every} "$(step) $(c_cna_count)" file cna_eval.txt screen no
"""

LOOP_RE = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")
REPORT_RE = re.compile(r"LPFM_BENCH (.*)")


def invocation_report(callback, phase: str | None):
    """The function that LAMMPS calls after the run: counters of the in-situ classifier."""

    clf = callback.classifier
    at_setup: dict[str, float] = {}

    def remember_setup(frame):
        # at the loop's first invocation the counters hold the setup's (step-0 labels);
        # hooks run before the invocation adds its own
        if frame.step > 0 and not at_setup:
            at_setup.update(clf.timings, invocations=clf.invocations)

    clf.settings.on_result = (*clf.settings.on_result, remember_setup)

    def lpfm_report(lmpptr):
        import numpy as np
        from lammps import lammps
        from mpi4py import MPI

        from ..lammps.gather import custom_property

        lmp = lammps(ptr=lmpptr)
        n = int(lmp.extract_global("nlocal"))
        labels = np.asarray(custom_property(lmp, "i_lpfm_phase", n))
        want = clf.phases.index(phase) if phase in clf.phases else -2
        comm = MPI.COMM_WORLD
        counts = comm.allreduce(np.array([n, (labels >= 0).sum(), (labels == want).sum()],
                                         dtype=np.int64))
        # the slowest rank sets the pace
        def in_loop(part):  # the time-step loop's invocations only
            return clf.timings.get(part, 0.0) - at_setup.get(part, 0.0)

        adapter = comm.allreduce(in_loop("total"), op=MPI.MAX)
        model = comm.allreduce(in_loop("model"), op=MPI.MAX)
        last = comm.allreduce(clf.last.get("total", 0.0), op=MPI.MAX)  # past torch's warm-up
        # where an invocation's time goes, summed over the run (slowest rank per part): the
        # parts the classifier times, in its order, which is every rank's
        parts = {k: comm.allreduce(in_loop(k), op=MPI.MAX) for k in clf.timings
                 if k != "total"}
        loop_invocations = clf.invocations - int(at_setup.get("invocations", 0))
        if comm.Get_rank() == 0:
            split = ",".join(f"{k}:{v:.6f}" for k, v in parts.items())
            print(f"LPFM_BENCH invocations={loop_invocations} atoms={counts[0]} "
                  f"labelled={counts[1]} expected={counts[2]} adapter_s={adapter:.6f} "
                  f"model_s={model:.6f} last_s={last:.6f} parts_s={split}", flush=True)

    return lpfm_report


def cna_cutoff(structure: str, a: float, c_over_a: float | None = None) -> float:
    """The cutoff the compute cna/atom documentation gives (between 1st and 2nd shell)."""
    if structure == "fcc":
        return 0.5 * (math.sqrt(2.0) / 2.0 + 1.0) * a
    x = c_over_a / 1.633
    return 0.5 * (1.0 + math.sqrt((4.0 + 2.0 * x * x) / 3.0)) * a


def system_geometry(name: str, n_atoms_target: int) -> dict:
    from ..evaluation.md_templates import _hcp_lattice  # the evaluation's hcp Ti, reused

    s = SYSTEMS[name]
    a = s["a"]
    if s["structure"] == "fcc":
        n = max(1, round((n_atoms_target / 4) ** (1 / 3)))
        cells, volume = (n, n, n), a ** 3 / 4
        lattice = f"lattice         fcc {a}"
    else:
        # orthohexagonal 4-atom cell a x a*sqrt(3) x c: cell counts that keep the box ~cubic
        dims = (a, a * math.sqrt(3.0), a * s["c_over_a"])
        volume = dims[0] * dims[1] * dims[2] / 4
        side = (n_atoms_target * volume) ** (1 / 3)
        cells = tuple(max(1, round(side / d)) for d in dims)
        lattice = _hcp_lattice(a, s["c_over_a"])
    return {"cells": cells, "atomic_volume": volume, "lattice": lattice,
            "n_atoms": 4 * cells[0] * cells[1] * cells[2],
            "cna_cutoff": cna_cutoff(s["structure"], a, s["c_over_a"])}


def model_needs(model: str, atomic_volume: float, denoise_steps: int) -> dict:
    """Ghost reach of the model at this density (as the adapter computes it) and its ops."""
    from ..lammps.classifier import InsituClassifier
    from ..lammps.settings import InsituSettings

    clf = InsituClassifier(InsituSettings(model=model, denoise_steps=denoise_steps,
                                          verbose=False))
    reach = clf.required_ghost_reach(clf.model.length_scale(atomic_volume=atomic_volume))
    ops = [p for p in COMMON_OPS if p in clf.phases]
    return {"reach": reach, "ops": ops, "phases": list(clf.phases)}


def render(name: str, variant: str, geometry: dict, steps: int, every: int,
           needs: dict | None = None, denoise_steps: int = 0) -> str:
    s = SYSTEMS[name]
    block, after = "", ""
    if variant == "lpfm":
        ops = needs["ops"] or None
        block = LPFM_BLOCK.format(
            comm_cutoff=math.ceil((needs["reach"] + SKIN) * 100) / 100,
            op_column=f" d2_lpfm_op {len(ops)}" if ops else "", every=every,
            denoise_steps=int(denoise_steps), ops=ops, phase=s["phase"])
        after = LPFM_AFTER
    elif variant == "cna":
        block = CNA_BLOCK.format(cna_cutoff=geometry["cna_cutoff"], cna_code=s["cna_code"],
                                 every=every)
    nx, ny, nz = geometry["cells"]
    return TEMPLATE.format(system=name, variant=variant, lattice=geometry["lattice"],
                           nx=nx, ny=ny, nz=nz, mass=s["mass"], pair_style=s["pair_style"],
                           potential=s["potential"], element=s["element"],
                           t_start=2 * TEMPERATURE, seed=SEED, variant_block=block,
                           steps=steps, after_run=after)


def _launch(folder: Path, n_ranks: int, model: str,
            timeout: float) -> tuple[list[str], str, float]:
    """mpirun -np N lmp in its own session, killed with its ranks on timeout; the command,
    its output and its wall time (s)."""
    from ..evaluation.md_templates import potential_directory
    from ..lammps.launch import kill_job, lammps_environment, lmp_executable, mpirun_prefix

    cmd = mpirun_prefix(n_ranks) + [lmp_executable(), "-in", "in.lammps", "-log", "log.lammps",
                                    "-nocite", "-var", "lpfm_model", model]
    env = lammps_environment()
    env["LAMMPS_POTENTIALS"] = str(potential_directory())
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:  # mpirun passes SIGTERM on to its ranks
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            kill_job(proc)
            out = ""
        raise RuntimeError(_failure(f"LAMMPS did not finish within {timeout:g} s", cmd,
                                    folder, out))
    if proc.returncode != 0:
        raise RuntimeError(_failure(f"LAMMPS failed (exit {proc.returncode})", cmd, folder, out))
    return cmd, out, time.perf_counter() - started


def _failure(what: str, cmd: list[str], folder: Path, out: str | None) -> str:
    # mpirun's own epilogue can push LAMMPS' ERROR line out of the tail: name it first
    errors = [ln for ln in (out or "").splitlines() if "ERROR" in ln][:5]
    return (f"{what} in {folder}\n" + "".join(f"{ln}\n" for ln in errors)
            + f"command: {' '.join(cmd)}\n--- last output ---\n{(out or '')[-4000:]}")


def run_one(name: str, variant: str, folder: Path, text: str, ranks: int, model: str,
            timeout: float) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "in.lammps").write_text(text)
    cmd, out, process_s = _launch(folder, ranks, model, timeout)
    loop = LOOP_RE.search(out)
    if loop is None:
        raise RuntimeError(_failure("no 'Loop time' line in LAMMPS' output", cmd, folder, out))
    version = re.search(r"LAMMPS \(([^)]*)\)", out)
    cpu = re.search(r"([0-9.]+)% CPU use", out)  # CPU time / wall: how much the machine gave us
    run = {"wall_s": float(loop.group(1)), "procs": int(loop.group(2)),
           "process_s": process_s, "outside_loop_s": process_s - float(loop.group(1)),
           "n_atoms": int(loop.group(4)), "lammps_version": version.group(1) if version else None,
           "command": " ".join(cmd), "cpu_use_percent": float(cpu.group(1)) if cpu else None,
           "warnings": sorted({ln.strip() for ln in out.splitlines() if ln.startswith("WARNING")})}
    if variant == "lpfm":
        report = REPORT_RE.search(out)
        if report is None:
            raise RuntimeError(_failure("the LPFM run printed no LPFM_BENCH line", cmd, folder,
                                        out))
        fields = dict(kv.split("=") for kv in report.group(1).split())
        run.update(invocations=int(fields["invocations"]),
                   labelled_fraction=int(fields["labelled"]) / int(fields["atoms"]),
                   expected_fraction=int(fields["expected"]) / int(fields["atoms"]),
                   adapter_s=float(fields["adapter_s"]), model_s=float(fields["model_s"]),
                   adapter_last_s=float(fields["last_s"]),
                   parts_s={k: float(v) for k, v in
                            (kv.split(":") for kv in fields["parts_s"].split(","))})
    elif variant == "cna":
        rows = [line.split() for line in (folder / "cna_eval.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
        inside = [r for r in rows if int(r[0]) > 0]  # step 0 is the run's setup, not timed
        run.update(invocations=len(inside),
                   expected_fraction=float(inside[-1][1]) / run["n_atoms"] if inside else 0.0)
    return run


def _summarise(runs: dict, n_atoms: int) -> dict:
    wall = {v: [r["wall_s"] for r in runs[v]] for v in VARIANTS}
    median = {v: statistics.median(w) for v, w in wall.items()}
    out = {"wall_s": wall, "median_s": median}
    outside = {v: statistics.median(r["outside_loop_s"] for r in runs[v]) for v in VARIANTS}
    out["outside_loop_median_s"] = outside
    # start-up the fix adds before the first step (teardown is the same short exit in both)
    out["lpfm_startup_extra_s"] = outside["lpfm"] - outside["plain"]
    for v in ("lpfm", "cna"):
        calls = statistics.median(r["invocations"] for r in runs[v])
        extra = median[v] - median["plain"]
        out[f"ratio_{v}_to_plain"] = median[v] / median["plain"]
        out[f"{v}_invocations"] = [r["invocations"] for r in runs[v]]
        out[f"{v}_extra_s"] = extra
        out[f"{v}_s_per_invocation"] = extra / calls if calls else float("nan")
        out[f"{v}_us_per_atom_per_invocation"] = (1e6 * extra / calls / n_atoms
                                                 if calls else float("nan"))
        out[f"{v}_expected_fraction"] = [r["expected_fraction"] for r in runs[v]]
    out["lpfm_labelled_fraction"] = [r["labelled_fraction"] for r in runs["lpfm"]]
    # the adapter's own clock (slowest rank, all invocations): the rest of the extra wall
    # time is the wider ghost shell the model needs, communicated at every step
    out["lpfm_adapter_s"] = [r["adapter_s"] for r in runs["lpfm"]]
    out["lpfm_model_s"] = [r["model_s"] for r in runs["lpfm"]]
    out["lpfm_adapter_last_invocation_s"] = [r["adapter_last_s"] for r in runs["lpfm"]]
    out["lpfm_parts_s"] = {k: statistics.median(r["parts_s"][k] for r in runs["lpfm"])
                           for k in runs["lpfm"][0]["parts_s"]}
    out["cpu_use_percent"] = {v: [r["cpu_use_percent"] for r in runs[v]] for v in VARIANTS}
    return out


def run_insitu_overhead(model: str = "default", systems=("cu_eam", "ti_meam"),
                        n_atoms_target: int = 10000, ranks: int = 2, steps: int = 1000,
                        every: int = 100, repeat: int = 2, denoise_steps: int = 0,
                        workdir=None, log=print, timeout: float = 1800.0) -> dict:
    """Wall time of plain MD, MD + LPFM and MD + compute cna/atom; see the module docstring.

    Returns a JSON-serialisable dict {"systems": {name: figures}, "settings": {...}}.
    ``workdir`` keeps every run's input, log and outputs (default: a temporary folder).
    """
    if model and Path(model).expanduser().exists():  # LAMMPS runs in another folder
        model = str(Path(model).expanduser().resolve())
    settings = {"model": model, "ranks": ranks, "steps": steps, "every": every,
                "repeat": repeat, "denoise_steps": denoise_steps,
                "n_atoms_target": n_atoms_target,
                "temperature_K": TEMPERATURE, "ensemble": "nve", "timestep_ps": 0.001,
                "omp_threads_per_rank": os.environ.get("OMP_NUM_THREADS", "1"),
                "order": "interleaved " + ", ".join(VARIANTS) + " per round",
                "wall_time": "LAMMPS 'Loop time' (the time-step loop: no setup, no model loading)",
                "cna_evaluation": f"fix print every {every} reducing compute cna/atom (also at "
                                  "step 0, in the run's setup, outside Loop time)",
                "per_atom_cost": "extra wall seconds (median - plain median) / invocations / "
                                 f"all atoms, on {ranks} ranks",
                "load_average_before": load_average(2)}
    started = time.time()
    result = {"systems": {}, "settings": settings}
    with tempfile.TemporaryDirectory(prefix="lpfm_insitu_overhead_") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        for name in systems:
            if name not in SYSTEMS:
                raise ValueError(f"unknown system {name!r}; choose from {sorted(SYSTEMS)}")
            geometry = system_geometry(name, n_atoms_target)
            needs = model_needs(model, geometry["atomic_volume"], denoise_steps)
            texts = {v: render(name, v, geometry, steps, every, needs, denoise_steps)
                     for v in VARIANTS}
            runs = {v: [] for v in VARIANTS}
            for k in range(repeat):
                for variant in VARIANTS:
                    run = run_one(name, variant, root / name / f"{variant}_{k}", texts[variant],
                                  ranks, model, timeout)
                    runs[variant].append(run)
                    extra = (f", {run['invocations']} evaluations in the loop"
                             if variant != "plain" else "")
                    log(f"insitu_overhead: {name} round {k + 1}/{repeat} {variant:5s} "
                        f"{run['n_atoms']} atoms {ranks} ranks {steps} steps: "
                        f"{run['wall_s']:.2f} s{extra} ({run['cpu_use_percent']}% CPU use, "
                        f"load {load_average(2)})")
            n_atoms = runs["plain"][0]["n_atoms"]
            figures = _summarise(runs, n_atoms)
            s = SYSTEMS[name]
            result["systems"][name] = {
                "n_atoms": n_atoms, "cells": list(geometry["cells"]),
                "pair_style": s["pair_style"], "potential": s["potential"],
                "structure": s["structure"], "lattice_a": s["a"], "c_over_a": s["c_over_a"],
                "comm_cutoff_lpfm": math.ceil((needs["reach"] + SKIN) * 100) / 100,
                "model_reach": needs["reach"], "cna_cutoff": geometry["cna_cutoff"],
                **figures,
                "warnings": sorted({w for v in VARIANTS for r in runs[v] for w in r["warnings"]}),
            }
            log(f"insitu_overhead: {name}: lpfm/plain {figures['ratio_lpfm_to_plain']:.2f}, "
                f"cna/plain {figures['ratio_cna_to_plain']:.3f}; per invocation lpfm "
                f"{figures['lpfm_us_per_atom_per_invocation']:.2f} us/atom, cna "
                f"{figures['cna_us_per_atom_per_invocation']:.3f} us/atom")
            settings["lammps_version"] = runs["plain"][0]["lammps_version"]
            settings["example_command"] = runs["lpfm"][0]["command"]
    settings["load_average_after"] = load_average(2)
    settings["wall_s_total"] = round(time.time() - started, 1)
    return result
