"""LAMMPS inputs for the near-melting snapshots: one template, one entry per system.

Each system is a periodic crystal (or a melted one) equilibrated under NPT with one
of Debian's stock potentials, then written out a few times. The rendered input text is
hashed into the cache key, so editing a template or a parameter regenerates the frames.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..training.prototypes import BCC, DIAMOND, FCC, HCP, HEX_DIAMOND, OMEGA

#: Where Debian's ``lammps-data`` puts the potential files; ``LAMMPS_POTENTIALS`` overrides.
DEFAULT_POTENTIAL_DIRS = ("/usr/share/lammps/potentials",)

TEMPLATE = """\
# lpfm eval snapshot: {name} ({description})
units           metal
atom_style      atomic
boundary        p p p
{lattice}
region          box block 0 {nx} 0 {ny} 0 {nz}
create_box      1 box
create_atoms    1 box
mass            1 {mass}
pair_style      {pair_style}
pair_coeff      * * {potential} {element}
neighbor        1.0 bin
velocity        all create {t_start} {seed} mom yes rot yes dist gaussian
timestep        {timestep}
thermo          {thermo_every}
thermo_style    custom step temp pe press vol lx ly lz
thermo_modify   flush yes
{melt}
fix             md all npt temp {temperature} {temperature} {tdamp} {barostat} 0.0 0.0 {pdamp}
run             {n_equilibrate}
{frames}
"""

MELT = """\
fix             melt all npt temp {t_melt} {t_melt} {tdamp} iso 0.0 0.0 {pdamp}
run             {n_melt}
unfix           melt
"""

FRAME = "write_dump      all custom frame_{k}.dump id type x y z modify sort id\n"


def _hcp_lattice(a: float, c_over_a: float) -> str:
    """Orthohexagonal 4-atom HCP cell (x along a, y along a*sqrt(3), z along c)."""
    return (f"lattice         custom {a} a1 1 0 0 a2 0 {math.sqrt(3.0):.10f} 0 "
            f"a3 0 0 {c_over_a} basis 0 0 0 basis 0.5 0.5 0 "
            f"basis 0.5 0.8333333333 0.5 basis 0 0.3333333333 0.5")


@dataclass(frozen=True)
class MDSystem:
    """One snapshot family: what to simulate and which label its atoms should get."""

    name: str
    description: str
    true_label: str | None  # AFLOW label of every atom; None for a liquid
    element: str
    mass: float
    lattice: str
    reps: tuple[int, int, int]
    pair_style: str
    potential: str
    temperature: float
    barostat: str = "iso"
    timestep: float = 0.001  # ps
    equilibrate_ps: float = 6.0
    frame_spacing_ps: float = 1.0
    n_frames: int = 2
    melt_temperature: float | None = None
    melt_ps: float = 0.0
    seed: int = 4928459
    candidates: tuple[str, ...] = field(default=(FCC, BCC, HCP, OMEGA))
    diamond: bool = False  # use the diamond-capable structure identifiers
    note: str = ""

    @property
    def n_atoms_per_cell(self) -> int:
        return self.lattice.count("basis") or {"fcc": 4, "bcc": 2, "diamond": 8}[
            self.lattice.split()[1]]

    @property
    def n_atoms(self) -> int:
        return self.n_atoms_per_cell * self.reps[0] * self.reps[1] * self.reps[2]

    def render(self, potential_dir: str | Path) -> str:
        steps = lambda ps: int(round(ps / self.timestep))  # noqa: E731
        frames = []
        for k in range(self.n_frames):
            if k:
                frames.append(f"run             {steps(self.frame_spacing_ps)}\n")
            frames.append(FRAME.format(k=k))
        tdamp, pdamp = 100 * self.timestep, 1000 * self.timestep
        melt = ""
        if self.melt_temperature:
            melt = MELT.format(t_melt=self.melt_temperature, tdamp=tdamp, pdamp=pdamp,
                               n_melt=steps(self.melt_ps))
        return TEMPLATE.format(
            name=self.name, description=self.description, lattice=self.lattice,
            nx=self.reps[0], ny=self.reps[1], nz=self.reps[2], mass=self.mass,
            pair_style=self.pair_style, potential=str(Path(potential_dir) / self.potential),
            element=self.element, seed=self.seed, timestep=self.timestep,
            t_start=2.0 * (self.melt_temperature or self.temperature),
            thermo_every=steps(0.5), melt=melt, temperature=self.temperature, tdamp=tdamp,
            barostat=self.barostat, pdamp=pdamp, n_equilibrate=steps(self.equilibrate_ps),
            frames="".join(frames))


SI_CANDIDATES = (DIAMOND, HEX_DIAMOND, "A_tI4_141_a", "A_cI16_206_c", "A_tP12_96_ab")

SYSTEMS: tuple[MDSystem, ...] = (
    MDSystem("Cu_fcc_1200K", "FCC Cu, Mishin EAM (Tm ~1330 K), 1200 K", FCC, "Cu", 63.546,
             "lattice         fcc 3.615", (8, 8, 8), "eam/alloy", "Cu_mishin1.eam.alloy",
             1200.0),
    MDSystem("Al_fcc_850K", "FCC Al, Mendelev EAM (Tm ~930 K), 850 K", FCC, "Al", 26.9815,
             "lattice         fcc 4.05", (8, 8, 8), "eam/fs", "Al_mm.eam.fs", 850.0),
    MDSystem("Fe_bcc_1700K", "BCC Fe, Mendelev 2003 EAM (Tm ~1770 K), 1700 K", BCC, "Fe",
             55.845, "lattice         bcc 2.855", (10, 10, 10), "eam/fs", "Fe_mm.eam.fs",
             1700.0),
    MDSystem("Mg_hcp_850K", "HCP Mg, Sun/Mendelev EAM (Tm ~915 K), 850 K", HCP, "Mg", 24.305,
             _hcp_lattice(3.21, 1.624), (10, 6, 8), "eam/fs", "Mg_mm.eam.fs", 850.0,
             barostat="aniso"),
    MDSystem("Ti_hcp_1000K", "HCP Ti, Hennig spline-MEAM, 1000 K", HCP, "Ti", 47.867,
             _hcp_lattice(2.95, 1.587), (11, 6, 7), "meam/spline", "Ti.meam.spline", 1000.0,
             barostat="aniso"),
    # beta Ti's thermal displacements run towards omega and hcp: the hardest hot crystal
    MDSystem("Ti_bcc_1400K", "BCC (beta) Ti, Hennig spline-MEAM, 1400 K", BCC, "Ti", 47.867,
             "lattice         bcc 3.31", (10, 10, 10), "meam/spline", "Ti.meam.spline",
             1400.0),
    MDSystem("Si_diamond_1600K", "diamond Si, Stillinger-Weber (Tm ~1690 K), 1600 K", DIAMOND,
             "Si", 28.0855, "lattice         diamond 5.431", (6, 6, 6), "sw", "Si.sw", 1600.0,
             candidates=SI_CANDIDATES, diamond=True),
    MDSystem("Cu_liquid_2000K", "liquid Cu, Mishin EAM, melted at 3000 K then 2000 K", None,
             "Cu", 63.546, "lattice         fcc 3.615", (8, 8, 8), "eam/alloy",
             "Cu_mishin1.eam.alloy", 2000.0, melt_temperature=3000.0, melt_ps=3.0),
)

SYSTEMS_BY_NAME = {s.name: s for s in SYSTEMS}

#: The liquids that ``lpfm calibrate`` sets the unknown thresholds on: other elements and
#: potentials than the evaluation's liquid Cu, so the report's liquid figure is held out.
CALIBRATION_LIQUIDS: tuple[MDSystem, ...] = (
    MDSystem("Al_liquid_1300K", "liquid Al, Mendelev EAM, melted at 2000 K then 1300 K", None,
             "Al", 26.9815, "lattice         fcc 4.05", (8, 8, 8), "eam/fs", "Al_mm.eam.fs",
             1300.0, melt_temperature=2000.0, melt_ps=3.0),
    MDSystem("Ni_liquid_1900K", "liquid Ni, Onat-Durukanoglu CuNi EAM, melted at 3000 K then "
             "1900 K", None, "Ni", 58.693, "lattice         fcc 3.52", (8, 8, 8), "eam/alloy",
             "CuNi.eam.alloy", 1900.0, melt_temperature=3000.0, melt_ps=3.0),
    MDSystem("Zr_liquid_2300K", "liquid Zr, Mendelev-Ackland EAM, melted at 3500 K then 2300 K",
             None, "Zr", 91.224, _hcp_lattice(3.23, 1.60), (10, 6, 8), "eam/fs",
             "Zr_mm.eam.fs", 2300.0, melt_temperature=3500.0, melt_ps=3.0),
)


def potential_directory() -> Path:
    for folder in (os.environ.get("LAMMPS_POTENTIALS"), *DEFAULT_POTENTIAL_DIRS):
        if folder and Path(folder).is_dir():
            return Path(folder)
    raise FileNotFoundError("LAMMPS potential files not found: install Debian's lammps-data "
                            "or set LAMMPS_POTENTIALS to the folder holding Cu_mishin1.eam.alloy")


#: Hot crystals that ``lpfm calibrate`` sets the phase prior on: other elements and
#: potentials than the evaluation's crystals, so the report's step-0 figures stay held out.
CALIBRATION_CRYSTALS: tuple[MDSystem, ...] = (
    MDSystem("Ni_fcc_1500K", "FCC Ni, Onat-Durukanoglu CuNi EAM, 1500 K", FCC, "Ni", 58.693,
             "lattice         fcc 3.52", (8, 8, 8), "eam/alloy", "CuNi.eam.alloy", 1500.0),
    MDSystem("W_bcc_3000K", "BCC W, Zhou EAM, 3000 K", BCC, "W", 183.84,
             "lattice         bcc 3.165", (10, 10, 10), "eam/alloy", "W_zhou.eam.alloy",
             3000.0),
    MDSystem("Zr_hcp_1000K", "HCP Zr, Mendelev-Ackland EAM, 1000 K", HCP, "Zr", 91.224,
             _hcp_lattice(3.23, 1.60), (10, 6, 8), "eam/fs", "Zr_mm.eam.fs", 1000.0,
             barostat="aniso"),
    MDSystem("Ge_diamond_1000K", "diamond Ge, Tersoff, 1000 K", DIAMOND, "Ge", 72.63,
             "lattice         diamond 5.658", (6, 6, 6), "tersoff", "Ge.tersoff", 1000.0,
             candidates=SI_CANDIDATES, diamond=True),
    # a beta (high-temperature BCC) phase, whose thermal displacements run along the
    # bcc -> omega path, as hot BCC Ti's do (PTM without a cutoff: 70% BCC, 25% HCP)
    MDSystem("Zr_bcc_1400K", "BCC Zr, Mendelev-Ackland EAM, 1400 K", BCC, "Zr", 91.224,
             "lattice         bcc 3.57", (10, 10, 10), "eam/fs", "Zr_mm.eam.fs", 1400.0),
)
