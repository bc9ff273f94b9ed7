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
rank, after every invocation). It hands each frame to the host-free
``lpfm_insitu.tracking.tracker.PhaseTracker``, which

1. reduces global statistics over the ranks (``reduce_phase_statistics``): fraction of
   every phase and of unknown atoms, mean confidence, mean order parameter per phase,
   bit-identical on every rank;
2. optionally bins the labels in slabs along ``profile_axis`` (``spatial_profile``);
3. appends a row to the SWMR HDF5 time series ``h5`` (``PhaseTimeSeries``: readable while
   the run goes on, every appended row survives SIGKILL);
4. evaluates the trigger rules (``parse_rules``/``CheckpointTrigger``, grammar in
   ``lpfm_insitu.tracking.triggers.GRAMMAR``). When a rule fires, this module writes the
   per-atom snapshot (ids, types, x, v, box, labels, confidence, all logits; atomic
   rename) at once, the trigger and the file names are recorded in the time series,
   rank 0 prints which rule fired, and the flag ``v_lpfm_checkpoint`` goes up. ``fix halt``
   then ends the run after this step, and the input loop writes the LAMMPS restart file
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
from typing import Any

import numpy as np

from ..tracking.options import AXES, TrackingOptions, rules_spec
from ..tracking.ranks import rank, root_call
from ..tracking.snapshot import write_snapshot
from ..tracking.statistics import PhaseStatistics
from ..tracking.tracker import Checkpoint, PhaseTracker
from .errors import InsituError, world_rank
from .tracking_variables import (as_lammps_variables, lammps_variable_name, prefixed,
                                 variable_values)

__all__ = ["track", "Tracker", "AXES", "as_lammps_variables", "lammps_variable_name"]

STRING_LENGTH = 1024  # `length` of the string-valued python variables


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
    options = TrackingOptions(
        h5=h5, profile_axis=profile_axis, profile_bins=profile_bins,
        profile_range=profile_range, triggers=triggers, cooldown=cooldown,
        max_checkpoints=max_checkpoints, snapshot_dir=snapshot_dir, attrs=attrs,
        time_origin=time_origin, verbose=verbose)
    # the attributes are read when the series opens: the unit style is known only then
    tracker = Tracker(clf.phases, options, attributes=lambda: classifier_attributes(clf),
                      prefix=prefix, restart_name=restart_name, snapshot_name=snapshot_name,
                      velocities=velocities)
    namespace = sys.modules["__main__"].__dict__
    tracker.check_prefix_free(namespace)
    # Attach as a hook of this classifier only (the global hooks.register would also see
    # the frames of other classifiers of the same input, e.g. a raw and a denoised one).
    settings = clf.settings
    settings.on_result = tuple(settings.on_result) + (tracker,)
    tracker.publish(namespace)
    atexit.register(tracker.tracker.close_at_exit)
    if verbose and world_rank() == 0:
        tracker.announce()
    return tracker


def classifier_attributes(clf) -> dict[str, Any]:
    """Model identity and classifier settings, stored in the time series and snapshots."""
    s, model = clf.settings, clf.model
    return {
        "source": "lpfm_insitu.lammps.tracking (in situ)",
        "model": str(model.metadata.get("path", getattr(clf, "model_name", s.model))),
        "model_name": str(model.metadata.get("name", s.model)),
        "model_package_version": str(model.metadata.get("package_version", "")),
        "confidence_threshold": float(model.threshold_for(s.denoise_steps)),
        "candidate_margin": (lambda m: "none" if m is None else float(m))(
            model.candidate_margin(s.denoise_steps, s.candidates)),
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
        # LAMMPS unit style of the times and positions (plots label their axes with it)
        "units": str(getattr(clf, "units", None) or "unknown"),
    }


class Tracker:
    """A :class:`PhaseTracker` in a LAMMPS run: its python-style variables, the checkpoint
    flag, the per-atom snapshot; called as ``tracker(frame)`` on every rank.

    ``attributes`` (a dict, or a function giving one when the series opens) describe the
    classifier; the other keywords are those of :func:`track`.
    """

    def __init__(self, phases, options: TrackingOptions, *, attributes=None,
                 prefix: str = "lpfm", restart_name: str = "restart.{step}",
                 snapshot_name: str = "snapshot.{step}.h5", velocities: bool = True):
        self.phases = tuple(phases)
        self.prefix = str(prefix)
        if not self.prefix.isidentifier():
            raise _fail(f"prefix={prefix!r} must be a valid name (letters, digits, _)")
        try:
            self.tracker = PhaseTracker(self.phases, options, attributes=attributes,
                                        checkpoint=self._write_checkpoint, log=_print)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        for name, pattern in (("restart_name", restart_name), ("snapshot_name", snapshot_name)):
            try:
                pattern.format(step=0)
            except (KeyError, IndexError, ValueError, AttributeError):
                raise _fail(f"{name}={pattern!r} may only use the field {{step}}")
        self.options = self.tracker.options
        self.restart_name = restart_name
        self.snapshot_name = snapshot_name
        self.velocities = bool(velocities)
        self.pending = 0  # the checkpoint flag, until `python <prefix>_reset invoke`
        self._values = self._variable_values(PhaseStatistics(
            self.phases, np.zeros(len(self.phases) + 1, np.int64), 0, float("nan"),
            np.full(len(self.phases), np.nan)))

    # --- the tracker's state, as the variables show it -------------------------------------

    @property
    def trigger(self):
        return self.tracker.trigger

    @property
    def snapshot_file(self) -> str:
        files = self.tracker.last_files
        return files[0] if files else ""

    @property
    def restart_file(self) -> str:
        files = self.tracker.last_files
        return files[1] if len(files) > 1 else ""

    # --- names and values of the variables -------------------------------------------------

    def _name(self, lpfm_name: str) -> str:
        return prefixed(self.prefix, lpfm_name)

    def _variable_values(self, stats: PhaseStatistics) -> dict[str, float]:
        return variable_values(self.prefix, self.phases, stats)

    def functions(self) -> dict[str, Any]:
        """name -> (function, LAMMPS format) for every python-style variable."""
        out: dict[str, Any] = {}
        for name in self._values:
            out[name] = (self._getter(name), "f")
        out[self._name("lpfm_step")] = (lambda: int(self.tracker.step), "i")
        out[self._name("lpfm_checkpoint")] = (lambda: int(self.pending), "i")
        out[self._name("lpfm_ncheckpoints")] = (lambda: int(self.trigger.n_fired), "i")
        out[self._name("lpfm_restart_file")] = (lambda: self.restart_file or "none", "s")
        out[self._name("lpfm_snapshot_file")] = (lambda: self.snapshot_file or "none", "s")
        out[self._name("lpfm_trigger")] = (lambda: self.tracker.last_trigger or "none", "s")
        return out

    def _getter(self, name):
        def value():
            return float(self._values[name])

        value.__name__ = name
        return value

    # --- the input script's side -------------------------------------------------------------

    def check_prefix_free(self, namespace: dict) -> None:
        """Raise if another tracker published its variables under this prefix."""
        other = getattr(namespace.get(self._name("lpfm_variables")), "__self__", None)
        if isinstance(other, Tracker) and other is not self:
            raise _fail(f"a tracker with prefix {self.prefix!r} exists already; give the "
                        "second tracker another prefix= (its variables get that prefix)")

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
            text = (f"lpfm_insitu: step {self.tracker.last_trigger_step}: checkpoint for "
                    f"{self.tracker.last_trigger}: snapshot {self.snapshot_file}, restart "
                    f"{self.restart_file}")
            if not os.path.exists(self.restart_file):
                text += (" (NOT FOUND: write it with write_restart and the variable "
                         f"{self._name('lpfm_restart_file')} before this reset)")
            _lammps(lmpptr).command(f'print """{text}"""')
        self.pending = 0

    def announce(self) -> None:
        options, trigger = self.options, self.trigger
        names = [self._name("lpfm_frac_<phase>"), self._name("lpfm_frac_unknown"),
                 self._name("lpfm_conf_mean"), self._name("lpfm_checkpoint")]
        most = trigger.max_checkpoints
        profile = ""
        if options.profile_axis:
            kind = options.profile_range if isinstance(options.profile_range, str) else "fixed"
            profile = (f", profile along {options.profile_axis} in {options.profile_bins} bins "
                       f"({kind} range)")
        lines = [f"lpfm_insitu: tracking into {options.h5}{profile}",
                 f"lpfm_insitu:   triggers: {rules_spec(trigger) or 'none'}; cooldown "
                 f"{trigger.cooldown_steps} steps; max checkpoints "
                 f"{most if most is not None else 'unlimited'}; files in {options.snapshot_dir}/",
                 f"lpfm_insitu:   variables (after `python {self._name('lpfm_variables')} "
                 "invoke`): " + ", ".join(f"v_{n}" for n in names) + ", ..."]
        print("\n".join(lines), flush=True)

    # --- the hook ------------------------------------------------------------------------------

    def __call__(self, frame) -> None:
        event = self.tracker(frame)
        self._values = self._variable_values(self.tracker.stats)
        if event is None:
            return
        self.pending = 1
        if rank(self.tracker.comm) == 0:
            most = event.max_checkpoints
            print(f"lpfm_insitu: step {event.step}: checkpoint trigger {event.n_fired}"
                  f"{'' if most is None else f'/{most}'} fired: {event.description}\n"
                  f"lpfm_insitu:   snapshot {self.snapshot_file} written; restart "
                  f"{self.restart_file} to be written by the input loop (fix halt on "
                  f"v_{self._name('lpfm_checkpoint')})", flush=True)

    def _write_checkpoint(self, frame, event: Checkpoint) -> list[str]:
        """The per-atom snapshot now; the restart file's name for the input loop."""
        folder = self.options.snapshot_dir
        restart = os.path.join(folder, self.restart_name.format(step=event.step))
        snapshot = os.path.join(folder, self.snapshot_name.format(step=event.step))
        comm = self.tracker.comm
        root_call(comm, lambda: os.makedirs(folder, exist_ok=True), f"creating {folder}")
        vel = frame.velocities() if self.velocities else None
        attrs = {**event.attributes, "trigger": event.description,
                 "trigger_state": event.trigger_state, "restart_file": restart,
                 "time_series": self.options.h5}
        write_snapshot(snapshot, event.step, event.time, frame.box(), frame.ids, frame.types,
                       frame.positions, vel, frame.labels, frame.confidence, frame.ops,
                       self.phases, attrs=attrs, comm=comm)
        return [snapshot, restart]

    def close(self) -> None:
        """Close the time series file (collective; the file is also closed at exit)."""
        self.tracker.close()


def _print(text: str) -> None:
    print(text, flush=True)


def _lammps(lmpptr):
    if hasattr(lmpptr, "command"):
        return lmpptr
    from lammps import lammps

    return lammps(ptr=lmpptr)
