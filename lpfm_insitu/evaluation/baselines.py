"""Conventional structure identification with OVITO, mapped onto our AFLOW labels.

PTM (polyhedral template matching) with and without its RMSD cutoff, adaptive common
neighbour analysis, and the diamond identifier for tetrahedral crystals. Every structure
type without an AFLOW counterpart among our prototypes (OTHER, icosahedral, graphene)
maps to a non-crystal name.
"""

from __future__ import annotations

import numpy as np

from ..training.prototypes import BCC, DIAMOND, FCC, HCP, HEX_DIAMOND, SC
from .metrics import UNKNOWN

#: OVITO structure-type names -> AFLOW label (or a non-crystal name).
PTM_TO_AFLOW = {
    "OTHER": UNKNOWN, "FCC": FCC, "HCP": HCP, "BCC": BCC, "ICO": "icosahedral",
    "SC": SC, "CUBIC_DIAMOND": DIAMOND, "HEX_DIAMOND": HEX_DIAMOND, "GRAPHENE": "graphene",
}
CNA_TO_AFLOW = {"OTHER": UNKNOWN, "FCC": FCC, "HCP": HCP, "BCC": BCC, "ICO": "icosahedral"}
#: Only atoms whose full second shell is diamond-like count as diamond; the
#: "first/second neighbour" classes are the boundary atoms around such regions.
DIAMOND_TO_AFLOW = {
    "OTHER": UNKNOWN, "CUBIC_DIAMOND": DIAMOND, "CUBIC_DIAMOND_FIRST_NEIGHBOR": "diamond-neighbour",
    "CUBIC_DIAMOND_SECOND_NEIGHBOR": "diamond-neighbour", "HEX_DIAMOND": HEX_DIAMOND,
    "HEX_DIAMOND_FIRST_NEIGHBOR": "diamond-neighbour",
    "HEX_DIAMOND_SECOND_NEIGHBOR": "diamond-neighbour",
}


def map_types(types: np.ndarray, enum, mapping: dict[str, str]) -> np.ndarray:
    """Integer structure types from an OVITO modifier -> label names."""
    by_value = {int(member.value): mapping[name] for name, member in enum.__members__.items()}
    return np.array([by_value[int(t)] for t in np.asarray(types)], dtype=str)


def _apply(atoms, modifier):
    from ovito.io.ase import ase_to_ovito

    data = ase_to_ovito(atoms)
    data.apply(modifier)
    return np.asarray(data.particles["Structure Type"])


def ptm_labels(atoms, rmsd_cutoff: float = 0.0, diamond: bool = False) -> np.ndarray:
    """PTM labels; ``rmsd_cutoff=0`` disables the cutoff (every atom gets its best template)."""
    from ovito.modifiers import PolyhedralTemplateMatchingModifier as PTM

    modifier = PTM(rmsd_cutoff=rmsd_cutoff)
    if diamond:
        modifier.structures[PTM.Type.CUBIC_DIAMOND].enabled = True
        modifier.structures[PTM.Type.HEX_DIAMOND].enabled = True
    return map_types(_apply(atoms, modifier), PTM.Type, PTM_TO_AFLOW)


def acna_labels(atoms) -> np.ndarray:
    from ovito.modifiers import CommonNeighborAnalysisModifier as CNA

    modifier = CNA(mode=CNA.Mode.AdaptiveCutoff)
    return map_types(_apply(atoms, modifier), CNA.Type, CNA_TO_AFLOW)


def diamond_labels(atoms) -> np.ndarray:
    from ovito.modifiers import IdentifyDiamondModifier as IDM

    return map_types(_apply(atoms, IDM()), IDM.Type, DIAMOND_TO_AFLOW)
