"""Near-melting MD snapshots made with LAMMPS, cached so that reruns skip the MD.

Cache layout: ``CACHE/<system>-<hash>/frame_<k>.extxyz`` plus ``meta.json`` (thermo
averages and the wall time). The hash covers the rendered LAMMPS input, so a changed
template or parameter makes a new entry instead of reusing stale frames.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .md_templates import SYSTEMS, MDSystem, potential_directory

DEFAULT_CACHE = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                 / "lpfm_insitu" / "md")


def cache_key(system: MDSystem, potential_dir: Path) -> str:
    text = system.render(potential_dir)
    return f"{system.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def parse_thermo(log_text: str) -> list[dict[str, float]]:
    """Rows of every ``thermo`` block in a LAMMPS log."""
    rows, header = [], None
    for line in log_text.splitlines():
        words = line.split()
        if words[:2] == ["Step", "Temp"]:
            header = words
            continue
        if header is not None:
            try:
                values = [float(w) for w in words]
            except ValueError:
                header = None
                continue
            if len(values) == len(header):
                rows.append(dict(zip(header, values)))
            else:
                header = None
    return rows


def simulated_ps(system: MDSystem) -> float:
    return system.melt_ps + system.equilibrate_ps + (system.n_frames - 1) * system.frame_spacing_ps


def load_frames(folder: Path, system: MDSystem):
    from ase.io import read

    frames = []
    for k in range(system.n_frames):
        atoms = read(str(folder / f"frame_{k}.extxyz"), format="extxyz")
        atoms.info.update(system=system.name, frame=k)
        frames.append(atoms)
    return frames


def snapshots(system: MDSystem, cache: str | Path = DEFAULT_CACHE, n_ranks: int = 2,
              log=print) -> tuple[list, dict]:
    """The frames of ``system`` (from the cache, or made now) and their metadata."""
    from ase.io import read, write

    from ..lammps.launch import run_lammps

    potential_dir = potential_directory()
    folder = Path(cache).expanduser() / cache_key(system, potential_dir)
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        return load_frames(folder, system), {**json.loads(meta_path.read_text()),
                                             "from_cache": True}
    log(f"  running LAMMPS for {system.name} ({system.n_atoms} atoms, "
        f"{simulated_ps(system):g} ps)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{system.name}-", dir=folder.parent))
    try:
        (work / "in.lammps").write_text(system.render(potential_dir))
        start = time.time()
        result = run_lammps("in.lammps", n_ranks, cwd=work)
        wall = time.time() - start
        log_text = (work / "log.lammps").read_text() if (work / "log.lammps").exists() else ""
        if result.returncode != 0:
            raise RuntimeError(f"LAMMPS failed for {system.name} (exit {result.returncode}):\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        thermo = parse_thermo(log_text)
        last = [r for r in thermo[-max(3, len(thermo) // 4):]]
        for k in range(system.n_frames):
            atoms = read(str(work / f"frame_{k}.dump"), format="lammps-dump-text")
            atoms.set_chemical_symbols([system.element] * len(atoms))
            atoms.wrap()
            write(str(work / f"frame_{k}.extxyz"), atoms, format="extxyz")
        n = system.n_atoms
        meta = {
            "system": system.name, "description": system.description,
            "potential": system.potential, "pair_style": system.pair_style,
            "n_atoms": n, "n_frames": system.n_frames,
            "target_temperature_K": system.temperature,
            "mean_temperature_K": float(np.mean([r["Temp"] for r in last])) if last else None,
            "mean_pressure_bar": float(np.mean([r["Press"] for r in last])) if last else None,
            "atomic_volume_A3": float(np.mean([r["Volume"] for r in last]) / n) if last else None,
            "simulated_ps": simulated_ps(system),
            "lammps_wall_s": wall, "ranks": n_ranks, "key": folder.name,
        }
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        for junk in work.glob("frame_*.dump"):
            junk.unlink()
        if folder.exists():
            shutil.rmtree(folder)
        work.rename(folder)  # complete entries only: a crash leaves a temp folder behind
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return load_frames(folder, system), {**meta, "from_cache": False}


def all_snapshots(cache=DEFAULT_CACHE, n_ranks: int = 2, systems=SYSTEMS, log=print):
    return {s.name: snapshots(s, cache, n_ranks, log) for s in systems}
