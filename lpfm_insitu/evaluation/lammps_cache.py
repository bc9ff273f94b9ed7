"""Running a LAMMPS input once into a cache entry, and reading its thermo output.

An entry is built in a fresh folder beside its final place and renamed there only once
complete, so that a crash or an interrupted run never leaves a half-written entry for a
later evaluation to read (it leaves a temporary folder instead).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path


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


def build_entry(folder: Path, name: str, input_text: str, n_ranks: int, finish) -> dict:
    """Run ``input_text`` with LAMMPS and publish the result as the cache entry ``folder``.

    ``finish(work, log_text, wall_s)`` turns the run's outputs in ``work`` into the
    entry's files (and removes what the entry does not keep); the metadata it returns is
    written to ``meta.json`` and returned.
    """
    from ..lammps.launch import run_lammps

    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=folder.parent))
    try:
        (work / "in.lammps").write_text(input_text)
        start = time.time()
        result = run_lammps("in.lammps", n_ranks, cwd=work)
        wall = time.time() - start
        log_text = (work / "log.lammps").read_text() if (work / "log.lammps").exists() else ""
        if result.returncode != 0:
            raise RuntimeError(f"LAMMPS failed for {name} (exit {result.returncode}):\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        meta = finish(work, log_text, wall)
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        work.rename(folder)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return meta
