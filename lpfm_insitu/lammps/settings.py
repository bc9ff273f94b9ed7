"""The options of in-situ classification: one list, with defaults, documentation and checks.

``InsituSettings`` is the only place an option is declared; ``configure`` takes its
keywords, signature and docstring from it. ``check_settings`` makes the checks that need
no model and no LAMMPS, so that a wrong option stops LAMMPS at the ``python`` command.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np

from .errors import agreed_error

CONFIGURE = "lpfm_insitu.lammps.configure"  # how messages name the function
GHOST_CHECKS = ("always", "first", "never")


def _tuple_or_none(values):
    return None if values is None else tuple(values)


def _option(default, doc: str, convert: Callable | None = None):
    return field(default=default, metadata={"doc": doc, "convert": convert})


@dataclass
class InsituSettings:
    """Everything ``configure`` accepts, in its order (see ``options_doc``)."""

    model: str = _option(
        "default", "a shipped model's name (\"default\") or a model file path; ``$VAR`` and "
        "``~`` are expanded (``shell putenv LPFM_MODEL=${lpfm_model}`` passes a LAMMPS "
        "variable).", str)
    fix: str = _option(
        "lpfm", "ID of the ``fix property/atom`` holding the columns (used in messages).", str)
    every: int | None = _option(
        None, "the N of ``fix python/invoke N``; if given, an invocation at a step that is "
        "not a multiple of it stops the run (a mismatch is a mistake in the input).")
    denoise_steps: int = _option(
        0, "score-ascent steps before labelling (the atoms in LAMMPS do not move).")
    ops: Any = _option(
        "all", "which model phases get an order-parameter column in ``d2_<prefix>_op``: "
        "\"all\" (every phase, model order), a list of phases (that order), or None. Phases "
        "are named by common name (\"fcc\", \"hcp\", \"omega\", \"beta-Sn\"; case-insensitive) "
        "or AFLOW label (\"A_hP2_194_c\"), here and in ``candidates``.")
    export_displacement: bool = _option(
        False, "write the denoising displacement into ``d2_<prefix>_disp 3``.", bool)
    types: tuple[int, ...] | None = _option(
        None, "LAMMPS atom types to classify (default: all). Atoms of other types are left "
        "out of the model's graph entirely (they are not part of the crystal, e.g. a solvent "
        "or a wall) and get label -1 and zeros; the global atomic volume then counts only "
        "the classified atoms.", _tuple_or_none)
    nn_distance: float | None = _option(
        None, "one fixed length scale for every atom, that of an FCC crystal with this "
        "neighbour distance, instead of each atom's own, read from its neighbourhood "
        "(which needs neither, vacuum included).")
    atomic_volume: float | None = _option(
        None, "one fixed length scale for every atom from this volume per atom (give "
        "nn_distance or atomic_volume, not both).")
    candidates: tuple[str, ...] | None = _option(
        None, "restrict the argmax to these phases, e.g. [\"bcc\", \"hcp\", \"omega\"] "
        "(labels still index all phases).", _tuple_or_none)
    averaging_radius: float | None = _option(
        None, "labels, confidence and OPs from logits averaged over each atom's neighbours "
        "within this radius (Å at the model's 15 Å^3/atom; 0: each atom's own); default: "
        "the model file's. Ghosts get their owners' logits, so answers do not depend on the "
        "decomposition.")
    precision: str = _option(
        "fp32", "\"fp32\" (default), \"bf16\" (CPU or GPU autocast) or \"fp16\" (GPU only).")
    device: str = _option(
        "auto", "\"auto\" (the GPU of this rank's node-local index if CUDA is present, else "
        "the CPU), \"cpu\", \"cuda\" or \"cuda:K\".")
    threads: int | None = _option(
        None, "torch CPU threads per rank (default: OMP_NUM_THREADS if set, else the node's "
        "cores shared among the node's ranks).")
    max_atoms_per_chunk: int | None = _option(
        None, "evaluate large subdomains in slabs of this many owned atoms (less memory, "
        "same answers).")
    check_ghosts: str = _option(
        "always", "\"always\" (every invocation, default), \"first\", or \"never\".")
    on_result: tuple[Callable, ...] = _option(
        (), "hooks called as ``hook(frame)`` on every rank after each invocation.", tuple)
    error_timeout: float | None = _option(
        None, "seconds a failing rank waits for the others before MPI_Abort (default 120, "
        "or $LPFM_INSITU_ERROR_TIMEOUT).")
    prefix: str = _option(
        "lpfm", "column names are i_<prefix>_phase, d_<prefix>_conf, d2_<prefix>_op, "
        "d2_<prefix>_disp.", str)
    verbose: bool = _option(
        True, "print the model, the phase list and the column mapping (rank 0).", bool)

    def __post_init__(self):
        for option in fields(self):
            convert = option.metadata.get("convert")
            if convert is not None:
                setattr(self, option.name, convert(getattr(self, option.name)))

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


OPTIONS = tuple(option.name for option in fields(InsituSettings))


def options_doc(width: int = 88) -> str:
    """Every option with its documentation, as ``configure``'s docstring lists them."""
    return "\n".join(textwrap.fill(f"{option.name}: {option.metadata['doc']}", width,
                                   subsequent_indent="    ")
                     for option in fields(InsituSettings))


def check_settings(s: InsituSettings) -> None:
    """The checks of ``configure``'s options that need neither the model nor LAMMPS."""
    prefix = CONFIGURE
    if s.every is not None and (not isinstance(s.every, (int, np.integer)) or s.every < 1):
        raise agreed_error(f"{prefix}: every={s.every!r} must be a positive integer, the N of "
                           "`fix ... python/invoke N end_of_step ...`")
    if not isinstance(s.denoise_steps, (int, np.integer)) or s.denoise_steps < 0:
        raise agreed_error(f"{prefix}: denoise_steps={s.denoise_steps!r} must be an integer "
                           ">= 0")
    if s.export_displacement and s.denoise_steps == 0:
        raise agreed_error(f"{prefix}: export_displacement=True writes the denoising "
                           "displacement, which is zero without denoising: set denoise_steps "
                           ">= 1 or drop export_displacement")
    core = _core()
    try:  # the core's own checks, in the adapter's words
        core.check_precision(s.precision)
    except ValueError:
        raise agreed_error(f"{prefix}: precision={s.precision!r} is not one of "
                           f"{core.PRECISIONS}") from None
    if s.check_ghosts not in GHOST_CHECKS:
        raise agreed_error(f"{prefix}: check_ghosts={s.check_ghosts!r} is not one of "
                           f"{GHOST_CHECKS}")
    if s.types is not None:
        bad = [t for t in s.types if not isinstance(t, (int, np.integer)) or t < 1]
        if bad or not s.types:
            raise agreed_error(f"{prefix}: types={list(s.types)!r} must be a non-empty list of "
                               "LAMMPS atom types (integers >= 1)")
    if s.nn_distance is not None and s.atomic_volume is not None:
        raise agreed_error(f"{prefix}: give nn_distance or atomic_volume, not both")
    for name in ("nn_distance", "atomic_volume"):
        value = getattr(s, name)
        if value is not None:
            number = float(value)
            try:  # the core's own check of a length scale
                core.PhaseModel.length_scale(**{name: number})
            except ValueError:
                raise agreed_error(f"{prefix}: {name}={value!r} must be positive") from None
    if s.max_atoms_per_chunk is not None and int(s.max_atoms_per_chunk) < 1:
        raise agreed_error(f"{prefix}: max_atoms_per_chunk must be a positive integer or None")
    if s.threads is not None and int(s.threads) < 1:
        raise agreed_error(f"{prefix}: threads must be a positive integer or None")
    device = str(s.device)
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise agreed_error(f"{prefix}: device={device!r}: use 'auto', 'cpu', 'cuda' or "
                           "'cuda:K'")
    import torch

    has_cuda = torch.cuda.is_available()
    if device.startswith("cuda") and not has_cuda:
        raise agreed_error(f"{prefix}: device={device!r} but torch sees no CUDA device here: "
                           "use device='auto' or 'cpu'")
    try:
        core.check_precision(s.precision, "cuda" if has_cuda and device != "cpu" else "cpu")
    except ValueError:
        raise agreed_error(f"{prefix}: precision='fp16' needs a CUDA GPU, and this rank runs "
                           "on the CPU: use precision='fp32' (default) or 'bf16'") from None


def _core():
    from .quiet import core_inference

    return core_inference()
