"""What an existing time series holds before a step: the history a continued run replays.

A run restarted from a checkpoint at step S (or ``lpfm track`` run again into the same
file) reopens the series; the rows before its first step stay, and the trigger state
(count, cooldown, armed rules, ``change`` references) is rebuilt from them.
"""

from __future__ import annotations

import os

import numpy as np

from .statistics import PhaseStatistics
from .timeseries import read_time_series

__all__ = ["read_history", "history_statistics"]

_ROW_KEYS = ("step", "counts", "n_atoms", "mean_confidence", "mean_op",
             "mean_confidence_per_phase")


def read_history(path: str, phases, step: int) -> dict | None:
    """Rows and triggers of an existing series before ``step`` (rank 0), or None.

    Keys: the row arrays of :data:`_ROW_KEYS`; ``trigger_steps``,
    ``trigger_descriptions`` and ``trigger_files`` of the triggers before ``step``;
    ``triggers_here`` (description, files) of those at ``step`` itself; and
    ``initial_edges``, the first finite profile edges (or None).
    """
    if not os.path.exists(path):
        return None
    try:
        data = read_time_series(path)
    except Exception:  # noqa: BLE001 - the writer's open reports what is wrong with the file
        return None
    if list(data["phases"]) != list(phases) + ["unknown"]:
        return None  # PhaseTimeSeries.open raises with the explanation
    keep = np.asarray(data["step"]) < step
    trig = data["triggers"]
    tkeep = np.asarray(trig["step"]) < step
    out = {key: np.asarray(data[key])[keep] for key in _ROW_KEYS}
    out["trigger_steps"] = np.asarray(trig["step"])[tkeep]
    out["triggers_here"] = [(d, f) for s, d, f in zip(trig["step"], trig["description"],
                                                      trig["files"]) if int(s) == step]
    out["trigger_descriptions"] = [d for d, k in zip(trig["description"], tkeep) if k]
    out["trigger_files"] = [f for f, k in zip(trig["files"], tkeep) if k]
    out["initial_edges"] = None
    if "profile_edges" in data and keep.any():
        edges = np.asarray(data["profile_edges"])[keep]
        finite = np.all(np.isfinite(edges), axis=1)
        if finite.any():
            out["initial_edges"] = edges[int(np.argmax(finite))]
    return out


def history_statistics(history: dict, phases):
    """(step, PhaseStatistics) of every stored row, in order."""
    for k in range(history["step"].size):
        yield int(history["step"][k]), PhaseStatistics(
            phases, history["counts"][k], int(history["n_atoms"][k]),
            float(history["mean_confidence"][k]), history["mean_op"][k],
            history["mean_confidence_per_phase"][k])
