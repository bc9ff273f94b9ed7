"""The phase tracker: from one frame's per-atom answers to a time series row and checkpoints.

Host-free: LAMMPS (``lpfm_insitu.lammps.tracking``) and ``lpfm track`` (``offline``) feed
it frames; it knows nothing of where they come from. Per frame, on every rank, it

1. reduces global statistics over the ranks (``reduce_phase_statistics``);
2. optionally bins the labels in slabs along ``profile_axis`` (``spatial_profile``);
3. appends a row to the HDF5 time series (``PhaseTimeSeries``);
4. evaluates the trigger rules; when one fires it asks the host for a checkpoint (the
   ``checkpoint`` callback writes what the host can write: a per-atom snapshot and a
   LAMMPS restart in situ, the frame as extxyz offline) and records the trigger and the
   files written in the time series.

Continuing a series (a restarted run, or the same output again) rebuilds the trigger
state by replaying the stored rows before the first frame, so cooldown and
``max_checkpoints`` hold across restarts. A run restarted from a checkpoint classifies
the checkpoint's own step first: that keeps the stored checkpoint and does not fire again.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .history import history_statistics, read_history
from .options import TrackingOptions
from .ranks import rank, root_call
from .statistics import PhaseStatistics, profile_edges, reduce_phase_statistics, spatial_profile
from .timeseries import PhaseTimeSeries

__all__ = ["PhaseTracker", "TrackedFrame", "Checkpoint"]


@dataclass
class TrackedFrame:
    """One frame's answers on one rank (``lpfm_insitu.lammps.hooks.InsituFrame`` is one too).

    ``labels`` (n,), ``confidence`` (n,) and ``ops`` (n, n_phases) are this rank's atoms;
    ``positions`` (n, 3) and ``box_lo``/``box_hi`` are needed for a profile only.
    """

    step: int
    time: float
    labels: np.ndarray
    confidence: np.ndarray
    ops: np.ndarray
    positions: np.ndarray | None = None
    box_lo: np.ndarray | None = None
    box_hi: np.ndarray | None = None
    comm: Any = None


@dataclass(frozen=True)
class Checkpoint:
    """A trigger fired: what the host's checkpoint callback is told."""

    step: int
    time: float  # time in the series (host time minus ``time_origin``)
    description: str  # the rules that fired, "; "-joined
    n_fired: int  # checkpoints in the series so far, this one included
    max_checkpoints: int | None
    trigger_state: dict  # ``CheckpointTrigger.state_dict()`` after this checkpoint
    attributes: dict  # the time series attributes


#: ``checkpoint(frame, event) -> files written`` (every rank; collective writes allowed)
CheckpointWriter = Callable[[Any, Checkpoint], "list[str]"]


class PhaseTracker:
    """Per-rank state of phase tracking; ``tracker(frame)`` on every rank, frame by frame.

    phases: the model's phases (labels index them).
    options: a :class:`TrackingOptions` (checked here; ValueError if wrong).
    attributes: the host's attributes for the time series (model, settings, ...), or a
        function that gives them when the first frame comes (LAMMPS' unit style is
        known only then); the tracking options are added unless ``describe_options``
        is false, and ``options.attrs`` last.
    checkpoint: the host's :data:`CheckpointWriter` (None: triggers are only recorded).
    log: where rank 0 says what happens (None: silent, and file warnings are Python
        warnings).
    """

    def __init__(self, phases, options: TrackingOptions, *,
                 attributes: dict | Callable[[], dict] | None = None,
                 checkpoint: CheckpointWriter | None = None,
                 log: Callable[[str], None] | None = None, describe_options: bool = True):
        self.phases = tuple(phases)
        self.options = options.checked()
        self.trigger = self.options.trigger(self.phases)
        self._host_attributes = attributes
        self._describe_options = describe_options
        self.attributes: dict = {}  # of the time series, known when it opens
        self.checkpoint = checkpoint
        self.log = log

        # state, identical on every rank
        self.comm = None
        self.series: PhaseTimeSeries | None = None
        self.stats: PhaseStatistics | None = None
        self.step = -1
        self.time = float("nan")
        self.edges: np.ndarray | None = None
        self.last_trigger = ""
        self.last_trigger_step = -1
        self.last_files: list[str] = []  # files written for the last checkpoint
        self.replayed_rows = 0
        self.fired: list[tuple[int, str]] = []  # (step, description) in this process
        self._resumed: tuple[int, list] | None = None  # (step, its checkpoint records)
        self._initial_range: tuple[float, float] | None = None

    @property
    def h5(self) -> str:
        return self.options.h5

    # --- one frame ------------------------------------------------------------------------------

    def __call__(self, frame) -> Checkpoint | None:
        """Track one frame (collective); the checkpoint it triggered, if any."""
        if self.series is None:
            self._open(frame)
        comm = self.comm
        step = int(frame.step)
        stats = reduce_phase_statistics(frame.labels, frame.confidence, frame.ops,
                                        self.phases, comm)
        profile = edges = None
        axis = self.options.axis
        if axis is not None:
            lo, hi = self._profile_bounds(frame)
            bins = self.options.profile_bins
            edges = profile_edges(lo, hi, bins)
            profile = spatial_profile(frame.labels, np.asarray(frame.positions)[:, axis],
                                      len(self.phases), lo, hi, bins, comm)
        now = float(frame.time) - self.options.time_origin
        self.series.append(step, now, stats, profile=profile, profile_edges=edges)
        self.stats, self.step, self.time, self.edges = stats, step, now, edges

        if self._resumed is not None and self._resumed[0] == step:
            self._resume_checkpoint(step, stats)
            return None
        self._resumed = None
        fired = self.trigger.update(step, stats)
        return self._fire(frame, stats, fired) if fired else None

    def _profile_bounds(self, frame) -> tuple[float, float]:
        profile_range, axis = self.options.profile_range, self.options.axis
        if isinstance(profile_range, tuple):
            return profile_range
        if profile_range == "initial" and self._initial_range is not None:
            return self._initial_range
        lo = float(frame.box_lo[axis])
        hi = float(frame.box_hi[axis])
        if profile_range == "initial":
            self._initial_range = (lo, hi)
        return lo, hi

    def _fire(self, frame, stats: PhaseStatistics, fired: list[str]) -> Checkpoint:
        step = int(frame.step)
        description = "; ".join(fired)
        self.trigger.record_checkpoint(step, stats)
        event = Checkpoint(step, self.time, description, self.trigger.n_fired,
                           self.trigger.max_checkpoints, self.trigger.state_dict(),
                           dict(self.attributes))
        files = list(self.checkpoint(frame, event)) if self.checkpoint is not None else []
        self.series.record_trigger(step, self.time, description, files)
        self.last_files = files
        self.last_trigger, self.last_trigger_step = description, step
        self.fired.append((step, description))
        return event

    def _resume_checkpoint(self, step: int, stats: PhaseStatistics) -> None:
        """The first frame is a stored checkpoint's own step: that checkpoint is written
        already. Bring the trigger state to where the original run left it after this
        step, and keep the checkpoint's record (rewriting the row at this step dropped it)."""
        n_before = self.trigger.n_fired
        self.trigger.update(step, stats)
        self.trigger.record_checkpoint(step, stats)
        self.trigger.n_fired = n_before + 1
        self.trigger.last_fire_step = step
        for description, files in self._resumed[1]:
            self.series.record_trigger(step, self.time, description, files)
            self.last_trigger, self.last_trigger_step = description, step
            self.last_files = list(files)
        self._resumed = None

    # --- opening, and continuing a series ----------------------------------------------------

    def _say(self, text: str) -> None:
        if self.log is not None and rank(self.comm) == 0:
            self.log(text)

    def _open(self, frame) -> None:
        comm = getattr(frame, "comm", None)
        self.comm = comm.Dup() if comm is not None else None
        step = int(frame.step)
        h5 = self.options.h5
        folder = os.path.dirname(os.path.abspath(h5))
        root_call(self.comm, lambda: os.makedirs(folder, exist_ok=True), f"creating {folder}")
        history = root_call(self.comm, lambda: read_history(h5, self.phases, step),
                            f"reading {h5}")
        host = self._host_attributes
        described = self.options.attributes(self.trigger) if self._describe_options else {}
        self.attributes = {**((host() if callable(host) else host) or {}), **described,
                           **self.options.attrs}
        with warnings.catch_warnings(record=self.log is not None) as caught:
            if self.log is not None:
                warnings.simplefilter("always")
            self.series = PhaseTimeSeries.open(h5, self.phases, self.attributes, self.comm,
                                               profile_bins=self.options.profile_bins)
        for w in caught or ():
            self._say(f"lpfm_insitu: warning: {w.message}")
        if history:
            self._replay(history)
            if history["triggers_here"]:
                self._resumed = (step, history["triggers_here"])
        if not self.options.verbose:
            return
        if history and history["step"].size:
            self._say(f"lpfm_insitu: continuing {h5} at step {step}: kept "
                      f"{history['step'].size} row(s) before it and "
                      f"{len(history['trigger_steps'])} checkpoint(s); trigger state rebuilt "
                      f"({self.trigger.n_fired} fired, last at step "
                      f"{self.trigger.last_fire_step})")
        else:
            self._say(f"lpfm_insitu: step {step}: new time series {h5}")

    def _replay(self, history: dict) -> None:
        """Rebuild the trigger state from the stored rows before this run's first step."""
        tsteps = [int(s) for s in history["trigger_steps"]]
        for step, stats in history_statistics(history, self.phases):
            self.trigger.update(step, stats)
            if step in tsteps:
                self.trigger.record_checkpoint(step, stats)
            self.stats, self.step = stats, step
        # what was recorded counts, even if this run's rules differ from the stored run's
        self.trigger.n_fired = len(tsteps)
        self.trigger.last_fire_step = tsteps[-1] if tsteps else None
        self.trigger.last_checkpoint_step = tsteps[-1] if tsteps else None
        if tsteps:
            self.last_trigger_step = tsteps[-1]
            self.last_trigger = history["trigger_descriptions"][-1]
            self.last_files = list(history["trigger_files"][-1])
        if self.options.profile_range == "initial" and history.get("initial_edges") is not None:
            e = history["initial_edges"]
            self._initial_range = (float(e[0]), float(e[-1]))
        self.replayed_rows = history["step"].size

    # --- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the time series file (collective)."""
        if self.series is not None:
            self.series.close()

    def close_at_exit(self) -> None:
        """Close the file on rank 0 without a collective (interpreter exit)."""
        series = self.series
        handle = getattr(series, "_file", None) if series is not None else None
        if handle is not None:
            try:
                handle.close()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            series._file = None
