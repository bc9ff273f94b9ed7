"""``lpfm demo``: run the README's main example from a checkout of the repository."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .lammps.launch import PACKAGE_PARENT, run_lammps

EXAMPLES = PACKAGE_PARENT / "lammps_examples"
DEMO_EXAMPLE = "probe"
DEMO_INPUT = "in.probe"


def run_demo(n_ranks: int = 2, workdir: str | Path = "lpfm_demo", quick: bool = False) -> int:
    source = EXAMPLES / DEMO_EXAMPLE
    if not source.is_dir():
        raise FileNotFoundError(f"example folder {source} not found: 'lpfm demo' runs from a "
                                "checkout of the lpfm_insitu repository")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file():
            shutil.copy2(item, workdir / item.name)
    variables = {"steps": 20} if quick else {}
    print(f"running {DEMO_INPUT} on {n_ranks} MPI rank(s) in {workdir}", flush=True)
    result = run_lammps(DEMO_INPUT, n_ranks, variables=variables, cwd=workdir, capture=False)
    if result.returncode != 0:
        print(f"LAMMPS failed with exit code {result.returncode}; see {workdir}/log.lammps",
              file=sys.stderr)
        return result.returncode
    print(f"done: outputs in {workdir}")
    return 0
