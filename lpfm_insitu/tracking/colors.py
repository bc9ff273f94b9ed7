"""One colour per phase, shared by the plots and the files OVITO opens.

fcc, hcp, bcc, cubic and hexagonal diamond, sc and unknown take OVITO's colours for those
structures (as its Common Neighbor Analysis and PTM paint them), so a user comparing the
model with OVITO's classifiers sees the same colour for the same phase. Other prototypes
get distinct colours from matplotlib's tab20 palette.
"""

from __future__ import annotations

from ..training.prototypes import PROTOTYPE_LABELS

__all__ = ["phase_color", "UNKNOWN_COLOR"]

#: OVITO's colour of "Other" structures, a light grey
UNKNOWN_COLOR = (0.95, 0.95, 0.95)

_OVITO = {
    "A_cF4_225_a": (0.4, 1.0, 0.4),        # FCC, green
    "A_hP2_194_c": (1.0, 0.4, 0.4),        # HCP, red
    "A_cI2_229_a": (0.4, 0.4, 1.0),        # BCC, blue
    "A_cF8_227_a": (0.075, 0.627, 0.996),  # cubic diamond
    "A_hP4_194_f": (0.569, 0.275, 0.706),  # hexagonal diamond
    "A_cP1_221_a": (0.37, 0.28, 0.16),     # simple cubic
}

# tab20 without the greens, reds and blues the phases above use
_OTHERS = ((1.0, 0.498, 0.055), (0.580, 0.404, 0.741), (0.549, 0.337, 0.294),
           (0.890, 0.467, 0.761), (0.737, 0.741, 0.133), (0.090, 0.745, 0.812),
           (1.0, 0.733, 0.471), (0.773, 0.690, 0.835), (0.769, 0.612, 0.580),
           (0.969, 0.714, 0.824), (0.859, 0.859, 0.553), (0.620, 0.855, 0.898),
           (0.498, 0.498, 0.498), (0.780, 0.780, 0.780), (0.6, 0.3, 0.0),
           (0.3, 0.3, 0.0), (0.0, 0.4, 0.4), (0.5, 0.0, 0.3), (0.2, 0.2, 0.5))

_COLORS = dict(_OVITO)
for _label, _color in zip([p for p in PROTOTYPE_LABELS if p not in _OVITO], _OTHERS):
    _COLORS[_label] = _color


def phase_color(label: str, index: int = 0) -> tuple[float, float, float]:
    """RGB in [0, 1] of a phase label; "unknown" is light grey, labels outside the
    prototype table (a custom model's) take a colour from their index."""
    if label == "unknown":
        return UNKNOWN_COLOR
    return _COLORS.get(label, _OTHERS[index % len(_OTHERS)])
