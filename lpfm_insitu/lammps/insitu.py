'''In-situ phase classification inside a parallel LAMMPS run.

Input-script interface (LAMMPS built with the PYTHON package)::

    comm_modify  cutoff 12.0      # ghosts must reach the model's receptive field (checked)
    fix          lpfm all property/atom i_lpfm_phase d_lpfm_conf d2_lpfm_op 4 ghost no
    python       lpfm_invoke here """
    from lpfm_insitu.lammps import configure
    lpfm_invoke = configure(model="default", fix="lpfm", every=100,
                            ops=["hcp", "omega", "bcc", "fcc"])
    """
    fix          lpfm_run all python/invoke 100 end_of_step lpfm_invoke
    python       lpfm_setup input 1 SELF format p exists   # labels at step 0 / `run 0` too
    python       lpfm_setup invoke                          # (after the python/invoke line)
    dump         d all custom 100 out.dump id type x y z i_lpfm_phase d_lpfm_conf d2_lpfm_op[*]

Phases are named by common name (fcc, bcc, hcp, omega, diamond, beta-Sn, ...; any case) or
AFLOW label (A_hP2_194_c). ``fix python/invoke`` is not called while LAMMPS sets up a run
(version 29Sep2021 and others), so without the two ``lpfm_setup`` lines the first labels
come at step N; with them a ``fix ave/time`` companion (``lpfm_first``) classifies while
the run is set up, before the first dump and thermo output. The invoke period must equal
``every``: a different one stops the run.

LAMMPS does not substitute ``${var}`` inside quotes; to take the model from a LAMMPS
variable, ``shell putenv LPFM_MODEL=${lpfm_model}`` and ``model="$LPFM_MODEL"``.

``configure`` loads the model (on every rank, when the ``python`` command runs, so a
wrong model or option stops LAMMPS before the run), prints the phase list and the
column mapping, and returns the callback that ``fix python/invoke`` calls. At every
invocation, on every rank, the callback

1. gathers ids, types and positions of the rank's owned and ghost atoms, keeping the
   ghosts within the model's reach of owned atoms (LAMMPS' shell also holds the skin);
2. builds the owner/ghost exchange plan by atom id (``halo.build_halo``);
3. maps lengths onto the model's reference density per atom, from each owned atom's
   own neighbourhood (``local_scale``; ghosts get their owners' scales through the
   halo, so answers do not depend on the decomposition), or with one fixed scale
   (``nn_distance``/``atomic_volume``), and checks that the ghosts cover the model's
   receptive field at the smallest scale (``halo.ghost_coverage``), stopping with the
   ``comm_modify cutoff`` needed if they do not;
4. runs ``PhaseModel.classify_subdomain`` (scores of ghost copies are summed into
   their owners, so denoising is exact too);
5. writes labels, confidence, order parameters (and optionally the denoising
   displacement) of owned atoms into the ``fix property/atom`` columns;
6. calls the hooks (``lpfm_insitu.lammps.hooks``) with an ``InsituFrame``.

Errors stop every rank together with a message that names the fix to apply
(``errors.py``).
'''

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..model.blas_threads import single_threaded_numpy_blas
from ..constants import UNKNOWN_PHASE
from ..errors import PhaseNameError
from ..training.prototypes import common_name, resolve_phases
from . import hooks as hook_registry
from .errors import ErrorSync, InsituError, describe, install_excepthook, merge_messages
from .gather import Subdomain, custom_property, custom_width, gather_subdomain
from ..model.local_scale import SCALE_FLOOR, equivalent_nn_distance, typical_scale

#: Default neighbor skin of each LAMMPS unit style (the ``neighbor`` command's defaults).
DEFAULT_SKIN = {"lj": 0.3, "real": 2.0, "metal": 2.0, "si": 0.001, "cgs": 0.1,
                "electron": 2.0, "micro": 0.1, "nano": 0.1}

PRECISIONS = ("fp32", "bf16", "fp16")
GHOST_CHECKS = ("always", "first", "never")


@dataclass
class InsituSettings:
    """Everything ``configure`` accepts (see its docstring)."""

    model: str = "default"
    fix: str = "lpfm"
    prefix: str = "lpfm"
    every: int | None = None
    denoise_steps: int = 0
    ops: Any = "all"
    export_displacement: bool = False
    types: tuple[int, ...] | None = None
    nn_distance: float | None = None
    atomic_volume: float | None = None
    candidates: tuple[str, ...] | None = None
    averaging_radius: float | None = None
    precision: str = "fp32"
    device: str = "auto"
    threads: int | None = None
    max_atoms_per_chunk: int | None = None
    check_ghosts: str = "always"
    error_timeout: float | None = None
    verbose: bool = True
    on_result: tuple[Callable, ...] = ()

    # column names -------------------------------------------------------------------------
    @property
    def phase_column(self) -> str:
        return f"i_{self.prefix}_phase"

    @property
    def conf_column(self) -> str:
        return f"d_{self.prefix}_conf"

    @property
    def op_column(self) -> str:
        return f"d2_{self.prefix}_op"

    @property
    def disp_column(self) -> str:
        return f"d2_{self.prefix}_disp"


def _fail(message: str) -> InsituError:
    # Settings errors are the same on every rank (same input script): rank 0 prints.
    return InsituError(message, agreed=True)


def _agree_at_configure(problem: str | None) -> None:
    """Configure runs on every rank at the same input line: agree on errors over COMM_WORLD."""
    try:
        from mpi4py import MPI
    except ImportError:  # pragma: no cover - serial LAMMPS without mpi4py
        if problem:
            raise _fail(problem)
        return
    comm = MPI.COMM_WORLD
    messages = comm.allgather(problem) if comm.Get_size() > 1 else [problem]
    if any(messages):
        raise _fail(merge_messages(messages))


def configure(*, model: str = "default", fix: str = "lpfm", every: int | None = None,
              denoise_steps: int = 0, ops: Any = "all", export_displacement: bool = False,
              types: Sequence[int] | None = None, nn_distance: float | None = None,
              atomic_volume: float | None = None, candidates: Sequence[str] | None = None,
              averaging_radius: float | None = None, precision: str = "fp32",
              device: str = "auto", threads: int | None = None,
              max_atoms_per_chunk: int | None = None, check_ghosts: str = "always",
              on_result: Sequence[Callable] = (), error_timeout: float | None = None,
              prefix: str = "lpfm", verbose: bool = True) -> Callable:
    """Set up in-situ classification; returns the ``fix python/invoke`` callback.

    model: a shipped model's name ("default") or a model file path; ``$VAR`` and ``~``
        are expanded (``shell putenv LPFM_MODEL=${lpfm_model}`` passes a LAMMPS variable).
    fix: ID of the ``fix property/atom`` holding the columns (used in messages).
    every: the N of ``fix python/invoke N``; if given, an invocation at a step that is
        not a multiple of it stops the run (a mismatch is a mistake in the input).
    denoise_steps: score-ascent steps before labelling (the atoms in LAMMPS do not move).
    ops: which model phases get an order-parameter column in ``d2_<prefix>_op``:
        "all" (every phase, model order), a list of phases (that order), or None. Phases
        are named by common name ("fcc", "hcp", "omega", "beta-Sn"; case-insensitive) or
        AFLOW label ("A_hP2_194_c"), here and in ``candidates``.
    export_displacement: write the denoising displacement into ``d2_<prefix>_disp 3``.
    types: LAMMPS atom types to classify (default: all). Atoms of other types are left
        out of the model's graph entirely (they are not part of the crystal, e.g. a
        solvent or a wall) and get label -1 and zeros; the global atomic volume then
        counts only the classified atoms.
    nn_distance / atomic_volume: one fixed length scale for every atom instead of each
        atom's own, read from its neighbourhood (which needs neither, vacuum included).
    candidates: restrict the argmax to these phases, e.g. ["bcc", "hcp", "omega"] (labels
        still index all phases).
    averaging_radius: labels, confidence and OPs from logits averaged over each atom's
        neighbours within this radius (Å at the model's 15 Å^3/atom; 0: each atom's own);
        default: the model file's. Ghosts get their owners' logits, so answers do not
        depend on the decomposition.
    precision: "fp32" (default), "bf16" (CPU or GPU autocast) or "fp16" (GPU only).
    device: "auto" (the GPU of this rank's node-local index if CUDA is present, else
        the CPU), "cpu", "cuda" or "cuda:K".
    threads: torch CPU threads per rank (default: OMP_NUM_THREADS if set, else the node's
        cores shared among the node's ranks).
    max_atoms_per_chunk: evaluate large subdomains in slabs of this many owned atoms
        (less memory, same answers).
    check_ghosts: "always" (every invocation, default), "first", or "never".
    on_result: hooks called as ``hook(frame)`` on every rank after each invocation.
    error_timeout: seconds a failing rank waits for the others before MPI_Abort
        (default 120, or $LPFM_INSITU_ERROR_TIMEOUT).
    prefix: column names are i_<prefix>_phase, d_<prefix>_conf, d2_<prefix>_op,
        d2_<prefix>_disp.
    """
    install_excepthook()
    classifier, problem = None, None
    try:
        settings = InsituSettings(
            model=str(model), fix=str(fix), prefix=str(prefix), every=every,
            denoise_steps=denoise_steps, ops=ops, export_displacement=bool(export_displacement),
            types=None if types is None else tuple(types), nn_distance=nn_distance,
            atomic_volume=atomic_volume,
            candidates=None if candidates is None else tuple(candidates),
            averaging_radius=averaging_radius, precision=precision, device=device,
            threads=threads,
            max_atoms_per_chunk=max_atoms_per_chunk, check_ghosts=check_ghosts,
            error_timeout=error_timeout, verbose=bool(verbose), on_result=tuple(on_result))
        classifier = InsituClassifier(settings)
    except InsituError as exc:
        problem = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to the user, on all ranks together
        problem = describe(exc)
    _agree_at_configure(problem)
    if settings.verbose:
        classifier.announce()
    classifier.publish(sys.modules["__main__"].__dict__)
    return classifier.callback


class InsituClassifier:
    """Per-rank state of one in-situ classification set up by ``configure``."""

    def __init__(self, settings: InsituSettings):
        self.settings = s = settings
        self._validate()
        self.model = self._load_model()
        if s.averaging_radius is not None:
            try:
                self.model.averaging_radius = s.averaging_radius
            except (TypeError, ValueError) as exc:
                raise _fail(f"lpfm_insitu.lammps.configure: averaging_radius: {exc}") from None
        self.phases = self.model.phases
        self.op_indices = self._op_indices()
        if s.candidates is not None:
            try:  # common names ("hcp") become the model's labels once, here
                s.candidates = tuple(resolve_phases(s.candidates, self.phases))
            except PhaseNameError as exc:
                raise _fail(f"lpfm_insitu.lammps.configure: candidates={list(s.candidates)!r}: "
                            f"{exc}") from None
        self.invocations = 0
        self.last_step: int | None = None  # step of the last classification
        self._fix_steps: list[int] = []  # steps at which fix python/invoke called (last 3)
        self._first_steps: list[int] = []  # steps the <prefix>_first companion classified
        self._last_source = ""
        self.timings: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.failed: InsituError | None = None
        self._comm = None
        self._sync: ErrorSync | None = None
        self._lmp_cache: dict[int, Any] = {}
        self._setup_done = False
        self.units = None
        self.callback = self._make_callback()

    def add_hook(self, hook: Callable) -> Callable:
        """Call ``hook(frame)`` after every invocation of this classifier (every rank)."""
        if not callable(hook):
            raise TypeError(f"a hook must be callable, got {hook!r}")
        self.settings.on_result = tuple(self.settings.on_result) + (hook,)
        return hook

    # --- configuration (no LAMMPS needed) ---------------------------------------------------

    def _validate(self) -> None:
        s = self.settings
        prefix = "lpfm_insitu.lammps.configure"
        if s.every is not None and (not isinstance(s.every, (int, np.integer)) or s.every < 1):
            raise _fail(f"{prefix}: every={s.every!r} must be a positive integer, the N of "
                        "`fix ... python/invoke N end_of_step ...`")
        if not isinstance(s.denoise_steps, (int, np.integer)) or s.denoise_steps < 0:
            raise _fail(f"{prefix}: denoise_steps={s.denoise_steps!r} must be an integer >= 0")
        if s.export_displacement and s.denoise_steps == 0:
            raise _fail(f"{prefix}: export_displacement=True writes the denoising displacement, "
                        "which is zero without denoising: set denoise_steps >= 1 or drop "
                        "export_displacement")
        if s.precision not in PRECISIONS:
            raise _fail(f"{prefix}: precision={s.precision!r} is not one of {PRECISIONS}")
        if s.check_ghosts not in GHOST_CHECKS:
            raise _fail(f"{prefix}: check_ghosts={s.check_ghosts!r} is not one of {GHOST_CHECKS}")
        if s.types is not None:
            bad = [t for t in s.types if not isinstance(t, (int, np.integer)) or t < 1]
            if bad or not s.types:
                raise _fail(f"{prefix}: types={list(s.types)!r} must be a non-empty list of "
                            "LAMMPS atom types (integers >= 1)")
        if s.nn_distance is not None and s.atomic_volume is not None:
            raise _fail(f"{prefix}: give nn_distance or atomic_volume, not both")
        for name in ("nn_distance", "atomic_volume"):
            value = getattr(s, name)
            if value is not None and not float(value) > 0:
                raise _fail(f"{prefix}: {name}={value!r} must be positive")
        if s.max_atoms_per_chunk is not None and int(s.max_atoms_per_chunk) < 1:
            raise _fail(f"{prefix}: max_atoms_per_chunk must be a positive integer or None")
        if s.threads is not None and int(s.threads) < 1:
            raise _fail(f"{prefix}: threads must be a positive integer or None")
        device = str(s.device)
        if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
            raise _fail(f"{prefix}: device={device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:K'")
        import torch

        has_cuda = torch.cuda.is_available()
        if device.startswith("cuda") and not has_cuda:
            raise _fail(f"{prefix}: device={device!r} but torch sees no CUDA device here: use "
                        "device='auto' or 'cpu'")
        if s.precision == "fp16" and (device == "cpu" or not has_cuda):
            raise _fail(f"{prefix}: precision='fp16' needs a CUDA GPU, and this rank runs on "
                        "the CPU: use precision='fp32' (default) or 'bf16'")

    def _load_model(self):
        s = self.settings
        path = os.path.expanduser(os.path.expandvars(s.model))
        if "$" in path:
            raise _fail(f"lpfm_insitu.lammps.configure: model={s.model!r} names an environment "
                        "variable that is not set (LAMMPS does not substitute ${...} inside "
                        "quotes; pass a LAMMPS variable with `shell putenv LPFM_MODEL=${lpfm_model}` "
                        "and model=\"$LPFM_MODEL\")")
        problem = None
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # TorchScript warnings and a cuequivariance notice from the e3nn/mace imports,
            # once per rank, would bury LAMMPS' own output
            warnings.simplefilter("ignore")
            from ..model.torch_compat import import_mace_quietly

            import_mace_quietly()  # its accelerator notice would come once per rank
            from ..model.files import ModelFileError, load_model

            try:
                model = _cached_model(path, load_model)
            except ModelFileError as exc:
                problem = f"lpfm_insitu.lammps.configure: cannot load model {path!r}: {exc}"
        if problem:
            raise _fail(problem)
        self.model_name = path
        return model

    def _op_indices(self) -> np.ndarray:
        s = self.settings
        if s.ops is None or (not isinstance(s.ops, str) and len(s.ops) == 0):
            return np.zeros(0, dtype=np.int64)
        if isinstance(s.ops, str):
            if s.ops == "all":
                return np.arange(len(self.phases))
            ops = [s.ops]
        else:
            ops = list(s.ops)
        try:
            labels = resolve_phases(ops, self.phases)
        except PhaseNameError as exc:
            raise _fail(f"lpfm_insitu.lammps.configure: ops={ops!r}: {exc} (or use "
                        "ops='all')") from None
        ops = labels
        if len(set(ops)) != len(ops):
            raise _fail(f"lpfm_insitu.lammps.configure: ops={ops!r} lists a phase twice")
        return np.array([self.phases.index(p) for p in ops], dtype=np.int64)

    def fix_line(self) -> str:
        """The ``fix property/atom`` command this configuration needs."""
        s = self.settings
        parts = [f"fix {s.fix} all property/atom {s.phase_column} {s.conf_column}"]
        if len(self.op_indices):
            parts.append(f"{s.op_column} {len(self.op_indices)}")
        if s.export_displacement:
            parts.append(f"{s.disp_column} 3")
        return " ".join(parts) + " ghost no"

    def mapping_lines(self) -> list[str]:
        s = self.settings
        threshold = self.model.threshold_for(s.denoise_steps)
        lines = [f"{s.phase_column}: -1 = unknown (confidence < {threshold:.6g})"
                 + ("" if s.types is None else f" or type not in {list(s.types)}")]
        lines += [f"{s.phase_column}: {k} = {_named(p)}" for k, p in enumerate(self.phases)]
        lines.append(f"{s.conf_column}: max logit over "
                     + ("all phases" if s.candidates is None
                        else ", ".join(_named(p) for p in s.candidates)))
        for col, k in enumerate(self.op_indices, start=1):
            lines.append(f"{s.op_column}[{col}] = logit of {_named(self.phases[k])} (phase {k})")
        if s.export_displacement:
            lines.append(f"{s.disp_column}[1..3] = denoising displacement x y z "
                         f"({s.denoise_steps} steps, length units)")
        return lines

    def announce(self) -> None:
        if _world_rank() != 0:
            return
        s = self.settings
        net = self.model.network
        out = [f"lpfm_insitu: model {self.model_name!r} ({self.model.metadata.get('path', '?')}), "
               f"{len(self.phases)} phases, {net.num_interactions} interactions x r_max "
               f"{net.r_max:g} (model units), denoise_steps {s.denoise_steps}, logits averaged "
               f"over neighbours within {self.model.averaging_radius:g} (model units), "
               f"{self._prior_summary()}"]
        out += [f"lpfm_insitu:   {line}" for line in self.mapping_lines()]
        out.append(f"lpfm_insitu:   needs: {self.fix_line()}")
        print("\n".join(out), flush=True)

    def _prior_summary(self) -> str:
        if self.settings.candidates is not None:
            return "uniform prior over the candidates"
        prior = self.model.log_prior_for(self.settings.denoise_steps)
        shifted = prior[prior != 0.0]
        if not len(shifted):
            return "uniform phase prior"
        values = ", ".join(f"{v:g}" for v in np.unique(shifted))
        return f"log prior {values} on {len(shifted)} of {len(prior)} phases"

    # --- the callback ------------------------------------------------------------------------

    def _make_callback(self):
        classifier = self

        def lpfm_invoke(lmpptr, *_vflag):  # post_force callbacks also pass vflag
            classifier.invoke(classifier._lammps(lmpptr), source="fix")

        lpfm_invoke.classifier = classifier
        return lpfm_invoke

    # --- labels at the start of a run ---------------------------------------------------------

    def _names(self) -> tuple[str, str]:
        prefix = self.settings.prefix
        return f"{prefix}_setup", f"{prefix}_first"

    def publish(self, namespace: dict) -> None:
        """Put ``<prefix>_setup`` and ``<prefix>_first`` into ``namespace`` (``__main__``,
        where LAMMPS' ``python ... exists`` looks)."""
        setup, first = self._names()
        namespace[setup] = self.declare_first_labels
        namespace[first] = self.first_labels

    def first_label_commands(self) -> list[str]:
        """LAMMPS commands that classify at the start of a run (see ``first_labels``)."""
        s = self.settings
        setup, first = self._names()
        if s.every is None:
            raise _fail(f"python {setup} invoke: labels at the start of a run need "
                        "configure(every=N), the N of `fix ... python/invoke N end_of_step`")
        return [f"python {first} input 1 SELF return v_{first} format pi exists",
                f"variable {first} python {first}",
                f"fix {first} all ave/time {s.every} 1 {s.every} v_{first}"]

    def declare_first_labels(self, lmpptr) -> None:
        """``python <prefix>_setup invoke`` (after the ``fix ... python/invoke`` line).

        LAMMPS' ``fix python/invoke`` (version 29Sep2021 and others) is not called when a
        run is set up, so step 0 (and a ``run 0``) would have no labels. ``fix ave/time``
        is: it evaluates a python-style variable while the run is set up, after the ghost
        atoms exist and before the first dump and thermo output. This declares such a
        fix, ``<prefix>_first``, every ``every`` steps; at steps the python/invoke fix has
        classified already it returns at once. LAMMPS stops a ``reset_timestep`` while a
        fix ave/time exists ("Invalid timestep reset for fix ave/time"): declare it after
        any ``reset_timestep``, or ``unfix <prefix>_first`` before one.
        """
        lmp = self._lammps(lmpptr)
        for command in self.first_label_commands():
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

    def check_first_period(self, step: int) -> None:
        """The companion classifies where python/invoke has not (yet): at the start of the
        first run, or, if it is declared before the python/invoke fix, at every step just
        before the fix does. If the fix then skipped such a step while it ran at later
        ones, its period is not ``every``."""
        previous = self._first_steps[-1] if len(self._first_steps) > 1 else None
        self._first_steps = (self._first_steps + [step])[-4:]
        if (previous is not None and self._fix_steps and max(self._fix_steps) > previous
                and previous not in self._fix_steps):
            raise _fail(self._period_message(previous, step))

    def _period_message(self, missed: int, step: int) -> str:
        s = self.settings
        return (f"fix {s.fix}: configure(every={s.every}) but fix python/invoke did not call "
                f"lpfm_insitu at step {missed} (found at step {step}): the invoke period "
                f"differs from every. Make the N of `fix ... python/invoke N end_of_step "
                f"...` equal to every ({s.every}), or change every")

    def check_invoke_period(self, step: int) -> None:
        """Stop when fix python/invoke's N is a multiple of ``every``: two consecutive
        intervals of the same k x every steps (k >= 2). One such interval alone can be a
        jump of the step counter (``minimize``, ``reset_timestep``)."""
        s = self.settings
        steps = (self._fix_steps + [step])[-3:]
        self._fix_steps = steps
        if s.every is None or len(steps) < 3:
            return
        gaps = np.diff(steps)
        if gaps[0] == gaps[1] and gaps[0] > s.every and gaps[0] % s.every == 0:
            raise _fail(
                f"fix {s.fix}: lpfm_insitu is called every {int(gaps[0])} steps (steps "
                f"{', '.join(map(str, steps))}) but configure(every={s.every}): make the N of "
                f"`fix ... python/invoke N end_of_step ...` equal to every ({s.every})")

    def _lammps(self, lmpptr):
        """A ``lammps`` object for the pointer LAMMPS passes (cached: making one costs ~ms)."""
        if hasattr(lmpptr, "extract_global"):  # already a lammps object (driver mode)
            return lmpptr
        address = _capsule_address(lmpptr)
        if self._lmp_cache.get("address") != address:
            from lammps import lammps

            self._lmp_cache = {"address": address, "lmp": lammps(ptr=lmpptr)}
        return self._lmp_cache["lmp"]

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
        except InsituError as exc:
            if not exc.agreed:
                exc = self._agree(describe(exc))
            self.failed = exc
            raise exc from None
        except Exception as exc:  # noqa: BLE001
            exc2 = self._agree(describe(exc))
            self.failed = exc2
            raise exc2 from None

    def _agree(self, problem: str) -> InsituError:
        """A local failure: take it to the next sync point, where all ranks learn of it."""
        if self._sync is None:  # failed before the communicator existed: cannot agree
            return InsituError(problem, agreed=False)
        try:
            self._sync.check(problem)
        except InsituError as exc:
            return exc
        return InsituError(problem, agreed=True)  # pragma: no cover - check always raises

    # --- setup at the first invocation ---------------------------------------------------

    def _connect(self, lmp) -> None:
        """The LAMMPS world communicator and a private duplicate for our own collectives."""
        from mpi4py import MPI

        world = lmp.get_mpi_comm()
        if world is None:
            world = MPI.COMM_WORLD
        self.world = world
        self._comm = world.Dup()  # private: our collectives never match LAMMPS' or hooks'
        self._sync = ErrorSync(self._comm, self.settings.error_timeout)
        node = world.Split_type(MPI.COMM_TYPE_SHARED)
        self.node_rank = node.Get_rank()  # picks this rank's GPU
        self.node_ranks = node.Get_size()
        node.Free()

    def _setup(self, lmp) -> None:
        """First invocation: check columns, types and device; stop on all ranks if wrong.

        Every rank runs the same collectives whatever happens locally: local problems
        are collected and agreed on at the final sync point.
        """
        s = self.settings
        problems = []
        needed = [(s.phase_column, None), (s.conf_column, None)]
        if len(self.op_indices):
            needed.append((s.op_column, len(self.op_indices)))
        if s.export_displacement:
            needed.append((s.disp_column, 3))
        widths = np.full(len(needed), -1, dtype=np.int64)
        missing = []
        try:
            self.units = lmp.extract_global("units")
            if not lmp.has_id("fix", s.fix):
                problems.append(f"there is no fix with ID {s.fix!r}: add\n  {self.fix_line()}\n"
                                "before the `fix ... python/invoke` line (or pass the ID of "
                                "your property/atom fix as configure(fix=...))")
            missing = [name for name, _ in needed if not _has_column(lmp, name)]
            if missing:
                problems.append(f"fix property/atom {s.fix!r} lacks the column(s) "
                                f"{', '.join(missing)}; declare all columns this configuration "
                                f"writes:\n  {self.fix_line()}")
            for k, (name, width) in enumerate(needed):
                if width is not None and name not in missing:
                    widths[k] = custom_width(lmp, name) or -1
            ntypes = int(lmp.extract_global("ntypes"))
            bad = [t for t in (s.types or ()) if t > ntypes]
            if bad:
                problems.append(f"configure(types={list(s.types)}): type(s) {bad} do not "
                                f"exist; this system has atom types 1..{ntypes}")
            try:
                self.device = self._pick_device()
                self.model.to(self.device, s.precision)
                threads = s.threads or default_threads(self.node_ranks)
                if threads:
                    import torch

                    torch.set_num_threads(int(threads))
            except Exception as exc:  # noqa: BLE001
                problems.append(f"cannot put the model on device {s.device!r} with precision "
                                f"{s.precision!r}: {exc}")
        except Exception as exc:  # noqa: BLE001
            problems.append(describe(exc))

        # a rank may hold too few atoms to read a column's width: take the known one
        from mpi4py import MPI

        agreed = np.empty_like(widths)
        self._comm.Allreduce(widths, agreed, op=MPI.MAX)
        for (name, want), got in zip(needed, agreed):
            if want is not None and got > 0 and got != want:
                what = ("order parameters (ops=" + repr(self._op_names()) + ")"
                        if name == s.op_column else "displacement components")
                problems.append(f"fix property/atom {s.fix!r} declares {name} with {got} "
                                f"column(s), but {want} {what} are written: use "
                                f"`{name} {want}`, i.e.\n  {self.fix_line()}")
        self._sync.check("\n".join(problems) if problems else None)
        self._setup_done = True

    def _op_names(self):
        return [self.phases[k] for k in self.op_indices]

    def _pick_device(self) -> str:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        device, warning = pick_device(self.settings.device, self.node_rank, self.node_ranks,
                                      cuda_devices)
        if warning:
            _warn_once(warning)
        return device

    # --- one invocation --------------------------------------------------------------------

    def _invoke(self, lmp, source: str = "driver") -> None:
        s = self.settings
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        first = not self._setup_done
        if self._comm is None:
            self._connect(lmp)
        if first:
            self._setup(lmp)
        step = int(lmp.extract_global("ntimestep"))
        if source == "fix":
            self.check_invoke_period(step)
            if self.last_step == step and self._last_source == "first":
                return  # the companion fix classified this step already (declared first)
        elif source == "first":
            self.check_first_period(step)
        if s.every is not None and step % s.every:
            raise _fail(f"fix {s.fix}: lpfm_insitu was called at step {step}, which is not a "
                        f"multiple of every={s.every}: make the N of `fix ... python/invoke N "
                        f"end_of_step ...` equal to every ({s.every})")

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
        periodic_cell = (self._comm.Get_size() == 1 and all(sub.periodic)
                         and s.max_atoms_per_chunk is None)
        from .halo import build_halo, ghost_coverage, within_reach

        fixed_scale, typical = self._scale_and_typical_distance(lmp, sub, n_sel_local)
        # a first reach, for pruning only: no local scale falls below SCALE_FLOOR of the
        # typical one, so no atom's receptive field reaches further
        prune_reach = self.model.receptive_field(
            fixed_scale or SCALE_FLOOR * typical_scale(typical), int(s.denoise_steps))
        if not periodic_cell:
            # only the ghosts within reach of owned atoms matter (LAMMPS' shell adds the skin)
            rows = rows[within_reach(sub.positions[rows], n_sel_local, prune_reach,
                                     sub.box_lo, sub.box_hi, sub.tilts)]
        positions = sub.positions[rows]
        ids = sub.ids[rows]

        t = time.perf_counter()
        # (the halo plan starts with a sync point: a rank that failed so far stops all here)
        halo = None if periodic_cell else build_halo(self._comm, ids, n_sel_local, self._sync)
        timings["halo_plan"] = time.perf_counter() - t

        t = time.perf_counter()
        scales = None
        if fixed_scale is None and not periodic_cell:
            from ..model.graph import open_graph

            scales = self.model.local_scale(positions, n_sel_local, open_graph, halo, typical)
            smallest = scales.scale[:n_sel_local].min() if n_sel_local else np.inf
            from mpi4py import MPI

            scale = float(self._comm.allreduce(float(smallest), op=MPI.MIN))
        else:
            scale = fixed_scale or typical_scale(typical)
        reach = self.model.receptive_field(scale, int(s.denoise_steps))
        timings["length_scale"] = time.perf_counter() - t

        t = time.perf_counter()
        if not periodic_cell and (s.check_ghosts == "always"
                                  or (s.check_ghosts == "first" and first)):
            cov = ghost_coverage(self._comm, positions, n_sel_local, reach, sub.box_lo,
                                 sub.box_hi, sub.tilts, sub.periodic, self._sync)
            if cov.missing_total:
                raise _fail(self._ghost_message(cov, scale, reach))
        timings["ghost_check"] = time.perf_counter() - t

        if first and s.verbose and self._comm.Get_rank() == 0:
            kind = "fixed" if fixed_scale else "smallest local"
            print(f"lpfm_insitu: step {step}: {kind} length scale {scale:.6g} (model units per "
                  f"{self.units} length unit), model reach {reach:.4g}; suggested "
                  f"`comm_modify cutoff {self.suggested_cutoff(reach):.4g}`; device "
                  f"{self.device}, precision {s.precision}, {self._comm.Get_size()} rank(s)",
                  flush=True)

        t = time.perf_counter()
        _maybe_inject_failure("classify", self._comm.Get_rank())
        if periodic_cell:
            result = self._classify_periodic(positions[:n_sel_local], sub, fixed_scale)
        else:
            result = self.model.classify_subdomain(
                positions, n_sel_local, fixed_scale, halo, denoise_steps=int(s.denoise_steps),
                candidates=s.candidates, max_atoms_per_chunk=s.max_atoms_per_chunk,
                scales=scales)
        timings["model"] = time.perf_counter() - t
        self._sync.check()

        t = time.perf_counter()
        self._write(lmp, sub.n_local, local_index, result)
        timings["write"] = time.perf_counter() - t

        t = time.perf_counter()
        all_hooks = tuple(s.on_result) + hook_registry.registered()
        if all_hooks:
            from .hooks import InsituFrame

            frame = InsituFrame(
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
            self._sync.check(problem)
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
        from ase import Atoms

        from ..model.inference import REFERENCE_NN_DISTANCE
        from .halo import box_matrix

        h = box_matrix(sub.box_lo, sub.box_hi, sub.tilts)
        frac = np.linalg.solve(h, (positions - sub.box_lo).T).T
        frac -= np.floor(frac)  # LAMMPS lets atoms stray out of the box between reneighborings
        atoms = Atoms(numbers=np.ones(len(positions), dtype=int), positions=frac @ h.T,
                      cell=h.T, pbc=True)
        # a fixed length scale as the decomposed path has it: expressed as a neighbour distance
        nn_distance = None if fixed_scale is None else REFERENCE_NN_DISTANCE / fixed_scale
        return self.model.classify_atoms(atoms, denoise_steps=int(self.settings.denoise_steps),
                                         nn_distance=nn_distance,
                                         candidates=self.settings.candidates)

    def _write(self, lmp, n_local, local_index, result) -> None:
        s = self.settings
        if n_local == 0:
            return
        everyone = len(local_index) == n_local
        phase = custom_property(lmp, s.phase_column, n_local)
        conf = custom_property(lmp, s.conf_column, n_local)
        if not everyone:
            phase[:] = UNKNOWN_PHASE
            conf[:] = 0.0
        phase[local_index] = result.labels
        conf[local_index] = result.confidence
        if len(self.op_indices):
            ops = custom_property(lmp, s.op_column, n_local, len(self.op_indices))
            if not everyone:
                ops[:] = 0.0
            ops[local_index] = result.logits[:, self.op_indices]
        if s.export_displacement:
            disp = custom_property(lmp, s.disp_column, n_local, 3)
            if not everyone:
                disp[:] = 0.0
            disp[local_index] = result.displacement

    # --- lengths -----------------------------------------------------------------------------

    def _scale_and_typical_distance(self, lmp, sub: Subdomain,
                                    n_sel_local: int) -> tuple[float | None, float]:
        """The fixed length scale (``None``: read per atom), and the box's neighbour distance
        that sizes the local scale's search (LAMMPS units, the same on every rank)."""
        s = self.settings
        if s.types is None:
            natoms = int(lmp.get_natoms())
        else:
            self._sync.check()  # a sync point before this invocation's first collective
            natoms = int(self._comm.allreduce(int(n_sel_local)))
        if natoms == 0:
            raise _fail(f"fix {s.fix}: no atoms of types {list(s.types or [])} to classify")
        h = np.asarray(sub.box_hi) - np.asarray(sub.box_lo)
        volume = float(np.prod(h))  # triclinic tilts do not change the volume
        typical = equivalent_nn_distance(volume / natoms)
        if s.nn_distance is not None:
            return self.model.length_scale(nn_distance=float(s.nn_distance)), typical
        if s.atomic_volume is not None:
            return self.model.length_scale(atomic_volume=float(s.atomic_volume)), typical
        return None, typical

    def required_ghost_reach(self, scale: float) -> float:
        """Distance (LAMMPS units) around owned atoms that ghosts must cover for exactness,
        with ``scale`` the smallest length scale of any atom."""
        return self.model.receptive_field(scale, int(self.settings.denoise_steps))

    def suggested_cutoff(self, reach: float) -> float:
        skin = DEFAULT_SKIN.get(str(self.units), 0.0)
        return float(np.ceil((reach + skin) * 100.0) / 100.0)

    def _ghost_message(self, cov, scale, reach) -> str:
        s = self.settings
        net = self.model.network
        skin = DEFAULT_SKIN.get(str(self.units))
        suggest = self.suggested_cutoff(reach)
        denoise = (f" + 2 x {s.denoise_steps} denoising steps x max_step {self.model.max_step:g}"
                   if s.denoise_steps else "")
        skin_text = (f"{reach:.4g} + the default neighbor skin {skin:g} of units {self.units}; "
                     f"if you set another skin with `neighbor`, use {reach:.4g} + that skin"
                     if skin is not None else f"{reach:.4g} + your neighbor skin")
        return (f"fix {s.fix}: LAMMPS' ghost atoms do not cover the model's receptive field: "
                f"{cov.missing_total} atom(s) within {reach:.4g} of some rank's atoms are "
                f"missing on {cov.ranks_missing} rank(s), so answers near subdomain boundaries "
                f"would depend on the number of MPI ranks. The model needs ghosts out to "
                f"{reach:.4g} length units (({net.num_interactions} interactions x r_max "
                f"{net.r_max:g}{denoise}) / length scale {scale:.4g}); ghosts now reach about "
                f"{cov.ghost_reach:.3g}.\nAdd before the run:\n  comm_modify cutoff {suggest:g}\n"
                f"({skin_text})")


def _named(label: str) -> str:
    """"hcp (A_hP2_194_c)": the common name, and the label the model files use."""
    name = common_name(label)
    return label if name == label else f"{name} ({label})"


def pick_device(requested: str, node_rank: int, node_ranks: int,
                cuda_devices: int) -> tuple[str, str | None]:
    """This rank's device, and a warning when "auto" or "cuda" makes ranks share a GPU.

    Ranks take the GPUs of their node round robin by node-local rank. More ranks than GPUs
    on a node is legal but rarely meant: each GPU then runs several ranks' models in turn.
    """
    if requested == "cpu" or requested.startswith("cuda:"):
        return requested, None
    if requested == "auto" and cuda_devices == 0:
        return "cpu", None
    if cuda_devices == 0:
        raise ValueError(f"device={requested!r} but torch sees no CUDA device here")
    warning = None
    if node_ranks > cuda_devices:
        warning = (f"lpfm_insitu: WARNING: {node_ranks} MPI ranks on this node share its "
                   f"{cuda_devices} GPU(s) (device={requested!r} gives node-local rank k "
                   f"cuda:k mod {cuda_devices}), so up to {-(-node_ranks // cuda_devices)} "
                   "ranks take turns on one GPU: start one rank per GPU, or use device='cpu'")
    return f"cuda:{node_rank % cuda_devices}", warning


_WARNED: set = set()


def _warn_once(message: str) -> None:
    """Print ``message`` once per process, on world rank 0 only (every rank finds it)."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    if _world_rank() == 0:
        print(message, flush=True)


_MODEL_CACHE: dict = {}


def _cached_model(path: str, load_model):
    """Load a model file once per process; each classifier gets its own ``PhaseModel``.

    Building the MACE network is the slow part of loading (seconds), and input scripts
    often configure two classifiers from one model (raw and denoised). They share the
    network (so they must use the same device); precision and thresholds stay separate.
    """
    from ..model.files import resolve_model_path

    resolved = resolve_model_path(path)
    try:
        stat = os.stat(resolved)
        key = (os.path.realpath(resolved), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None
    base = _MODEL_CACHE.get(key) if key else None
    if base is None:
        base = load_model(resolved)
        if key:
            _MODEL_CACHE[key] = base
    return base.sharing_network()


def default_threads(ranks_on_node: int) -> int | None:
    """Torch threads per rank when neither configure(threads=) nor OMP_NUM_THREADS says.

    torch would start one thread per core in every rank; with several ranks per node the
    threads outnumber the cores and spin against each other. Share the node's cores.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return None  # the user's (or the launcher's) setting stands
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, ranks_on_node))


def _has_column(lmp, name: str) -> bool:
    dtype = lmp.extract_atom_datatype(name)
    return dtype is not None and dtype >= 0


def _sim_time(lmp, step: int) -> float:
    try:
        atime = float(lmp.extract_global("atime"))
        atimestep = int(lmp.extract_global("atimestep"))
        dt = float(lmp.extract_global("dt"))
        return atime + (step - atimestep) * dt
    except (TypeError, ValueError):  # pragma: no cover - keyword missing in this LAMMPS
        return float("nan")


def _world_rank() -> int:
    try:
        from mpi4py import MPI

        return MPI.COMM_WORLD.Get_rank()
    except ImportError:  # pragma: no cover
        return 0


def _capsule_address(capsule) -> int:
    import ctypes

    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    try:
        return int(get(capsule, None) or 0)
    except (TypeError, ValueError):  # pragma: no cover - not a capsule
        return id(capsule)


def _maybe_inject_failure(stage: str, rank: int) -> None:
    """Test hook: LPFM_INSITU_FAIL="<stage>:<rank>" raises on that rank at that stage."""
    spec = os.environ.get("LPFM_INSITU_FAIL")
    if not spec:
        return
    want_stage, _, want_rank = spec.partition(":")
    if want_stage == stage and want_rank.strip() and int(want_rank) == rank:
        raise RuntimeError(f"injected failure (LPFM_INSITU_FAIL={spec}) on rank {rank}")
