"""LAMMPS inputs of the "real systems" section: free surfaces, a particle, a void, a
solid-liquid interface, compressed hot crystals, the Ti ramp and the Fe shock.

Every case is an input text rendered with Debian's potentials; each writes the frames it
names (``write_dump ... frame_<name>.dump``). ``case_frames`` runs a case once and caches
its frames by the hash of the rendered input, as ``md_snapshots`` does for section 3.
The truth of each case follows from how it was built (see ``real_truth``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..training.prototypes import BCC, FCC, FE_CANDIDATES, HCP, METAL_CANDIDATES
from .lammps_cache import build_entry, parse_thermo
from .md_snapshots import DEFAULT_CACHE
from .md_templates import _hcp_lattice, potential_directory

CANDIDATES = METAL_CANDIDATES

#: Moderate temperature of the surface, particle, void and compression cases (K).
T_MODERATE = 500.0
#: Cu near its melting point with Mishin's EAM (Tm ~1327 K) for the coexistence run.
T_COEXIST = 1320.0
COMPRESSIONS = (0.05, 0.10, 0.15, 0.20)


@dataclass(frozen=True)
class Material:
    element: str
    mass: float
    pair_style: str
    potential: str
    lattice: str  # LAMMPS lattice command (without orient)
    label: str  # AFLOW label of its crystal

    def setup(self, potential_dir: Path) -> str:
        return (f"mass            1 {self.mass}\n"
                f"pair_style      {self.pair_style}\n"
                f"pair_coeff      * * {Path(potential_dir) / self.potential} {self.element}\n"
                "neighbor        1.0 bin\n")


CU = Material("Cu", 63.546, "eam/alloy", "Cu_mishin1.eam.alloy", "lattice         fcc 3.615", FCC)
FE = Material("Fe", 55.845, "eam/fs", "Fe_mm.eam.fs", "lattice         bcc 2.855", BCC)
TI = Material("Ti", 47.867, "meam/spline", "Ti.meam.spline", _hcp_lattice(2.95, 1.587), HCP)

HEAD = "units           metal\natom_style      atomic\nboundary        p p p\n"
THERMO = ("thermo          250\nthermo_style    custom step temp pe press pxx pyy pzz lx ly lz\n"
          "thermo_modify   flush yes\n")


def dump(name: str) -> str:
    return f"write_dump      all custom frame_{name}.dump id type x y z modify sort id\n"


@dataclass(frozen=True)
class RealCase:
    """One LAMMPS run and the frames it writes."""

    name: str
    kind: str  # slab | particle | void | coexistence | compressed | ramp | shock
    description: str
    material: Material
    body: str  # the input after the header; {setup} is replaced by the potential lines
    frames: tuple[str, ...] = ("final",)
    info: tuple[tuple[str, object], ...] = ()  # what the truth helpers need (axis, strain...)
    template_file: str | None = None  # an example input the body is prepended to (shock)

    def render(self, potential_dir: str | Path) -> str:
        text = f"# lpfm eval real systems: {self.name} ({self.description})\n"
        text += self.body.replace("{setup}", self.material.setup(Path(potential_dir)))
        if self.template_file:
            text += Path(self.template_file).read_text()
        return text

    @property
    def details(self) -> dict:
        return dict(self.info)


def slab_case(name: str, material: Material, reps: tuple[int, int, int], seed: int,
              steps: int = 1500) -> RealCase:
    """A slab with (001) free surfaces in a box with as much vacuum as slab along z."""
    nx, ny, nz = reps
    body = (HEAD + material.lattice + "\n"
            f"region          box block 0 {nx} 0 {ny} {-nz / 2:g} {1.5 * nz:g}\n"
            "create_box      1 box\n"
            f"region          slab block INF INF INF INF -0.01 {nz - 0.01:g}\n"
            "create_atoms    1 region slab\n{setup}"
            f"velocity        all create {2 * T_MODERATE:g} {seed} mom yes rot no dist gaussian\n"
            "timestep        0.002\n" + THERMO +
            f"fix             md all nvt temp {T_MODERATE:g} {T_MODERATE:g} 0.2\n"
            f"run             {steps}\n" + dump("final"))
    return RealCase(name, "slab", f"{material.element} {material.label} slab, (001) surfaces, "
                    f"{reps[0]}x{reps[1]}x{reps[2]} cells, NVT {T_MODERATE:g} K "
                    f"{steps * 0.002:g} ps",
                    material, body, info=(("axis", 2),))


def particle_case(radius: float = 20.0, box: float = 80.0, seed: int = 7231) -> RealCase:
    body = (HEAD + CU.lattice + "\n"
            f"region          box block {-box / 2:g} {box / 2:g} {-box / 2:g} {box / 2:g} "
            f"{-box / 2:g} {box / 2:g} units box\n"
            "create_box      1 box\n"
            f"region          ball sphere 0 0 0 {radius:g} units box\n"
            "create_atoms    1 region ball\n{setup}"
            f"velocity        all create {2 * T_MODERATE:g} {seed} mom yes rot yes dist gaussian\n"
            "timestep        0.002\n" + THERMO +
            f"fix             md all nvt temp {T_MODERATE:g} {T_MODERATE:g} 0.2\n"
            "run             1500\n" + dump("final"))
    return RealCase("Cu_particle", "particle", f"Cu FCC particle, radius {radius:g} A, "
                    f"{box:g} A box, NVT {T_MODERATE:g} K 3 ps", CU, body)


def void_case(radius: float = 8.0, reps: int = 10, seed: int = 9127) -> RealCase:
    centre = reps / 2 * 3.615
    body = (HEAD + CU.lattice + "\n"
            f"region          box block 0 {reps} 0 {reps} 0 {reps}\n"
            "create_box      1 box\ncreate_atoms    1 box\n{setup}"
            f"region          hole sphere {centre:g} {centre:g} {centre:g} {radius:g} units box\n"
            "delete_atoms    region hole\n"
            f"velocity        all create {2 * T_MODERATE:g} {seed} mom yes rot no dist gaussian\n"
            "timestep        0.002\n" + THERMO +
            f"fix             md all npt temp {T_MODERATE:g} {T_MODERATE:g} 0.2 iso 0 0 1.0\n"
            "run             1500\n" + dump("final"))
    return RealCase("Cu_void", "void", f"Cu FCC, {reps}^3 cells, spherical void of radius "
                    f"{radius:g} A, NPT {T_MODERATE:g} K 3 ps", CU, body)


def coexistence_case(reps: tuple[int, int, int] = (6, 6, 16), seed: int = 5521) -> RealCase:
    """Cu equilibrated at T_COEXIST, its upper half melted at 3000 K with the lower half
    frozen, cooled to T_COEXIST and the whole held there with the box free along z only.

    (A perfect crystal at 1400 K does not melt within picoseconds: it superheats; so the
    half is melted hot, then brought back near Tm.)"""
    t = T_COEXIST
    nx, ny, nz = reps
    body = (HEAD + CU.lattice + "\n"
            f"region          box block 0 {nx} 0 {ny} 0 {nz}\n"
            "create_box      1 box\ncreate_atoms    1 box\n{setup}"
            f"velocity        all create {2 * t:g} {seed} mom yes rot no dist gaussian\n"
            "timestep        0.001\n" + THERMO +
            f"fix             eq all npt temp {t:g} {t:g} 0.1 iso 0 0 1.0\n"
            "run             1000\nunfix           eq\n"
            "region          top block INF INF INF INF $(zlo+0.5*lz) INF units box\n"
            "group           liquid region top\ngroup           solid subtract all liquid\n"
            "velocity        solid set 0 0 0\n"
            "fix             frozen solid setforce 0 0 0\n"
            f"velocity        liquid create 6000 {seed + 1} mom yes rot no dist gaussian\n"
            "fix             melt liquid nvt temp 3000 3000 0.1\n"
            "run             2000\nunfix           melt\n"
            f"fix             cool liquid nvt temp {t:g} {t:g} 0.1\n"
            "run             500\nunfix           cool\nunfix           frozen\n"
            f"velocity        solid create {t:g} {seed + 2} mom yes rot no dist gaussian\n"
            f"fix             hold all npt temp {t:g} {t:g} 0.1 z 0 0 1.0\n"
            "run             1500\n" + dump("final"))
    return RealCase("Cu_solid_liquid", "coexistence",
                    f"Cu, {nx}x{ny}x{nz} cells, upper half melted (3000 K, 2 ps), cooled "
                    f"(0.5 ps), then all held at {t:g} K (near Tm) 1.5 ps, box free along z",
                    CU, body,
                    info=(("axis", 2), ("reps", reps)))


def compressed_case(name: str, material: Material, orient: str, reps: tuple[int, int, int],
                    axes: tuple[str, ...], seed: int, equilibrate: int = 500,
                    hold: int = 250) -> RealCase:
    """A crystal equilibrated at T_MODERATE, then, from the same restart, compressed by each
    of COMPRESSIONS along each axis (box and atoms scaled: uniaxial strain, as in a shock)
    and held 1 ps at fixed box."""
    nx, ny, nz = reps
    text = (HEAD + material.lattice + (f" {orient}" if orient else "") + "\n"
            f"region          box block 0 {nx} 0 {ny} 0 {nz}\n"
            "create_box      1 box\ncreate_atoms    1 box\n{setup}"
            f"velocity        all create {2 * T_MODERATE:g} {seed} mom yes rot no dist gaussian\n"
            "timestep        0.002\n" + THERMO +
            f"fix             eq all npt temp {T_MODERATE:g} {T_MODERATE:g} 0.2 aniso 0 0 1.0\n"
            f"run             {equilibrate}\nunfix           eq\n" + dump("0") +
            "write_restart   equilibrated.restart\n")
    frames = ["0"]
    for axis in axes:
        for c in COMPRESSIONS:
            frame = f"{axis}{c:g}"
            frames.append(frame)
            text += ("clear\nread_restart    equilibrated.restart\n{setup}"
                     f"change_box      all {axis} scale {1 - c:g} remap units box\n"
                     "timestep        0.002\n" + THERMO +
                     f"fix             hold all nvt temp {T_MODERATE:g} {T_MODERATE:g} 0.2\n"
                     f"run             {hold}\n" + dump(frame))
    return RealCase(name, "compressed",
                    f"{material.element} {material.label}, {nx}x{ny}x{nz} cells"
                    + (f" ({orient})" if orient else "") + f", NPT {T_MODERATE:g} K "
                    f"{equilibrate * 0.002:g} ps, then compressed uniaxially and held "
                    f"{hold * 0.002:g} ps (NVT)", material, text,
                    frames=tuple(frames), info=(("axes", axes),))


def ramp_case(reps: tuple[int, int, int] = (8, 5, 10), rate: float = 0.01, ramp_ps: float = 15.0,
              hold_ps: float = 5.0, seed: int = 3907) -> RealCase:
    """The Ti ramp: HCP compressed along c (lateral stress held at 0 at 300 K) by
    ``rate`` per ps for ``ramp_ps``, then held ``hold_ps``; it transforms, mostly to omega.

    The defaults are the ramp of the project's findings and of ``lammps_examples/ti_omega``
    (1,600 atoms, 1%/ps to 15%, 5 ps held; about 250 s of LAMMPS on two idle cores). A
    faster ramp transforms less: ``ramp_case((6, 4, 8), 0.02, 7.5, 2.5)`` (768 atoms, 2%/ps)
    left f11 = 24% on its final frame (ideal omega 67%), about a third of it omega."""
    nx, ny, nz = reps
    body = (HEAD + TI.lattice + "\n"
            f"region          box block 0 {nx} 0 {ny} 0 {nz}\n"
            "create_box      1 box\ncreate_atoms    1 box\n{setup}"
            f"velocity        all create 600 {seed} mom yes rot yes dist gaussian\n"
            "timestep        0.002\n" + THERMO.replace("250", "500") +
            "fix             npt all npt temp 300 300 0.1 x 0 0 1.0 y 0 0 1.0\n"
            f"fix             ramp all deform 1 z erate {-rate:g} remap x\n"
            f"run             {round(ramp_ps / 0.002)}\nunfix           ramp\n"
            f"run             {round(hold_ps / 0.002)}\n" + dump("final"))
    n_atoms = 4 * nx * ny * nz
    return RealCase("Ti_ramp", "ramp", f"HCP Ti (Ti.meam.spline), {n_atoms} atoms, 300 K, z (c "
                    f"axis) compressed at {100 * rate:g}%/ps for {ramp_ps:g} ps (lateral "
                    f"stress 0), then held {hold_ps:g} ps", TI, body)


#: the candidates the shock example classifies Fe over (``in.shock``'s ``phases``)
EXAMPLE_SHOCK_CANDIDATES = FE_CANDIDATES
#: how the shock example classified Fe until 2026-12-08 (model, and the unshocked atomic
#: volume it fixed the length scale with; argmax over fcc, bcc, hcp and omega): the
#: reference the default, as the example now runs it, must match on the same atoms
REFERENCE_SHOCK_MODEL = "lenient"
REFERENCE_SHOCK_ATOMIC_VOLUME = 11.66


def shock_case(example_dir: Path | None = None) -> RealCase:
    """The shock example's MD (``in.shock_md``) at the size and length of ``lpfm demo
    --quick``: 2,560 BCC Fe atoms, up = 1.4 km/s, 1 ps."""
    from ..cli.demo import EXAMPLES

    source = Path(example_dir or EXAMPLES / "shock") / "in.shock_md"
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found: the shocked-Fe case reuses the shock "
                                "example's MD and runs from a checkout of the repository")
    settings = {"nz": 20, "steps_eq": 100, "steps_shock": 1000, "dump_every": 1000,
                "dumpfile": "frame_final.dump"}
    # index variables keep their first definition, so these lines act as -var settings
    body = "".join(f"variable {k} index {v}\n" for k, v in settings.items())
    body += "variable pot index {potential}\n"
    case = RealCase("Fe_shock", "shock", "BCC Fe (Fe_mm), momentum-mirror shock along [001], "
                    "up = 1.4 km/s, 8x8x20 cells, 1 ps (the quick demo's MD, in.shock_md)",
                    FE, body, info=(("region_depth", 32.0),
                                    ("reference_model", REFERENCE_SHOCK_MODEL),
                                    ("reference_atomic_volume",
                                     REFERENCE_SHOCK_ATOMIC_VOLUME)),
                    template_file=str(source))
    return case


def default_cases() -> tuple[RealCase, ...]:
    return (
        slab_case("Cu_slab", CU, (6, 6, 10), 1187),
        slab_case("Fe_slab", FE, (8, 8, 12), 2213),
        particle_case(),
        void_case(),
        coexistence_case(),
        compressed_case("Cu_compressed_100", CU, "", (5, 5, 5), ("z",), 4411),
        # LAMMPS' spacing along an orient axis is the unit cube's extent (1.633a along
        # [11-2], whose period is 1.225a): 3 of them are 4 periods, so the box is periodic
        compressed_case("Cu_compressed_111", CU, "orient x 1 -1 0 orient y 1 1 -2 orient z 1 1 1",
                        (4, 3, 3), ("z",), 4412),
        compressed_case("Fe_compressed_100", FE, "", (6, 6, 6), ("z",), 4413),
        compressed_case("Fe_compressed_110", FE, "orient x 0 0 1 orient y 1 -1 0 orient z 1 1 0",
                        (6, 4, 4), ("z",), 4414),
        # meam/spline costs ~15x an EAM per atom: a smaller crystal and shorter holds
        compressed_case("Ti_compressed", TI, "", (6, 4, 4), ("z", "x"), 4415, hold=150),
        shock_case(),
        ramp_case(),
    )


def select_cases(names: str | None) -> tuple[RealCase, ...]:
    """The default cases named in ``names`` (comma-separated), or all of them."""
    cases = default_cases()
    if not names:
        return cases
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = [c.name for c in cases]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown real-system case(s) {unknown}; choose from {known}")
    return tuple(c for c in cases if c.name in wanted)


def _render(case: RealCase, potential_dir: Path) -> str:
    text = case.render(potential_dir)
    return text.replace("{potential}", str(Path(potential_dir) / case.material.potential))


def cache_key(case: RealCase, potential_dir: Path) -> str:
    text = _render(case, potential_dir)
    return f"{case.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _zwall(log_text: str) -> float | None:
    """The shock's wall position, from the echoed ``variable zwall equal <value>``."""
    for line in log_text.splitlines():  # LAMMPS echoes the line before and after substitution
        words = line.split()
        if words[:3] == ["variable", "zwall", "equal"] and len(words) == 4:
            try:
                return float(words[3])
            except ValueError:
                continue
    return None


def load_case_frames(folder: Path, case: RealCase) -> dict:
    from ase.io import read

    frames = {}
    for name in case.frames:
        atoms = read(str(folder / f"frame_{name}.extxyz"), format="extxyz")
        atoms.info.update(case=case.name, frame=name)
        frames[name] = atoms
    return frames


def case_frames(case: RealCase, cache: str | Path = DEFAULT_CACHE, n_ranks: int = 2,
                log=print) -> tuple[dict, dict]:
    """The frames of ``case`` by name (from the cache, or made now) and the run's metadata."""
    potential_dir = potential_directory()
    folder = Path(cache).expanduser() / "real" / cache_key(case, potential_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # another evaluation sharing the cache may be making this case: wait for it
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _cached_or_run(case, folder, potential_dir, n_ranks, log)


def _cached_or_run(case, folder, potential_dir, n_ranks, log):
    from ase.io import read, write

    meta_path = folder / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("zwall") is None and (folder / "log.lammps").is_file():
            meta["zwall"] = _zwall((folder / "log.lammps").read_text())
        return load_case_frames(folder, case), {**meta, "from_cache": True}
    log(f"  running LAMMPS for {case.name} ({case.description})")

    def finish(work: Path, log_text: str, wall: float) -> dict:
        for name in case.frames:
            # the last frame of the file (the shock's dump also holds its first one)
            atoms = read(str(work / f"frame_{name}.dump"), index=-1, format="lammps-dump-text")
            atoms.set_chemical_symbols([case.material.element] * len(atoms))
            write(str(work / f"frame_{name}.extxyz"), atoms, format="extxyz")
        for junk in [*work.glob("frame_*.dump"), *work.glob("*.restart"),
                     *work.glob("*.lammpstrj")]:
            junk.unlink()
        thermo = parse_thermo(log_text)
        return {"case": case.name, "kind": case.kind, "description": case.description,
                "potential": case.material.potential, "pair_style": case.material.pair_style,
                "n_atoms": len(atoms), "frames": list(case.frames), "lammps_wall_s": wall,
                "ranks": n_ranks, "key": folder.name,
                "last_thermo": thermo[-1] if thermo else None, "zwall": _zwall(log_text)}

    meta = build_entry(folder, case.name, _render(case, potential_dir), n_ranks, finish)
    return load_case_frames(folder, case), {**meta, "from_cache": False}
