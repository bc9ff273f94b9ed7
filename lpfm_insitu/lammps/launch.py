"""Starting LAMMPS (``lmp`` under ``mpirun``) so that its embedded Python sees this package.

The interpreter LAMMPS embeds knows nothing of a virtual environment, and it does not
read ``.pth`` files from ``PYTHONPATH`` (which is how editable installs are found), so
both the environment's site-packages and the package's own parent folder are put there.
"""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import time
from pathlib import Path
from typing import Sequence

import lpfm_insitu

PACKAGE_PARENT = Path(lpfm_insitu.__file__).resolve().parent.parent


def lammps_environment(base: dict[str, str] | None = None, threads: int = 1) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    paths = [str(PACKAGE_PARENT), *site.getsitepackages()]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # one thread per rank: ranks already fill the cores, oversubscribing threads slows all
    env.setdefault("OMP_NUM_THREADS", str(threads))
    return env


def mpirun_prefix(n_ranks: int) -> list[str]:
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        raise FileNotFoundError("mpirun not found: install OpenMPI (Debian: openmpi-bin)")
    cmd = [mpirun, "-np", str(n_ranks)]
    if _is_openmpi(mpirun):
        cmd.insert(1, "--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.insert(1, "--allow-run-as-root")
    return cmd


def _is_openmpi(mpirun: str) -> bool:
    try:
        out = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in out.stdout + out.stderr or "OpenRTE" in out.stdout + out.stderr


def lmp_executable() -> str:
    for name in ("lmp", "lmp_mpi", "lmp_serial"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no LAMMPS executable (lmp) on PATH: install Debian's 'lammps' "
                            "package or build LAMMPS with cmake -C cmake/lpfm.cmake")


def run_lammps(input_file: str | Path, n_ranks: int = 1, *, variables: dict | None = None,
               cwd: str | Path | None = None, timeout: float | None = None,
               extra_args: Sequence[str] = (), capture: bool = True,
               log: str | None = None) -> subprocess.CompletedProcess:
    """Run ``mpirun -np N lmp -in FILE -var k v ...`` with the package importable."""
    cmd = mpirun_prefix(n_ranks) + [lmp_executable(), "-in", str(input_file)]
    for key, value in (variables or {}).items():
        cmd += ["-var", key, str(value)]
    cmd += ["-log", log or "log.lammps", *extra_args]
    return subprocess.run(cmd, cwd=cwd, env=lammps_environment(), timeout=timeout,
                          capture_output=capture, text=True)


def _session_pids(sid: int) -> list[int]:
    """The live processes of session ``sid`` (Linux /proc; zombies left out)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                state, _ppid, _pgrp, session = fh.read().rsplit(")", 1)[1].split()[:4]
        except (OSError, ValueError):  # ended while we looked
            continue
        if int(session) == sid and state != "Z":
            pids.append(int(entry))
    return pids


def kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL an ``mpirun`` started with ``start_new_session=True`` and every one of its
    ranks, and return once none is left, as a batch system ends a job.

    Open MPI puts each rank in a process group of its own, so killing mpirun's group leaves
    the ranks running (orphaned) until they notice; the session holds them all.
    """
    while pids := _session_pids(proc.pid):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    proc.wait()
