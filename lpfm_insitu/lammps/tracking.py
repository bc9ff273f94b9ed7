'''On-the-fly phase tracking in a LAMMPS run: statistics, time series, checkpoint triggers.

Input-script interface (LAMMPS with the PYTHON package; every line is needed)::

    fix      lpfm all property/atom i_lpfm_phase d_lpfm_conf d2_lpfm_op 4 ghost no
    python   lpfm_invoke here """
    from lpfm_insitu.lammps import configure
    from lpfm_insitu.lammps.tracking import track
    phases = ["bcc", "hcp", "fcc", "omega"]  # common names or AFLOW labels (A_hP2_194_c)
    lpfm_invoke = configure(model="default", every=50, candidates=phases, ops=phases)
    track(lpfm_invoke, h5="track.h5", profile_axis="z", profile_bins=40,
          triggers="appear:hcp>0.05, change:bcc>0.2",
          cooldown=1000, max_checkpoints=3, snapshot_dir="checkpoints")
    """
    python   lpfm_variables input 1 SELF format p exists
    python   lpfm_variables invoke           # declares the v_lpfm_* variables below
    fix      lpfm_run all python/invoke 50 end_of_step lpfm_invoke
    python   lpfm_setup input 1 SELF format p exists   # optional: statistics at step 0 too
    python   lpfm_setup invoke
    fix      lpfm_halt all halt 50 v_lpfm_checkpoint > 0 error continue   # AFTER lpfm_run
    thermo   50                              # a multiple of every: see "Variables"
    thermo_style custom step temp v_lpfm_frac_bcc v_lpfm_frac_hcp v_lpfm_conf_mean

    label    lpfm_loop                       # the checkpoint loop: restart at the trigger step
    run      ${steps} upto
    if "${lpfm_checkpoint} > 0" then "write_restart ${lpfm_restart_file}" "python lpfm_reset invoke"
    if "$(step) < ${steps}" then "jump SELF lpfm_loop"

``track`` attaches a :class:`Tracker` to the classifier as a hook (``InsituFrame``, every
rank, after every invocation). At each invocation the tracker

1. reduces global statistics over the ranks (``reduce_phase_statistics``): fraction of
   every phase and of unknown atoms, mean confidence, mean order parameter per phase,
   bit-identical on every rank;
2. optionally bins the labels in slabs along ``profile_axis`` (``spatial_profile``);
3. appends a row to the SWMR HDF5 time series ``h5`` (``PhaseTimeSeries``: readable while
   the run goes on, every appended row survives SIGKILL);
4. evaluates the trigger rules (``parse_rules``/``CheckpointTrigger``, grammar in
   ``lpfm_insitu.tracking.triggers.GRAMMAR``). When a rule fires it writes the per-atom snapshot
   (ids, types, x, v, box, labels, confidence, all logits; atomic rename) at once,
   records the trigger and the file names in the time series, prints which rule fired
   (rank 0), and raises the flag ``v_lpfm_checkpoint``. ``fix halt`` then ends the run
   after this step, and the input loop writes the LAMMPS restart file
   ``${lpfm_restart_file}`` and continues (LAMMPS commands cannot be issued from inside a
   run, hence the loop). ``python lpfm_reset invoke`` clears the flag and writes a line
   about the checkpoint into the LAMMPS log.

Variables (python-style; declared by ``python lpfm_variables invoke``):

==============================  ==========================================================
``v_lpfm_frac_<phase>``         fraction of atoms labelled <phase> (every model phase), by
                                common name (``lpfm_frac_hcp``, ``lpfm_frac_beta_Sn``: "-"
                                becomes "_") and by AFLOW label (``lpfm_frac_A_hP2_194_c``)
``v_lpfm_frac_unknown``         fraction of atoms below the confidence threshold
``v_lpfm_conf_mean``            mean confidence (max logit over the candidates)
``v_lpfm_op_<phase>``           mean order parameter (logit) of <phase> over atoms labelled
                                <phase>; nan if there are none
``v_lpfm_natoms``               classified atoms
``v_lpfm_step``                 step of the statistics above (-1 before the first invocation)
``v_lpfm_checkpoint``           1 from a trigger firing until ``lpfm_reset``, else 0
``v_lpfm_ncheckpoints``         triggers fired so far in this time series (restarts included)
``v_lpfm_restart_file``         restart file name for the pending (or last) checkpoint
``v_lpfm_snapshot_file``        its per-atom snapshot
``v_lpfm_trigger``              the rule(s) that fired last, as text
==============================  ==========================================================

They return the values of the LATEST invocation. ``fix python/invoke N end_of_step`` runs
before thermo output and before ``fix halt`` at the same step (if ``fix halt`` is defined
after it), so thermo lines at multiples of N show that step's statistics; at other steps
they show the last multiple of N (``v_lpfm_step`` says which). Without the
``lpfm_setup`` lines step 0 is not classified and fractions read 0 until step N; with
them, step 0 (and a ``run 0``) has its statistics. A run restarted from a checkpoint
then classifies the checkpoint's step first: that does not fire the trigger again. ``prefix=`` renames every
``lpfm_`` above (two trackers in one input need two prefixes).

Restarts: a run restarted from a checkpoint (``read_restart``) with the same ``track(...)``
reopens the time series: rows from the restart step on are replaced (no duplicate steps),
and the trigger state (count, cooldown, armed rules, ``change`` references) is rebuilt by
replaying the stored rows before the restart step, so cooldown and ``max_checkpoints``
hold across restarts. The state at each checkpoint is also stored in its snapshot
(attribute ``trigger_state``).
'''

from __future__ import annotations

import atexit
import os
import sys
import warnings
from typing import Any

import numpy as np

from ..tracking.statistics import (PhaseStatistics, _rank, _root_call, as_lammps_variables,
                           lammps_variable_name, profile_edges, reduce_phase_statistics,
                           spatial_profile)
from ..training.prototypes import common_name
from ..tracking.snapshot import write_snapshot
from ..tracking.timeseries import PhaseTimeSeries, read_time_series
from ..tracking.triggers import CheckpointTrigger, parse_rules
from .errors import InsituError
from .insitu import _world_rank

__all__ = ["track", "Tracker", "AXES"]

AXES = {"x": 0, "y": 1, "z": 2}
PROFILE_RANGES = ("initial", "box")
STRING_LENGTH = 1024  # `length` of the string-valued python variables
_PREFIXES: dict[str, "Tracker"] = {}


def _fail(message: str) -> InsituError:
    return InsituError(f"lpfm_insitu.lammps.tracking: {message}", agreed=True)


def track(classifier, *, h5: str = "track.h5", profile_axis: str | None = None,
          profile_bins: int = 40, profile_range: Any = "initial", triggers: str | None = None,
          cooldown: int = 0, max_checkpoints: int | None = None,
          snapshot_dir: str = "checkpoints", restart_name: str = "restart.{step}",
          snapshot_name: str = "snapshot.{step}.h5", velocities: bool = True,
          attrs: dict | None = None, time_origin: float = 0.0, prefix: str = "lpfm",
          verbose: bool = True) -> "Tracker":
    """Track phases on the fly: attach a :class:`Tracker` to a classifier (see module doc).

    classifier: the callback returned by ``configure`` (or its ``.classifier``).
    h5: HDF5 time series to create, or to continue after a restart.
    profile_axis: "x", "y" or "z" to store phase fractions in ``profile_bins`` slabs.
    profile_range: slab edges: "initial" (box bounds along the axis at the first
        invocation of the series, kept fixed: a lab-frame space-time map), "box" (the box
        at each invocation), or ``(lo, hi)``.
    triggers: rules such as "appear:A_hP3_191_ad>0.05, change:A_hP2_194_c>0.1,
        confidence<2.0" (phase names of the model, or "unknown").
    cooldown: steps after a checkpoint during which no trigger fires (a rule that became
        true in the meantime fires at the first step allowed).
    max_checkpoints: at most this many checkpoints in the whole series (None: no limit).
    snapshot_dir: folder of snapshots and restart files (created).
    restart_name / snapshot_name: file names in it; ``{step}`` is the trigger step.
    velocities: store velocities in the snapshots.
    attrs: extra attributes for the time series file.
    time_origin: subtracted from LAMMPS' simulation time in the files (LAMMPS 29Sep2021
        keeps the time of an equilibration across ``reset_timestep``; the shock example
        passes ``$(time-step*dt)`` so that t = 0 at the start of the shock).
    prefix: names of the functions and variables (``<prefix>_frac_...``, ...).
    """
    clf = getattr(classifier, "classifier", classifier)
    if not (hasattr(clf, "settings") and hasattr(clf, "phases")):
        raise _fail(f"track() needs the callback returned by configure(...), got {classifier!r}")
    tracker = Tracker(clf, h5=h5, profile_axis=profile_axis, profile_bins=profile_bins,
                      profile_range=profile_range, triggers=triggers, cooldown=cooldown,
                      max_checkpoints=max_checkpoints, snapshot_dir=snapshot_dir,
                      restart_name=restart_name, snapshot_name=snapshot_name,
                      velocities=velocities, attrs=attrs, time_origin=time_origin,
                      prefix=prefix, verbose=verbose)
    # Attach as a hook of this classifier only (the global hooks.register would also see
    # the frames of other classifiers of the same input, e.g. a raw and a denoised one).
    settings = clf.settings
    settings.on_result = tuple(settings.on_result) + (tracker,)
    tracker.publish(sys.modules["__main__"].__dict__)
    if verbose and _world_rank() == 0:
        tracker.announce()
    return tracker


class Tracker:
    """Per-rank state of on-the-fly tracking; called as ``tracker(frame)`` on every rank."""

    def __init__(self, classifier, *, h5, profile_axis, profile_bins, profile_range, triggers,
                 cooldown, max_checkpoints, snapshot_dir, restart_name, snapshot_name,
                 velocities, attrs, time_origin, prefix, verbose):
        self.classifier = classifier
        self.phases = tuple(classifier.phases)
        self.h5 = os.fspath(h5)
        self.prefix = str(prefix)
        self.verbose = bool(verbose)
        self.velocities = bool(velocities)
        try:
            # rounded: $(time-step*dt) after a restart differs in the last bits
            self.time_origin = round(float(time_origin), 9)
        except (TypeError, ValueError):
            raise _fail(f"time_origin={time_origin!r} must be a number") from None
        if not self.prefix.isidentifier():
            raise _fail(f"prefix={prefix!r} must be a valid name (letters, digits, _)")
        if self.prefix in _PREFIXES:
            raise _fail(f"a tracker with prefix {self.prefix!r} exists already; give the "
                        "second tracker another prefix= (its variables get that prefix)")
        if profile_axis is not None and profile_axis not in AXES:
            raise _fail(f"profile_axis={profile_axis!r} must be 'x', 'y', 'z' or None")
        self.axis = None if profile_axis is None else AXES[profile_axis]
        self.profile_axis = profile_axis
        if profile_axis is not None and (not isinstance(profile_bins, (int, np.integer))
                                         or profile_bins < 1):
            raise _fail(f"profile_bins={profile_bins!r} must be a positive integer")
        self.profile_bins = int(profile_bins) if profile_axis is not None else None
        if isinstance(profile_range, str):
            if profile_range not in PROFILE_RANGES:
                raise _fail(f"profile_range={profile_range!r}: use 'initial', 'box' or (lo, hi)")
            self.profile_range = profile_range
        else:
            try:
                lo, hi = (float(v) for v in profile_range)
            except (TypeError, ValueError):
                raise _fail(f"profile_range={profile_range!r}: use 'initial', 'box' or (lo, hi)")
            if not hi > lo:
                raise _fail(f"profile_range={profile_range!r} needs hi > lo")
            self.profile_range = (lo, hi)
        try:
            rules = parse_rules(triggers, self.phases)
            self.trigger = CheckpointTrigger(rules, cooldown_steps=int(cooldown),
                                             max_checkpoints=max_checkpoints)
        except (ValueError, TypeError) as exc:
            raise _fail(str(exc)) from None
        self.rules_spec = ", ".join(r.spec for r in rules)
        for name, pattern in (("restart_name", restart_name), ("snapshot_name", snapshot_name)):
            try:
                pattern.format(step=0)
            except (KeyError, IndexError, ValueError, AttributeError):
                raise _fail(f"{name}={pattern!r} may only use the field {{step}}")
        self.snapshot_dir = os.fspath(snapshot_dir)
        self.restart_name = restart_name
        self.snapshot_name = snapshot_name
        self.user_attrs = dict(attrs or {})
        _PREFIXES[self.prefix] = self

        # state, identical on every rank
        self.comm = None
        self.series: PhaseTimeSeries | None = None
        self.stats: PhaseStatistics | None = None
        self.step = -1
        self.time = float("nan")
        self.edges: np.ndarray | None = None
        self.pending = 0
        self.restart_file = ""
        self.snapshot_file = ""
        self.last_trigger = ""
        self.last_trigger_step = -1
        self.replayed_rows = 0
        self._resumed: tuple[int, list] | None = None  # (step, its checkpoint records)
        self._initial_range: tuple[float, float] | None = None
        self.fired: list[tuple[int, str]] = []  # (step, description) in this process
        self._values = self._empty_values()

    # --- configuration ---------------------------------------------------------------------

    def _name(self, lpfm_name: str) -> str:
        return self.prefix + lpfm_name[len("lpfm"):]

    def _empty_values(self) -> dict[str, float]:
        zero = PhaseStatistics(self.phases, np.zeros(len(self.phases) + 1, np.int64), 0,
                               float("nan"), np.full(len(self.phases), np.nan))
        return self._variable_values(zero)

    def _variable_values(self, stats: PhaseStatistics) -> dict[str, float]:
        """Every python-style variable's value: per phase under its common name
        (``lpfm_frac_hcp``) and under its AFLOW label (``lpfm_frac_A_hP2_194_c``, the
        names of earlier versions, kept so existing input scripts keep working)."""
        values = {self._name(k): v for k, v in as_lammps_variables(stats).items()}
        for k, phase in enumerate(self.phases):
            values[self._op_name(phase)] = float(stats.mean_op[k])
        for phase in self.phases:
            common = common_name(phase)
            if common == phase:
                continue
            for name in (self._frac_name, self._op_name):
                alias = name(common)
                if alias not in values:  # a label never loses its own name to an alias
                    values[alias] = values[name(phase)]
        return values

    def _frac_name(self, phase: str) -> str:
        return self._name(lammps_variable_name(phase))

    def _op_name(self, phase: str) -> str:
        return self._name(lammps_variable_name(phase).replace("lpfm_frac_", "lpfm_op_", 1))

    def attributes(self) -> dict[str, Any]:
        """Model identity and configuration, stored in the time series and snapshots."""
        clf, s = self.classifier, self.classifier.settings
        model = clf.model
        out = {
            "source": "lpfm_insitu.lammps.tracking (in situ)",
            "model": str(model.metadata.get("path", getattr(clf, "model_name", s.model))),
            "model_name": str(model.metadata.get("name", s.model)),
            "model_package_version": str(model.metadata.get("package_version", "")),
            "confidence_threshold": float(model.threshold_for(s.denoise_steps)),
            "candidates": list(s.candidates) if s.candidates is not None else "all",
            "every": s.every if s.every is not None else "unchecked",
            "denoise_steps": int(s.denoise_steps),
            "types": list(s.types) if s.types is not None else "all",
            "length_scale_from": ("nn_distance" if s.nn_distance is not None else
                                  "atomic_volume" if s.atomic_volume is not None else
                                  "local (each atom's neighbourhood)"),
            "nn_distance": s.nn_distance,
            "atomic_volume": s.atomic_volume,
            "precision": s.precision,
            "triggers": self.rules_spec,
            "cooldown": self.trigger.cooldown_steps,
            "max_checkpoints": self.trigger.max_checkpoints,
            "profile_axis": self.profile_axis or "none",
            "profile_range": (list(self.profile_range) if isinstance(self.profile_range, tuple)
                              else self.profile_range),
            "snapshot_dir": self.snapshot_dir,
            "time_origin": self.time_origin,
            # LAMMPS unit style of the times and positions (plots label their axes with it)
            "units": str(getattr(clf, "units", None) or "unknown"),
        }
        out.update(self.user_attrs)
        return out

    def announce(self) -> None:
        names = [self._name("lpfm_frac_<phase>"), self._name("lpfm_frac_unknown"),
                 self._name("lpfm_conf_mean"), self._name("lpfm_checkpoint")]
        most = self.trigger.max_checkpoints
        profile = ""
        if self.profile_axis:
            kind = self.profile_range if isinstance(self.profile_range, str) else "fixed"
            profile = (f", profile along {self.profile_axis} in {self.profile_bins} bins "
                       f"({kind} range)")
        lines = [f"lpfm_insitu: tracking into {self.h5}{profile}",
                 f"lpfm_insitu:   triggers: {self.rules_spec or 'none'}; cooldown "
                 f"{self.trigger.cooldown_steps} steps; max checkpoints "
                 f"{most if most is not None else 'unlimited'}; files in {self.snapshot_dir}/",
                 f"lpfm_insitu:   variables (after `python {self._name('lpfm_variables')} "
                 "invoke`): " + ", ".join(f"v_{n}" for n in names) + ", ..."]
        print("\n".join(lines), flush=True)

    # --- functions and variables for the input script ---------------------------------------

    def functions(self) -> dict[str, Any]:
        """name -> (function, LAMMPS format) for every python-style variable."""
        out: dict[str, Any] = {}
        for name in self._values:
            out[name] = (self._getter(name), "f")
        out[self._name("lpfm_step")] = (lambda: int(self.step), "i")
        out[self._name("lpfm_checkpoint")] = (lambda: int(self.pending), "i")
        out[self._name("lpfm_ncheckpoints")] = (lambda: int(self.trigger.n_fired), "i")
        out[self._name("lpfm_restart_file")] = (lambda: self.restart_file or "none", "s")
        out[self._name("lpfm_snapshot_file")] = (lambda: self.snapshot_file or "none", "s")
        out[self._name("lpfm_trigger")] = (lambda: self.last_trigger or "none", "s")
        return out

    def _getter(self, name):
        def value():
            return float(self._values[name])

        value.__name__ = name
        return value

    def publish(self, namespace: dict) -> None:
        """Put the variable functions, ``<prefix>_variables`` and ``<prefix>_reset`` into
        ``namespace`` (``__main__``, where LAMMPS' ``python ... exists`` looks)."""
        for name, (fn, _) in self.functions().items():
            namespace[name] = fn
        namespace[self._name("lpfm_variables")] = self.declare_variables
        namespace[self._name("lpfm_reset")] = self.reset

    def variable_commands(self) -> list[str]:
        """LAMMPS commands that declare every python-style variable of this tracker."""
        cmds = []
        for name, (_, fmt) in self.functions().items():
            length = f" length {STRING_LENGTH}" if fmt == "s" else ""
            cmds.append(f"python {name} return v_{name} format {fmt}{length} exists")
            cmds.append(f"variable {name} python {name}")
        cmds.append(f"python {self._name('lpfm_reset')} input 1 SELF format p exists")
        return cmds

    def declare_variables(self, lmpptr) -> None:
        """``python lpfm_variables invoke``: declare the variables (not during a run)."""
        lmp = _lammps(lmpptr)
        for cmd in self.variable_commands():
            lmp.command(cmd)

    def reset(self, lmpptr=None) -> None:
        """``python lpfm_reset invoke``: the restart is written; clear the flag, log it."""
        if self.pending and lmpptr is not None:
            text = (f"lpfm_insitu: step {self.last_trigger_step}: checkpoint for "
                    f"{self.last_trigger}: snapshot {self.snapshot_file}, restart "
                    f"{self.restart_file}")
            if not os.path.exists(self.restart_file):
                text += (" (NOT FOUND: write it with write_restart and the variable "
                         f"{self._name('lpfm_restart_file')} before this reset)")
            _lammps(lmpptr).command(f'print """{text}"""')
        self.pending = 0

    # --- the hook -----------------------------------------------------------------------------

    def __call__(self, frame) -> None:
        if self.series is None:
            self._open(frame)
        comm = self.comm
        step = int(frame.step)
        stats = reduce_phase_statistics(frame.labels, frame.confidence, frame.ops,
                                        self.phases, comm)
        profile = edges = None
        if self.axis is not None:
            lo, hi = self._profile_bounds(frame)
            edges = profile_edges(lo, hi, self.profile_bins)
            profile = spatial_profile(frame.labels, np.asarray(frame.positions)[:, self.axis],
                                      len(self.phases), lo, hi, self.profile_bins, comm)
        now = float(frame.time) - self.time_origin
        self.series.append(step, now, stats, profile=profile, profile_edges=edges)
        self.stats, self.step, self.time, self.edges = stats, step, now, edges
        self._values = self._variable_values(stats)

        if self._resumed is not None and self._resumed[0] == step:
            self._resume_checkpoint(step, stats)
            return
        self._resumed = None
        fired = self.trigger.update(step, stats)
        if fired:
            self._checkpoint(frame, stats, fired)

    def _resume_checkpoint(self, step: int, stats: PhaseStatistics) -> None:
        """A restarted run classified its checkpoint's own step (the ``<prefix>_first``
        companion does, while the run is set up): that checkpoint is written already.
        Bring the trigger state to where the original run left it after this step, and
        keep the checkpoint's record (rewriting the row at this step dropped it)."""
        n_before = self.trigger.n_fired
        self.trigger.update(step, stats)
        self.trigger.record_checkpoint(step, stats)
        self.trigger.n_fired = n_before + 1
        self.trigger.last_fire_step = step
        for description, files in self._resumed[1]:
            self.series.record_trigger(step, self.time, description, files)
            self.last_trigger, self.last_trigger_step = description, step
            self.snapshot_file = files[0] if files else ""
            self.restart_file = files[1] if len(files) > 1 else ""
        self._resumed = None

    def _profile_bounds(self, frame) -> tuple[float, float]:
        if isinstance(self.profile_range, tuple):
            return self.profile_range
        if self.profile_range == "initial" and self._initial_range is not None:
            return self._initial_range
        lo = float(frame.box_lo[self.axis])
        hi = float(frame.box_hi[self.axis])
        if self.profile_range == "initial":
            self._initial_range = (lo, hi)
        return lo, hi

    def _checkpoint(self, frame, stats, fired: list[str]) -> None:
        step = int(frame.step)
        description = "; ".join(fired)
        restart = os.path.join(self.snapshot_dir, self.restart_name.format(step=step))
        snapshot = os.path.join(self.snapshot_dir, self.snapshot_name.format(step=step))
        self.trigger.record_checkpoint(step, stats)
        state = self.trigger.state_dict()
        _root_call(self.comm, lambda: os.makedirs(self.snapshot_dir, exist_ok=True),
                   f"creating {self.snapshot_dir}")
        vel = frame.velocities() if self.velocities else None
        attrs = {**self.attributes(), "trigger": description, "trigger_state": state,
                 "restart_file": restart, "time_series": self.h5}
        write_snapshot(snapshot, step, self.time, frame.box(), frame.ids, frame.types,
                       frame.positions, vel, frame.labels, frame.confidence, frame.ops,
                       self.phases, attrs=attrs, comm=self.comm)
        self.series.record_trigger(step, self.time, description, [snapshot, restart])
        self.pending = 1
        self.restart_file, self.snapshot_file = restart, snapshot
        self.last_trigger, self.last_trigger_step = description, step
        self.fired.append((step, description))
        if _rank(self.comm) == 0:
            n, most = self.trigger.n_fired, self.trigger.max_checkpoints
            print(f"lpfm_insitu: step {step}: checkpoint trigger {n}"
                  f"{'' if most is None else f'/{most}'} fired: {description}\n"
                  f"lpfm_insitu:   snapshot {snapshot} written; restart {restart} to be "
                  f"written by the input loop (fix halt on v_{self._name('lpfm_checkpoint')})",
                  flush=True)

    # --- opening, and continuing after a restart ---------------------------------------------

    def _open(self, frame) -> None:
        self.comm = frame.comm.Dup() if frame.comm is not None else None
        step = int(frame.step)
        folder = os.path.dirname(os.path.abspath(self.h5))
        _root_call(self.comm, lambda: os.makedirs(folder, exist_ok=True), f"creating {folder}")
        history = _root_call(self.comm, lambda: _read_history(self.h5, self.phases, step),
                             f"reading {self.h5}")
        attrs = self.attributes()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.series = PhaseTimeSeries.open(self.h5, self.phases, attrs, self.comm,
                                               profile_bins=self.profile_bins)
        if _rank(self.comm) == 0:
            for w in caught:
                print(f"lpfm_insitu: warning: {w.message}", flush=True)
        if history:
            self._replay(history)
            if history["triggers_here"]:
                self._resumed = (step, history["triggers_here"])
        _register_close(self)
        if self.verbose and _rank(self.comm) == 0:
            if history and history["step"].size:
                print(f"lpfm_insitu: continuing {self.h5} at step {step}: kept "
                      f"{history['step'].size} row(s) before it and "
                      f"{len(history['trigger_steps'])} checkpoint(s); trigger state rebuilt "
                      f"({self.trigger.n_fired} fired, last at step "
                      f"{self.trigger.last_fire_step})", flush=True)
            else:
                print(f"lpfm_insitu: step {step}: new time series {self.h5}", flush=True)

    def _replay(self, history: dict) -> None:
        """Rebuild the trigger state from the stored rows before this run's first step."""
        trigger_steps = set(int(s) for s in history["trigger_steps"])
        n = history["step"].size
        for k in range(n):
            stats = PhaseStatistics(self.phases, history["counts"][k], int(history["n_atoms"][k]),
                                    float(history["mean_confidence"][k]), history["mean_op"][k],
                                    history["mean_confidence_per_phase"][k])
            step = int(history["step"][k])
            self.trigger.update(step, stats)
            if step in trigger_steps:
                self.trigger.record_checkpoint(step, stats)
            self.stats, self.step = stats, step
        # what was recorded counts, even if this run's rules differ from the stored run's
        tsteps = [int(s) for s in history["trigger_steps"]]
        self.trigger.n_fired = len(tsteps)
        self.trigger.last_fire_step = tsteps[-1] if tsteps else None
        self.trigger.last_checkpoint_step = tsteps[-1] if tsteps else None
        if tsteps:
            self.last_trigger_step = tsteps[-1]
            self.last_trigger = history["trigger_descriptions"][-1]
            files = history["trigger_files"][-1]
            self.snapshot_file = files[0] if files else ""
            self.restart_file = files[1] if len(files) > 1 else ""
        if self.profile_range == "initial" and history.get("initial_edges") is not None:
            e = history["initial_edges"]
            self._initial_range = (float(e[0]), float(e[-1]))
        self.replayed_rows = n

    def close(self) -> None:
        """Close the time series file (collective; the file is also closed at exit)."""
        if self.series is not None:
            self.series.close()

    def _close_at_exit(self) -> None:
        """Close the file on rank 0 without a collective (interpreter exit)."""
        series = self.series
        handle = getattr(series, "_file", None) if series is not None else None
        if handle is not None:
            try:
                handle.close()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            series._file = None


def _read_history(path: str, phases, step: int) -> dict | None:
    """Rows and triggers of an existing series before ``step`` (rank 0), or None."""
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
    out = {key: np.asarray(data[key])[keep] for key in
           ("step", "counts", "n_atoms", "mean_confidence", "mean_op",
            "mean_confidence_per_phase")}
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


_OPEN_TRACKERS: list[Tracker] = []


def _register_close(tracker: Tracker) -> None:
    if not _OPEN_TRACKERS:
        atexit.register(_close_all)
    _OPEN_TRACKERS.append(tracker)


def _close_all() -> None:
    for tracker in _OPEN_TRACKERS:
        tracker._close_at_exit()
    _OPEN_TRACKERS.clear()


def _lammps(lmpptr):
    if hasattr(lmpptr, "command"):
        return lmpptr
    from lammps import lammps

    return lammps(ptr=lmpptr)


def read_tracking(path) -> dict:
    """The time series (``read_time_series``) plus the snapshot paths of its triggers."""
    data = read_time_series(path)
    data["snapshots"] = [files[0] for files in data["triggers"]["files"] if files]
    data["restarts"] = [files[1] for files in data["triggers"]["files"] if len(files) > 1]
    return data


def summary(path) -> dict:
    """Numbers for a report: first/last/peak fractions per phase, triggers fired."""
    data = read_time_series(path)
    phases = data["phases"]
    fr = np.asarray(data["fractions"])
    out = {"rows": int(fr.shape[0]), "phases": phases,
           "steps": (int(data["step"][0]), int(data["step"][-1])) if fr.shape[0] else None,
           "triggers": [(int(s), d, f) for s, d, f in zip(data["triggers"]["step"],
                                                          data["triggers"]["description"],
                                                          data["triggers"]["files"])]}
    if fr.shape[0]:
        out["first"] = {p: float(fr[0, j]) for j, p in enumerate(phases)}
        out["last"] = {p: float(fr[-1, j]) for j, p in enumerate(phases)}
        out["peak"] = {p: float(fr[:, j].max()) for j, p in enumerate(phases)}
    return out

