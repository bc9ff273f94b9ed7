"""Writing an invocation's answers into the ``fix property/atom`` columns of owned atoms."""

from __future__ import annotations

from ..constants import UNKNOWN_PHASE
from .gather import custom_property


def has_column(lmp, name: str) -> bool:
    """Whether LAMMPS knows the per-atom column ``name`` (``i_``, ``d_``, ``d2_`` ...)."""
    dtype = lmp.extract_atom_datatype(name)
    return dtype is not None and dtype >= 0


def write_results(lmp, settings, op_indices, n_local: int, local_index, result) -> None:
    """Labels, confidence, the chosen OPs (and the displacement) of the owned atoms in
    LAMMPS' rows ``local_index``; owned atoms not classified get -1 and zeros."""
    s = settings
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
    if len(op_indices):
        ops = custom_property(lmp, s.op_column, n_local, len(op_indices))
        if not everyone:
            ops[:] = 0.0
        ops[local_index] = result.logits[:, op_indices]
    if s.export_displacement:
        disp = custom_property(lmp, s.disp_column, n_local, 3)
        if not everyone:
            disp[:] = 0.0
        disp[local_index] = result.displacement
