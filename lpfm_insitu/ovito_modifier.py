"""The phase model as an OVITO Python modifier.

In a Python script (``pip install ovito``)::

    from ovito.io import import_file
    from lpfm_insitu.ovito_modifier import LPFMModifier

    pipeline = import_file("out.dump")
    pipeline.modifiers.append(LPFMModifier(denoise_steps=8, ops=["fcc", "hcp"]))
    data = pipeline.compute()
    data.particles["lpfm_phase"]  # a typed property: data.particles["lpfm_phase"].types

OVITO Pro takes a class-based modifier defined in a "Python script" modifier's code
editor; with this package importable by OVITO Pro's Python, that code can be::

    from lpfm_insitu.ovito_modifier import LPFMModifier

    class LPFM(LPFMModifier):
        pass

(Only the ``ovito`` module from PyPI is tested here, not the OVITO Pro application.)

Options (traits; keywords of the constructor, or attributes): ``model`` (a shipped name or a
model file, default "default"), ``denoise_steps`` (0), ``candidates`` (None: all phases),
``ops`` ("all", or phases, or None), ``nn_distance`` / ``atomic_volume`` (the length scale
as ``configure`` takes it, needed for a box that is not periodic in all directions or holds
vacuum; ``nn_distance`` is the FCC nearest-neighbour distance at the material's density,
(sqrt(2) V)^(1/3)), ``denoised_positions`` (False), ``device`` ("cpu"). Phases are given by
common name ("fcc", "omega", "beta-Sn") or AFLOW label.

Each frame is converted with ``ovito.io.ase.ovito_to_ase`` (cell and periodicity kept)
and classified by ``PhaseModel.classify_atoms``, so the answers are those of
``lpfm classify``. Output particle properties:

- ``lpfm_phase``: the label, typed: one named, colour-coded type per phase (type id =
  the phase's index in the model, as ``i_lpfm_phase`` in situ; -1 = unknown);
- ``lpfm_conf``: the confidence (largest logit over the candidates);
- ``lpfm_op``: the logits of the phases in ``ops``, one named component per phase;
- ``lpfm_displacement`` (with ``denoise_steps`` >= 1): the denoising displacement; with
  ``denoised_positions`` the atoms are also moved by it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ovito.data import DataCollection, ElementType
from ovito.io.ase import ovito_to_ase
from ovito.pipeline import ModifierInterface
from traits.api import Any, Bool, Float, Int, Str

from .constants import UNKNOWN_PHASE
from .training.prototypes import PROTOTYPES

PHASE_PROPERTY = "lpfm_phase"
CONFIDENCE_PROPERTY = "lpfm_conf"
OP_PROPERTY = "lpfm_op"
DISPLACEMENT_PROPERTY = "lpfm_displacement"
UNKNOWN_NAME = "unknown"

# The colours of OVITO's own structure identification (PTM, CNA) for the lattices they
# share, so an LPFM pipeline reads like theirs; the rarer phases get tab20 colours.
_STRUCTURE_COLOURS = {
    "A_cF4_225_a": (0.4, 1.0, 0.4),  # fcc
    "A_hP2_194_c": (1.0, 0.4, 0.4),  # hcp
    "A_cI2_229_a": (0.4, 0.4, 1.0),  # bcc
    "A_cF8_227_a": (0.075, 0.6, 0.6),  # cubic diamond
    "A_hP4_194_f": (1.0, 0.6, 0.0),  # hexagonal diamond
    "A_cP1_221_a": (0.95, 0.8, 0.2),  # simple cubic
    "A_hP3_191_ad": (0.85, 0.35, 0.85),  # omega: no OVITO type; kept apart from bcc's blue
}
UNKNOWN_COLOUR = (0.95, 0.95, 0.95)  # OVITO's "Other"


def common_name(label: str) -> str:
    """The phase's common name ("fcc", "omega", "beta-Sn"); the label itself if it has none."""
    prototype = PROTOTYPES.get(label)
    if prototype is None:
        return label
    return prototype.name.split(" (")[0]


def phase_label(name: str, phases: Sequence[str]) -> str:
    """The model's label for a phase given by AFLOW label or common name (any case)."""
    if name in phases:
        return name
    by_name = {common_name(p).lower(): p for p in phases}
    try:
        return by_name[str(name).strip().lower()]
    except KeyError:
        known = ", ".join(f"{common_name(p)} ({p})" for p in phases)
        raise ValueError(f"{name!r} is not a phase of this model; its phases are {known}") from None


def phase_colours(phases: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors
    others = iter(palette[k % len(palette)] for k in range(len(phases)))
    return {p: _STRUCTURE_COLOURS.get(p) or tuple(float(c) for c in next(others))
            for p in phases}


class LPFMModifier(ModifierInterface):
    """Labels, confidence, order parameters and denoised positions from the phase model."""

    model = Str("default", label="Model (shipped name or model file)")
    denoise_steps = Int(0, label="Denoising steps")
    candidates = Any(None, label="Candidate phases (None or 'all': every phase)")
    ops = Any("all", label="Order parameters ('all', phases, or None)")
    nn_distance = Float(0.0, label="FCC-equivalent nearest-neighbour distance (Å; 0: unset)")
    atomic_volume = Float(0.0, label="Volume per atom (Å³; 0: unset)")
    denoised_positions = Bool(False, label="Move atoms to their denoised positions")
    device = Str("cpu", label="Torch device")

    def __init__(self, **options):
        super().__init__(**options)
        self._loaded: tuple[tuple[str, str], object] | None = None

    def modify(self, data: DataCollection, *, frame: int = 0, **kwargs) -> None:
        model = self._model()
        candidates = self._phase_list("candidates", self.candidates, model.phases)
        ops = self._phase_list("ops", self.ops, model.phases)
        steps = self._denoise_steps()
        nn_distance = self._nn_distance()
        if self.denoised_positions and steps == 0:
            raise ValueError("LPFMModifier: denoised_positions=True moves atoms by the denoising "
                             "displacement, which is zero without denoising: set denoise_steps "
                             ">= 1")
        if data.particles is None or data.particles.count == 0:
            raise ValueError("LPFMModifier: the pipeline's data holds no particles to classify")
        atoms = ovito_to_ase(data)
        result = model.classify_atoms(atoms, denoise_steps=steps, nn_distance=nn_distance,
                                      candidates=candidates)
        self._write(data, model.phases, result, ops)

    # --- options ------------------------------------------------------------------------

    def _model(self):
        key = (self.model, self.device)
        if self._loaded is None or self._loaded[0] != key:
            from .model.files import load_model

            self._loaded = (key, load_model(self.model, device=self.device))
        return self._loaded[1]

    def _denoise_steps(self) -> int:
        steps = self.denoise_steps
        if steps < 0:
            raise ValueError(f"LPFMModifier: denoise_steps={steps} must be >= 0 "
                             "(0: classify as is; the shipped models are calibrated for 1, 2, 4 "
                             "and 8)")
        return int(steps)

    def _nn_distance(self) -> float | None:
        """The length scale as classify_atoms takes it; None: from the cell (periodic input)."""
        for option in ("nn_distance", "atomic_volume"):
            value = getattr(self, option)
            if not value >= 0:
                raise ValueError(f"LPFMModifier: {option}={value!r} must be > 0, or 0 to read "
                                 "the density from the cell")
        if self.nn_distance and self.atomic_volume:
            raise ValueError("LPFMModifier: give nn_distance or atomic_volume, not both "
                             "(both set the length scale)")
        if self.atomic_volume:
            from .model.inference import equivalent_nn_distance  # torch: only once a model runs

            return equivalent_nn_distance(self.atomic_volume)
        return self.nn_distance or None

    @staticmethod
    def _phase_list(option: str, value, phases: Sequence[str]) -> list[str] | None:
        """Model labels for an option given as "all", None, or phase names/labels."""
        if value is None or (isinstance(value, str) and value == "all"):
            return None if value is None else list(phases)
        names = [value] if isinstance(value, str) else list(value)
        try:
            labels = [phase_label(n, phases) for n in names]
        except ValueError as exc:
            raise ValueError(f"LPFMModifier: {option}={value!r}: {exc}") from None
        if len(set(labels)) != len(labels):
            raise ValueError(f"LPFMModifier: {option}={value!r} names a phase twice")
        if not labels:
            raise ValueError(f"LPFMModifier: {option}=[] names no phase; give phases or None")
        return labels

    # --- output -------------------------------------------------------------------------

    def _write(self, data: DataCollection, phases: Sequence[str], result, ops) -> None:
        particles = data.particles_
        labels = particles.create_property(PHASE_PROPERTY, dtype=int, components=1,
                                           data=result.labels.astype(np.int64))
        colours = phase_colours(phases)
        labels.types.append(ElementType(id=UNKNOWN_PHASE, name=UNKNOWN_NAME,
                                        color=UNKNOWN_COLOUR))
        for index, phase in enumerate(phases):
            labels.types.append(ElementType(id=index, name=common_name(phase),
                                            color=colours[phase]))
        particles.create_property(CONFIDENCE_PROPERTY, data=result.confidence)
        if ops:
            columns = [phases.index(p) for p in ops]
            particles.create_property(OP_PROPERTY, data=result.logits[:, columns],
                                      components=[common_name(p) for p in ops])
        if self.denoise_steps > 0:
            particles.create_property(DISPLACEMENT_PROPERTY, data=result.displacement,
                                      components=["X", "Y", "Z"])
            if self.denoised_positions:
                particles.positions_[...] += result.displacement
        data.attributes["LPFM.model"] = self.model
        data.attributes["LPFM.denoise_steps"] = int(result.denoise_steps_done)


_default_modifier: LPFMModifier | None = None


def modify(frame: int, data: DataCollection) -> None:
    """OVITO's function interface: the default model, no denoising, every phase's OP."""
    global _default_modifier
    if _default_modifier is None:
        _default_modifier = LPFMModifier()
    _default_modifier.modify(data, frame=frame)
