"""What a phase tracker is asked to do: one checked set of options, shared by every host.

In situ these are the keywords of ``lpfm_insitu.lammps.tracking.track``; offline the
options of ``lpfm track``. :meth:`TrackingOptions.checked` raises ValueError with a
message that names the keyword, which each host prefixes with where it came from.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .triggers import CheckpointTrigger, parse_rules

__all__ = ["TrackingOptions", "AXES", "PROFILE_RANGES", "rules_spec"]

AXES = {"x": 0, "y": 1, "z": 2}
PROFILE_RANGES = ("initial", "box")


@dataclass(frozen=True)
class TrackingOptions:
    """Where the time series goes, the profile, and when to ask for a checkpoint.

    h5: HDF5 time series to create, or to continue after a restart.
    profile_axis: "x", "y" or "z" to store phase fractions in ``profile_bins`` slabs.
    profile_range: slab edges: "initial" (box bounds along the axis at the first frame of
        the series, kept fixed: a lab-frame space-time map), "box" (the box of each
        frame), or ``(lo, hi)``.
    triggers: rules such as "appear:hcp>0.05, change:bcc>0.1, confidence<2.0"
        (grammar: ``lpfm_insitu.tracking.triggers.GRAMMAR``).
    cooldown: steps after a checkpoint during which no trigger fires.
    max_checkpoints: at most this many checkpoints in the whole series (None: no limit).
    snapshot_dir: folder of the files a checkpoint writes (created when one fires).
    time_origin: subtracted from the host's time in the files.
    attrs: extra attributes for the time series file (they win over the others).
    verbose: say when the series is created or continued.
    """

    h5: str = "track.h5"
    profile_axis: str | None = None
    profile_bins: int = 40
    profile_range: Any = "initial"
    triggers: str | None = None
    cooldown: int = 0
    max_checkpoints: int | None = None
    snapshot_dir: str = "checkpoints"
    time_origin: float = 0.0
    attrs: dict | None = None
    verbose: bool = True

    def checked(self) -> "TrackingOptions":
        """These options, normalised (paths as str, numbers as numbers); ValueError if wrong."""
        try:
            # rounded: $(time-step*dt) after a restart differs in the last bits
            time_origin = round(float(self.time_origin), 9)
        except (TypeError, ValueError):
            raise ValueError(f"time_origin={self.time_origin!r} must be a number") from None
        axis, bins = self.profile_axis, self.profile_bins
        if axis is not None and axis not in AXES:
            raise ValueError(f"profile_axis={axis!r} must be 'x', 'y', 'z' or None")
        if axis is not None and (not isinstance(bins, (int, np.integer)) or bins < 1):
            raise ValueError(f"profile_bins={bins!r} must be a positive integer")
        return dataclasses.replace(
            self, h5=os.fspath(self.h5), snapshot_dir=os.fspath(self.snapshot_dir),
            profile_bins=int(bins) if axis is not None else None,
            profile_range=_checked_range(self.profile_range), time_origin=time_origin,
            attrs=dict(self.attrs or {}), verbose=bool(self.verbose))

    @property
    def axis(self) -> int | None:
        """Column of ``profile_axis`` in the positions (None: no profile)."""
        return None if self.profile_axis is None else AXES[self.profile_axis]

    def trigger(self, phases) -> CheckpointTrigger:
        """A fresh trigger for these rules on the model's ``phases`` (ValueError if wrong)."""
        try:
            return CheckpointTrigger(parse_rules(self.triggers, phases),
                                     cooldown_steps=int(self.cooldown),
                                     max_checkpoints=self.max_checkpoints)
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def attributes(self, trigger: CheckpointTrigger) -> dict[str, Any]:
        """The tracking configuration as stored in the time series and snapshots."""
        return {
            "triggers": rules_spec(trigger),
            "cooldown": trigger.cooldown_steps,
            "max_checkpoints": trigger.max_checkpoints,
            "profile_axis": self.profile_axis or "none",
            "profile_range": (list(self.profile_range) if isinstance(self.profile_range, tuple)
                              else self.profile_range),
            "snapshot_dir": self.snapshot_dir,
            "time_origin": self.time_origin,
        }


def rules_spec(trigger: CheckpointTrigger) -> str:
    """The trigger's rules as one string (empty without rules)."""
    return ", ".join(r.spec for r in trigger.rules)


def _checked_range(profile_range):
    if isinstance(profile_range, str):
        if profile_range not in PROFILE_RANGES:
            raise ValueError(f"profile_range={profile_range!r}: use 'initial', 'box' or (lo, hi)")
        return profile_range
    try:
        lo, hi = (float(v) for v in profile_range)
    except (TypeError, ValueError):
        raise ValueError(f"profile_range={profile_range!r}: use 'initial', 'box' or (lo, hi)")
    if not hi > lo:
        raise ValueError(f"profile_range={profile_range!r} needs hi > lo")
    return (lo, hi)
