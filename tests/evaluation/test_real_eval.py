"""The "real systems" section: its geometric truth helpers on structures whose answer is
known exactly, its scoring and report rows, and one tiny end-to-end run with LAMMPS."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from lpfm_insitu.evaluation import real_truth as truth
from lpfm_insitu.evaluation.real_cases import CANDIDATES

FCC = "A_cF4_225_a"


def fcc_slab(reps=(6, 6, 10), vacuum=18.0, noise=0.08, seed=0):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(reps)
    atoms.positions += np.random.default_rng(seed).normal(0, noise, atoms.positions.shape)
    atoms.center(vacuum=vacuum, axis=2)
    atoms.pbc = True
    return atoms


def test_contiguous_joins_a_slab_cut_by_the_boundary():
    coords = np.array([0.5, 1.5, 2.5, 8.5, 9.5])  # one slab from 8.5 through 10 to 2.5
    joined = truth.contiguous(coords, 10.0)
    assert np.ptp(joined) == pytest.approx(4.0)
    np.testing.assert_allclose(np.mod(joined, 10.0), coords)


def test_with_vacuum_keeps_the_atoms_and_sets_the_vacuum():
    slab = fcc_slab(vacuum=5.0)
    slab.positions[:, 2] += 12.0  # part of the slab now wraps through the top of the box
    slab.wrap()
    thickness = 9 * 3.615 + 3.615 / 2  # 20 planes 1.8 Å apart (plus the thermal noise)
    for factor in (1.0, 4.0):
        out = truth.with_vacuum(slab, 2, factor)
        z = out.positions[:, 2]
        assert out.cell[2, 2] == pytest.approx(np.ptp(z) * (1 + factor))
        assert np.ptp(z) == pytest.approx(thickness, abs=0.6)
        assert z.min() == pytest.approx(out.cell[2, 2] - z.max())  # centred
        # the same solid: the distances within the slab are unchanged (minimum image)
        before, after = slab.get_distances(0, range(len(slab)), mic=True), \
            out.get_distances(0, range(len(out)), mic=True)
        near = before < 9.0
        np.testing.assert_allclose(after[near], before[near], atol=1e-9)
    with pytest.raises(ValueError, match="positive"):
        truth.with_vacuum(slab, 2, 0.0)


def test_with_vacuum_takes_an_open_frame_as_it_is():
    """A dump open along the normal (shrink-wrapped: atoms a little outside the box) has
    nothing to unwrap; cutting it at an inner gap would lay one end onto the other."""
    slab = fcc_slab(vacuum=0.0)
    z = slab.positions[:, 2]
    slab.positions[:, 2] -= z.min() + 0.3  # the lowest atom just below the box
    slab.cell[2, 2] = np.ptp(z) + 0.05  # the box a hair wider than the atoms' span
    slab.pbc = (True, True, False)
    out = truth.with_vacuum(slab, 2, 1.0)
    shifted = out.positions[:, 2] - slab.positions[:, 2]
    np.testing.assert_allclose(shifted, shifted[0], atol=1e-9)  # one rigid shift
    assert min(out.get_distances(0, range(1, len(out)), mic=True)) > 2.0


def test_atomic_layers_and_the_outermost_layer_of_a_hot_slab():
    slab = fcc_slab()
    z = slab.positions[:, 2]
    layers = truth.atomic_layers(z)
    assert layers.max() + 1 == 20
    np.testing.assert_array_equal(np.bincount(layers), np.full(20, 72))
    # layers are ordered along the normal
    means = [z[layers == k].mean() for k in range(20)]
    assert np.all(np.diff(means) > 1.5)
    outer = truth.outermost_layers(z)
    assert outer.sum() == 144
    assert set(np.flatnonzero(outer)) == set(np.flatnonzero((layers == 0) | (layers == 19)))


def test_surface_distance_of_a_slab_is_the_depth_below_its_outer_plane():
    pytest.importorskip("ovito")
    slab = fcc_slab()
    z = slab.positions[:, 2]
    layers = truth.atomic_layers(z)
    top = z[layers == layers.max()].mean()
    bottom = z[layers == 0].mean()
    depth = np.minimum(z - bottom, top - z)
    distance, surface = truth.surface_distance(slab)
    assert np.abs(distance - depth).max() < 0.4
    assert set(np.flatnonzero(surface)) == set(np.flatnonzero(truth.outermost_layers(z)))
    # the interior of section 6 (> 5 Å inside): the atoms of the planes deeper than 5 Å
    assert (distance[depth > 5.4] > 5.0).all() and (distance[depth < 4.6] < 5.0).all()


def test_surface_distance_finds_a_particle_surface_and_a_void():
    pytest.importorskip("ovito")
    crystal = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(10)
    centre = crystal.cell.diagonal() / 2
    r = np.linalg.norm(crystal.positions - centre, axis=1)
    # a void of radius 8 Å: the distance grows with the distance from its centre
    void = crystal[r > 8.0]
    rv = r[r > 8.0]
    distance, surface = truth.surface_distance(void)
    assert surface.sum() > 0 and rv[surface].max() < 8.0 + 2.6  # the inner wall
    far = rv > 14.0
    np.testing.assert_allclose(distance[far], rv[far] - 8.0, atol=1.5)
    # a particle of radius 12 Å in vacuum: the surface atoms are the outermost ones
    ball = crystal[r < 12.0]
    ball.center(vacuum=15.0)
    rb = r[r < 12.0]
    distance, surface = truth.surface_distance(ball)
    assert rb[surface].min() > 12.0 - 2.6
    core = rb < 5.0
    np.testing.assert_allclose(distance[core], 12.0 - rb[core], atol=1.5)
    # a bulk crystal has no surface
    distance, surface = truth.surface_distance(crystal)
    assert not surface.any() and np.isinf(distance).all()


def half_melted(seed=0):
    """FCC below z = L/2, a uniform random gas of the same density above."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((6, 6, 16))
    atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
    length = atoms.cell[2, 2]
    top = atoms.positions[:, 2] > length / 2
    atoms.positions[top] = rng.uniform(0, 1, (top.sum(), 3)) * [atoms.cell[0, 0],
                                                                atoms.cell[1, 1], length / 2]
    atoms.positions[top, 2] += length / 2
    return atoms, top


def test_the_order_profile_finds_the_two_solid_liquid_interfaces():
    atoms, top = half_melted()
    length = atoms.cell[2, 2]
    k = np.array([4 * np.pi / 3.615, 0, 0])
    centres, values = truth.order_profile(atoms.positions, np.array(atoms.cell), 2, k, 3.615)
    assert values[centres < length / 2 - 3.615].min() > 0.8  # crystal, little noise
    assert values[centres > length / 2 + 3.615].max() < 0.3  # ~1/sqrt(144) liquid
    planes = truth.interface_positions(centres, values, length)
    assert len(planes) == 2
    # one at the boundary (z = 0 = L) and one in the middle, each within a bin
    to_edges = truth.periodic_distance_to_planes(np.array([0.0, length / 2]), planes, length)
    assert (to_edges < 2.0).all()
    crystal, distance, _ = truth.coexistence_truth(atoms, 2, k, 3.615)
    far = distance > 5.0
    np.testing.assert_array_equal(crystal[far], ~top[far])
    # a rigid shift of the whole box changes nothing
    shifted = atoms.copy()
    shifted.positions += [1.3, 0.7, 0.0]
    _, values2 = truth.order_profile(shifted.positions, np.array(atoms.cell), 2, k, 3.615)
    np.testing.assert_allclose(values2, values, atol=1e-9)


def test_periodic_distance_to_planes():
    d = truth.periodic_distance_to_planes(np.array([1.0, 5.0, 9.5]), np.array([0.0, 6.0]), 10.0)
    np.testing.assert_allclose(d, [1.0, 1.0, 0.5])
    assert np.isinf(truth.periodic_distance_to_planes(np.array([1.0]), np.array([]), 10.0)).all()


def test_shell_closure_tells_omega_from_close_packed_and_bcc():
    pytest.importorskip("ovito")
    from lpfm_insitu.training.prototypes import build_prototype

    omega = build_prototype("A_hP3_191_ad", 17.0).repeat((5, 5, 8))
    closure = truth.shell_closure(omega)
    assert np.mean(closure == 11) == pytest.approx(2 / 3)
    assert np.mean(closure == 14) == pytest.approx(1 / 3)
    assert (truth.shell_closure(bulk("Cu", "fcc", a=3.615, cubic=True).repeat(4)) == 12).all()
    assert (truth.shell_closure(bulk("Fe", "bcc", a=2.855, cubic=True).repeat(5)) == 14).all()


def test_unstrained_undoes_the_compression():
    from lpfm_insitu.evaluation.real_eval import unstrained

    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    squeezed = atoms.copy()
    squeezed.set_cell(np.array(atoms.cell) * [1, 1, 0.85], scale_atoms=True)
    back = unstrained(squeezed, "z", 0.15)
    np.testing.assert_allclose(back.cell, atoms.cell)
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-12)


def test_targets_rows_of_a_hand_made_section():
    from lpfm_insitu.evaluation.real_report import real_targets, render_real

    methods = ("lpfm_0", "lpfm_8", "lpfm_cand_0", "lpfm_cand_8", "ptm_nocut", "ptm_0.1", "cna")
    per = lambda v: {m: v for m in methods}  # noqa: E731
    slab = {"kind": "slab", "description": "", "n_atoms": 10, "true_label": FCC,
            "n_interior": 4, "n_outer_layer": 2, "thickness_A": 30.0, "wall_s": 1.0,
            "md": {"lammps_wall_s": 3.0, "ranks": 2, "from_cache": True},
            "interior": {m: {"1": 1.0, "4": 0.985} for m in methods},
            "outer_layer_crystalline": {m: {"1": 0.0, "4": 0.5} for m in methods},
            "vacuum_identical": per(0.9995), "breakdown_outer": per([("unknown", 1.0)])}
    rows = {"0": {"axis": None, "compression": 0.0, "ptm_back_scaled": 1.0,
                  "transformed": False, **per(1.0), "breakdown": per([(FCC, 1.0)])},
            "z0.1": {"axis": "z", "compression": 0.1, "ptm_back_scaled": 0.99,
                     "transformed": False, **per(0.995), "breakdown": per([(FCC, 1.0)])},
            "z0.2": {"axis": "z", "compression": 0.2, "ptm_back_scaled": 0.5,
                     "transformed": True, **per(0.1), "breakdown": per([(FCC, 1.0)])}}
    comp = {"kind": "compressed", "description": "", "true_label": FCC, "n_atoms": 10,
            "rows": rows, "wall_s": 1.0, "md": {"lammps_wall_s": 3.0, "ranks": 2}}
    real = {"interior_depth_A": 5.0, "vacuum_factors": [1.0, 4.0], "untransformed_ptm": 0.9,
            "cases": {"Cu_slab": slab, "Cu_compressed": comp}}
    got = {r[0]: r for r in real_targets({"real": real})}
    interior = [r for k, r in got.items() if k.startswith("real systems: interior")]
    assert [r[2] for r in interior] == ["98.50 % (Cu_slab, vacuum 4x)"] * 2
    assert [r[3] for r in interior] == [False, False]
    outer = [r for k, r in got.items() if "outermost" in k]
    assert outer[0][2] == "50.0 % (Cu_slab, vacuum 4x)" and outer[0][3] is False
    vacuum = [r for k, r in got.items() if "vacuum goes" in k]
    assert vacuum[0][2] == "99.95 % (Cu_slab)" and vacuum[0][3] is True
    (low,) = [r for k, r in got.items() if "compressed uniaxially 0-10" in k]
    assert low[3] is True and "Cu_compressed z0.1" in low[2]
    # the transformed 20% case is left out, and nothing else is in that band
    assert not [k for k in got if "compressed uniaxially 10-20" in k]
    text = "\n".join(render_real(real))
    assert "## 6. Real systems" in text and "**transformed**" in text


@pytest.mark.mpi
def test_a_tiny_slab_end_to_end(tmp_path):
    """LAMMPS makes a small hot Cu slab; the section scores it and the report renders."""
    pytest.importorskip("ovito")
    from lpfm_insitu import load_model
    from lpfm_insitu.evaluation.real_cases import CU, case_frames, slab_case
    from lpfm_insitu.evaluation.real_eval import run_real
    from lpfm_insitu.evaluation.report import render

    case = slab_case("Cu_tiny_slab", CU, (4, 4, 6), 77, steps=200)
    section = run_real(load_model("fast"), cache=tmp_path, n_ranks=1, cases=[case])
    entry = section["cases"]["Cu_tiny_slab"]
    assert entry["n_atoms"] == 4 * 4 * 12 * 4 // 2  # 12 planes of 16 atoms
    assert entry["n_outer_layer"] == 64 and 0 < entry["n_interior"] < entry["n_atoms"] - 64
    # 11 plane spacings, plus thermal expansion and the outer atoms' vibrations
    assert entry["thickness_A"] == pytest.approx(11 * 3.615 / 2, abs=1.5)
    # PTM and CNA do not see the box: identical labels in both vacuums; a hot FCC interior
    for m in ("ptm_nocut", "ptm_0.1", "cna"):
        assert entry["vacuum_identical"][m] == 1.0
        assert entry["interior"][m]["1"] > 0.9
    # the (100) surface atoms have 8 neighbours: never FCC for PTM
    assert entry["breakdown_outer"]["ptm_nocut"][0][0] != FCC
    for key in ("interior", "outer_layer_crystalline"):
        # the candidates' 8-step run is made for the Ti ramp only
        assert "lpfm_cand_8" not in entry[key]
        for m in ("lpfm_0", "lpfm_8", "lpfm_cand_0"):
            assert set(entry[key][m]) == {"1", "4"}
            assert all(0.0 <= v <= 1.0 for v in entry[key][m].values())
    # the cache is used the second time
    frames, meta = case_frames(case, tmp_path, 1)
    assert meta["from_cache"] and len(frames["final"]) == entry["n_atoms"]
    results = {"meta": {"command": "lpfm eval", "date": "today", "package_version": "x",
                        "torch_version": "x", "threads": 2, "cpu_count": 2,
                        "model": {"name": "fast", "path": "fast", "sha256": "0" * 64,
                                  "n_phases": 25, "confidence_threshold": 3.0},
                        "section_wall_s": {"real": 1.0}},
               "real": section}
    text = render(results, tmp_path)
    assert "## 6. Real systems" in text and "Cu_tiny_slab, vacuum 4x" in text


def test_select_cases_names_the_unknown_ones():
    from lpfm_insitu.evaluation.real_cases import default_cases, select_cases

    assert [c.name for c in select_cases(None)] == [c.name for c in default_cases()]
    assert [c.name for c in select_cases("Fe_slab, Cu_slab")] == ["Cu_slab", "Fe_slab"]
    with pytest.raises(ValueError, match="Cu_slb"):
        select_cases("Cu_slb")


def test_the_shock_wall_is_read_from_the_substituted_echo():
    from lpfm_insitu.evaluation.real_cases import _zwall

    log = ("variable        zwall equal ${zw0}\nvariable        zwall equal -0.5224\n"
           "fix             mirror all wall/reflect zlo ${zwall}\n")
    assert _zwall(log) == pytest.approx(-0.5224)
    assert _zwall("nothing here\n") is None


def test_the_ramp_template_check_finds_omega_and_names_what_the_model_called_a15():
    """The model-free check of the Ti ramp: on an ideal omega crystal every atom fits an
    omega site best (not A15's), and the fractions are split by the model's labels."""
    from lpfm_insitu.evaluation.real_eval import _best_templates
    from lpfm_insitu.training.prototypes import A15, OMEGA, build_prototype

    atoms = build_prototype(OMEGA, 17.0, primitive=False).repeat((3, 3, 3))
    labels = np.array([OMEGA] * (len(atoms) - 3) + [A15] * 3)
    check = _best_templates(atoms, labels)
    assert check["all"] == [(OMEGA, 1.0)]
    assert check["called_omega"] == [(OMEGA, 1.0)] and check["called_A15"] == [(OMEGA, 1.0)]


def test_the_ramp_curve_by_steps_ends_on_the_zero_and_eight_step_runs():
    """The omega curve over the candidates comes from one 8-step run read after each
    step: its 0- and 8-step points are the separate 0- and 8-step runs' omega fractions,
    and the report names the curve beside the 8-step figure the target reads."""
    from lpfm_insitu import load_model
    from lpfm_insitu.evaluation.real_eval import score_ramp
    from lpfm_insitu.evaluation.real_report import real_targets
    from lpfm_insitu.training.prototypes import OMEGA, build_prototype

    atoms = build_prototype(OMEGA, 17.0, primitive=False).repeat((4, 4, 4))
    atoms.rattle(0.12, seed=3)
    model = load_model()
    entry = score_ramp(model, None, atoms)
    curve = entry["omega_cand_by_step"]
    assert sorted(curve, key=int) == [str(k) for k in range(9)]
    for steps in (0, 8):
        alone = model.classify_atoms(atoms, denoise_steps=steps, candidates=list(CANDIDATES))
        omega = np.mean(np.asarray(alone.label_names) == OMEGA)
        assert curve[str(steps)] == entry["omega"][f"lpfm_cand_{steps}"] == omega
    entry.update(kind="ramp", description="", wall_s=1.0, md={})
    (row,) = [r for r in real_targets({"real": {"cases": {"ramp": entry}}})
              if "over the candidates" in r[0]]
    assert "most at" in row[2] and row[3] == (curve["8"] >= 0.75)


def test_the_shock_case_classifies_as_the_example_does():
    """The evaluation scores the default as the shock example runs it (the default model,
    a length scale per atom, Fe's phases as candidates), so it follows the example's input."""
    import re
    from pathlib import Path

    from lpfm_insitu.evaluation.real_cases import EXAMPLE_SHOCK_CANDIDATES

    source = (Path(__file__).parents[2] / "lammps_examples" / "shock" / "in.shock").read_text()
    fe = source[source.index('if "${material} == fe"'):source.index("elif")]
    assert float(re.search(r"lpfm_vatom\s+index\s+([\d.]+)", fe).group(1)) == 0.0
    phases = re.search(r"variable phases\s+index\s+(\S+)", fe).group(1).split(",")
    assert tuple(phases) == EXAMPLE_SHOCK_CANDIDATES
    assert re.search(r"variable nops\s+index\s+(\d+)", fe).group(1) == str(len(phases))
    assert re.search(r"variable lpfm_model\s+index\s+(\S+)", source).group(1) == "default"


def test_the_shock_row_compares_with_the_reference_on_the_same_atoms():
    from lpfm_insitu.evaluation.real_report import real_targets

    def rows(default, reference):
        entry = {"kind": "shock", "description": "", "wall_s": 1.0, "md": {},
                 "n_ptm_identified": 500, "region_depth": 32.0,
                 "agreement_with_ptm_0.1": {"lpfm_fe_argmax_0": default,
                                            "lpfm_cand_argmax_0": 0.1},
                 "reference": {"model": "lenient", "atomic_volume": 11.66,
                               "agreement": reference}}
        return [r for r in real_targets({"real": {"cases": {"Fe_shock": entry}}})
                if "shocked Fe" in r[0]]

    (row,) = rows(0.80, 0.75)
    assert row[1] == "≥ 75.0 %" and row[2] == "80.0 %" and row[3] is True
    assert "`lenient`" in row[0] and "same atoms" in row[0] and "bcc/hcp/fcc" in row[0]
    assert rows(0.60, 0.74)[0][3] is False


def test_a_rerun_of_some_cases_keeps_the_others():
    from lpfm_insitu.evaluation.real_eval import merge_real_cases

    previous = {"cases": {"Cu_slab": {"v": 1}, "Fe_shock": {"v": 2}}, "cases_not_run": [],
                "wall_s": 100.0}
    rerun = {"cases": {"Fe_shock": {"v": 3}}, "cases_not_run": ["Cu_slab", "Ti_ramp"],
             "wall_s": 5.0}
    merged = merge_real_cases(previous, rerun)
    assert merged["cases"] == {"Cu_slab": {"v": 1}, "Fe_shock": {"v": 3}}
    assert list(merged["cases"]) == ["Cu_slab", "Fe_shock"]  # the cases' own order
    assert "Ti_ramp" in merged["cases_not_run"] and "Cu_slab" not in merged["cases_not_run"]
    assert merged["wall_s"] == 5.0
