"""Near-melting MD snapshots made with LAMMPS, cached so that reruns skip the MD.

Cache layout: ``CACHE/<system>-<hash>/frame_<k>.extxyz`` plus ``meta.json`` (thermo
averages and the wall time). The hash covers the rendered LAMMPS input, so a changed
template or parameter makes a new entry instead of reusing stale frames.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .lammps_cache import build_entry, parse_thermo
from .md_templates import CALIBRATION_CRYSTALS, CALIBRATION_LIQUIDS, MDSystem, potential_directory

DEFAULT_CACHE = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                 / "lpfm_insitu" / "md")


def cache_key(system: MDSystem, potential_dir: Path) -> str:
    text = system.render(potential_dir)
    return f"{system.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


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

    potential_dir = potential_directory()
    folder = Path(cache).expanduser() / cache_key(system, potential_dir)
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        return load_frames(folder, system), {**json.loads(meta_path.read_text()),
                                             "from_cache": True}
    log(f"  running LAMMPS for {system.name} ({system.n_atoms} atoms, "
        f"{simulated_ps(system):g} ps)")

    def finish(work: Path, log_text: str, wall: float) -> dict:
        thermo = parse_thermo(log_text)
        last = [r for r in thermo[-max(3, len(thermo) // 4):]]
        for k in range(system.n_frames):
            atoms = read(str(work / f"frame_{k}.dump"), format="lammps-dump-text")
            atoms.set_chemical_symbols([system.element] * len(atoms))
            atoms.wrap()
            write(str(work / f"frame_{k}.extxyz"), atoms, format="extxyz")
        for junk in work.glob("frame_*.dump"):
            junk.unlink()
        n = system.n_atoms
        return {
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

    meta = build_entry(folder, system.name, system.render(potential_dir), n_ranks, finish)
    return load_frames(folder, system), {**meta, "from_cache": False}


def calibration_hot_crystals(cache=DEFAULT_CACHE, log=print) -> tuple[list, list[str]]:
    """``lpfm calibrate``'s hot crystals: (label, atoms) pairs, and their descriptions."""
    hot = [(system.true_label, atoms) for system in CALIBRATION_CRYSTALS
           for atoms in snapshots(system, cache, 2, log)[0]]
    return hot, [s.description for s in CALIBRATION_CRYSTALS]


def calibration_liquids(cache=DEFAULT_CACHE, log=print) -> tuple[list, list[str]]:
    """``lpfm calibrate``'s liquids: one frame list per liquid, and their descriptions."""
    liquids = [snapshots(s, cache, 2, log)[0] for s in CALIBRATION_LIQUIDS]
    return liquids, [f"{s.name}: {s.description}" for s in CALIBRATION_LIQUIDS]
