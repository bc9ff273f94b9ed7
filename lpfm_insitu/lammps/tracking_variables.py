"""Names and values of the LAMMPS python-style variables of a tracker (``v_lpfm_frac_hcp``, ...).

LAMMPS accepts letters, digits and ``_`` in variable names; phase labels such as
``bcc-Fe`` are sanitised, and every phase is published under its AFLOW label and its
common name. ``prefix`` replaces the leading ``lpfm`` of every name.
"""

from __future__ import annotations

import re

import numpy as np

from ..tracking.statistics import PhaseStatistics
from ..training.prototypes import common_name

__all__ = ["lammps_variable_name", "as_lammps_variables", "variable_values", "prefixed"]

_INVALID_VAR_CHARS = re.compile(r"[^A-Za-z0-9_]")


def prefixed(prefix: str, lpfm_name: str) -> str:
    """``lpfm_name`` with its leading ``lpfm`` replaced by ``prefix``."""
    return prefix + lpfm_name[len("lpfm"):]


def lammps_variable_name(label: str) -> str:
    """``lpfm_frac_<label>`` with characters LAMMPS rejects replaced by ``_``."""
    return "lpfm_frac_" + _INVALID_VAR_CHARS.sub("_", str(label))


def as_lammps_variables(stats: PhaseStatistics) -> dict[str, float]:
    """``lpfm_frac_<phase>`` per phase, ``lpfm_frac_unknown``, ``lpfm_conf_mean`` and
    ``lpfm_natoms``, for thermo output or ``fix halt``. LAMMPS expressions do not handle
    NaN: the mean confidence of no atoms is 0.0. Two labels that sanitise to one name
    raise ValueError (they would shadow each other)."""
    out: dict[str, float] = {}
    fr = stats.fractions
    for i, label in enumerate(list(stats.phases) + ["unknown"]):
        name = lammps_variable_name(label)
        if name in out:
            clash = [p for p in list(stats.phases) + ["unknown"] if lammps_variable_name(p) == name]
            raise ValueError(
                f"phase labels {clash} all map to LAMMPS variable {name!r}; "
                "rename the phases so their sanitised names differ"
            )
        out[name] = float(fr[i])
    conf = stats.mean_confidence
    out["lpfm_conf_mean"] = float(conf) if np.isfinite(conf) else 0.0
    out["lpfm_natoms"] = float(stats.n_atoms)
    return out


def variable_values(prefix: str, phases, stats: PhaseStatistics) -> dict[str, float]:
    """Every python-style variable's value: per phase under its common name
    (``lpfm_frac_hcp``) and under its AFLOW label (``lpfm_frac_A_hP2_194_c``, the
    names of earlier versions, kept so existing input scripts keep working)."""
    def frac_name(phase: str) -> str:
        return prefixed(prefix, lammps_variable_name(phase))

    def op_name(phase: str) -> str:
        return prefixed(prefix, lammps_variable_name(phase).replace("lpfm_frac_", "lpfm_op_", 1))

    values = {prefixed(prefix, k): v for k, v in as_lammps_variables(stats).items()}
    for k, phase in enumerate(phases):
        values[op_name(phase)] = float(stats.mean_op[k])
    for phase in phases:
        common = common_name(phase)
        if common == phase:
            continue
        for name in (frac_name, op_name):
            alias = name(common)
            if alias not in values:  # a label never loses its own name to an alias
                values[alias] = values[name(phase)]
    return values
