"""The numbers a report gives of a time series (as ``read_time_series`` returns it).

Fractions at the first and last row and the largest seen, per phase; the step and time
range; the mean confidence at both ends; the triggers; and the parent phase (the
dominant one at the start), which plots and summaries treat apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["series_summary", "parent_index"]


def parent_index(data) -> int:
    """The dominant known phase at the first row (the crystal the run starts from)."""
    n_known = len(data["phases"]) - 1
    if not n_known or not len(data["fractions"]):
        return -1
    return int(np.argmax(np.asarray(data["fractions"][0])[:n_known]))


def series_summary(data) -> dict[str, Any]:
    """rows, phases, steps/times (first, last), first/last/peak fractions per phase,
    mean_confidence (first, last), parent (phase or None), and triggers as
    (step, time, description, files); range and fraction keys only if there are rows."""
    phases = list(data["phases"])
    fr = np.asarray(data["fractions"])
    trig = data["triggers"]
    out: dict[str, Any] = {
        "rows": int(fr.shape[0]), "phases": phases,
        "triggers": [(int(s), float(t), d, f) for s, t, d, f in
                     zip(trig["step"], trig["time"], trig["description"], trig["files"])]}
    if not fr.shape[0]:
        out["parent"] = None
        return out
    step, time, conf = (np.asarray(data[k]) for k in ("step", "time", "mean_confidence"))
    k = parent_index(data)
    out.update(
        steps=(int(step[0]), int(step[-1])), times=(float(time[0]), float(time[-1])),
        mean_confidence=(float(conf[0]), float(conf[-1])),
        parent=phases[k] if k >= 0 else None,
        first={p: float(fr[0, j]) for j, p in enumerate(phases)},
        last={p: float(fr[-1, j]) for j, p in enumerate(phases)},
        peak={p: float(fr[:, j].max()) for j, p in enumerate(phases)})
    return out
