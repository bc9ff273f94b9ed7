"""Fast checks of the evaluation helpers (no trained model, no LAMMPS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lpfm_insitu.evaluation.baselines import (CNA_TO_AFLOW, DIAMOND_TO_AFLOW, PTM_TO_AFLOW,
                                              map_types)
from lpfm_insitu.evaluation.metrics import (UNKNOWN, accuracy, crystalline_fraction,
                                            label_breakdown, labels_from_logits)
from lpfm_insitu.evaluation.paths import (bain_cell, burgers_cell, gaussian_perturbation,
                                          linear_fit, mean_squared_displacement,
                                          spacegroup_number)
from lpfm_insitu.training.calibration import rejection_threshold, step_thresholds_on_liquid
from lpfm_insitu.training.prototypes import PROTOTYPE_LABELS

FCC, BCC, HCP, DIAMOND = "A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c", "A_cF8_227_a"


@pytest.mark.parametrize("c_over_a", np.linspace(1.0, math.sqrt(2.0), 5))
def test_bain_path_keeps_the_volume(c_over_a):
    atoms = bain_cell(c_over_a, atomic_volume=15.0)
    assert atoms.get_volume() / len(atoms) == pytest.approx(15.0)
    a, _, c = atoms.cell.lengths() / np.array([5, 5, 4])
    assert c / a == pytest.approx(c_over_a)


def test_bain_path_end_points_are_bcc_and_fcc():
    assert spacegroup_number(bain_cell(1.0)) == 229
    assert spacegroup_number(bain_cell(math.sqrt(2.0))) == 225
    assert spacegroup_number(bain_cell(1.2)) == 139  # body-centred tetragonal in between


@pytest.mark.parametrize("x", [0.0, 0.3, 0.7, 1.0])
def test_burgers_path_keeps_the_volume(x):
    atoms = burgers_cell(x, atomic_volume=15.0)
    assert atoms.get_volume() / len(atoms) == pytest.approx(15.0)


def test_burgers_path_end_points_are_hcp_and_bcc():
    assert spacegroup_number(burgers_cell(0.0)) == 194
    assert spacegroup_number(burgers_cell(1.0)) == 229
    assert spacegroup_number(burgers_cell(0.5)) not in (194, 229)


def test_ptm_mapping_covers_ovito_types_and_uses_known_labels():
    crystal = {FCC, BCC, HCP, DIAMOND}
    assert PTM_TO_AFLOW["FCC"] == FCC and PTM_TO_AFLOW["BCC"] == BCC
    assert PTM_TO_AFLOW["HCP"] == HCP and PTM_TO_AFLOW["CUBIC_DIAMOND"] == DIAMOND
    assert PTM_TO_AFLOW["OTHER"] == UNKNOWN and CNA_TO_AFLOW["OTHER"] == UNKNOWN
    assert DIAMOND_TO_AFLOW["CUBIC_DIAMOND"] == DIAMOND
    for mapping in (PTM_TO_AFLOW, CNA_TO_AFLOW, DIAMOND_TO_AFLOW):
        for value in mapping.values():  # crystalline answers are real prototype labels
            assert value in PROTOTYPE_LABELS or value not in crystal and "_" not in value
    # non-crystal answers (ico, graphene, diamond boundary atoms) are never prototypes
    assert PTM_TO_AFLOW["ICO"] not in PROTOTYPE_LABELS
    assert DIAMOND_TO_AFLOW["CUBIC_DIAMOND_FIRST_NEIGHBOR"] not in PROTOTYPE_LABELS


def test_map_types_with_an_enum_like_object():
    class Member:
        def __init__(self, value):
            self.value = value

    class Enum:
        __members__ = {"OTHER": Member(0), "FCC": Member(1), "HCP": Member(2), "BCC": Member(3),
                       "ICO": Member(4)}

    assert list(map_types(np.array([1, 3, 0, 2]), Enum, CNA_TO_AFLOW)) == [FCC, BCC, UNKNOWN, HCP]


def test_ovito_ptm_types_all_mapped():
    ovito = pytest.importorskip("ovito.modifiers")
    assert set(ovito.PolyhedralTemplateMatchingModifier.Type.__members__) <= set(PTM_TO_AFLOW)
    assert set(ovito.CommonNeighborAnalysisModifier.Type.__members__) <= set(CNA_TO_AFLOW)
    assert set(ovito.IdentifyDiamondModifier.Type.__members__) <= set(DIAMOND_TO_AFLOW)


def test_accuracy_on_a_toy_case():
    predicted = [FCC, FCC, UNKNOWN, HCP, FCC]
    assert accuracy(predicted, FCC) == pytest.approx(0.6)
    assert crystalline_fraction(predicted, [FCC, HCP]) == pytest.approx(0.8)
    assert label_breakdown(predicted, top=2) == [(FCC, 0.6), (HCP, 0.2)]


def test_labels_from_logits_threshold_and_candidates():
    phases = [FCC, BCC, HCP]
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.5, 3.0], [-2.0, -1.5, -3.0]])
    assert list(labels_from_logits(logits, phases)) == [FCC, HCP, BCC]
    assert list(labels_from_logits(logits, phases, threshold=0.0)) == [FCC, HCP, UNKNOWN]
    assert list(labels_from_logits(logits, phases, candidates=[FCC, BCC])) == [FCC, BCC, BCC]


def test_rejection_threshold_is_the_right_quantile():
    confidences = np.random.default_rng(0).permutation(np.arange(100.0))
    threshold = rejection_threshold(confidences, 0.95)
    assert np.mean(confidences < threshold) == pytest.approx(0.95)
    assert 94.0 < threshold < 95.0
    assert np.mean(confidences < rejection_threshold(confidences, 1.0)) == 1.0


class _FakeResult:
    def __init__(self, history):
        self.history = history


class _FakeModel:
    """Confidence = x coordinate of each atom at every step: the quantile is known exactly."""

    def __init__(self):
        self.calls = []

    def candidate_indices(self, candidates):
        return np.array([0])

    def classify_atoms(self, atoms, denoise_steps=0, keep_history=False, candidates=None):
        self.calls.append(denoise_steps)
        logits = atoms.positions[:, :1].copy()
        return _FakeResult([{"step": k, "logits": logits} for k in range(denoise_steps + 1)])


def test_liquid_threshold_returns_the_quantile():
    from ase import Atoms

    frames = [Atoms("Cu100", positions=np.c_[np.arange(100.0) + 100 * k, np.zeros((100, 2))],
                    cell=[1000, 10, 10], pbc=True) for k in range(2)]
    model = _FakeModel()
    threshold = step_thresholds_on_liquid(model, frames, steps=(8,), quantile=0.9)[8]
    assert model.calls == [8, 8]
    assert 179.0 < threshold < 180.0  # 180 of the 200 values (0..199) lie below it
    single = step_thresholds_on_liquid(model, frames[:1], steps=(0,), quantile=0.5)[0]
    assert 49.0 < single < 50.0


def test_msd_and_linear_fit():
    atoms = bain_cell(1.0)
    rng = np.random.default_rng(1)
    _, delta = gaussian_perturbation(atoms, 0.1, rng)
    assert mean_squared_displacement(delta + 5.0) == pytest.approx(
        mean_squared_displacement(delta))
    assert mean_squared_displacement(delta) == pytest.approx(0.03, rel=0.2)
    fit = linear_fit([0, 1, 2, 3], [1, -1, -3, -5])
    assert fit["slope"] == pytest.approx(-2) and fit["r2"] == pytest.approx(1.0)


def test_md_templates_render_and_hash():
    from lpfm_insitu.evaluation.lammps_cache import parse_thermo
    from lpfm_insitu.evaluation.md_snapshots import cache_key
    from lpfm_insitu.evaluation.md_templates import SYSTEMS

    names = {s.name for s in SYSTEMS}
    assert any(s.true_label is None for s in SYSTEMS)  # a liquid to calibrate on
    for system in SYSTEMS:
        text = system.render("/pot")
        assert f"/pot/{system.potential}" in text and "write_dump" in text
        assert 1500 <= system.n_atoms <= 4000
    assert len({cache_key(s, "/pot") for s in SYSTEMS}) == len(names)
    log = ("Step Temp PotEng Press Volume Lx Ly Lz\n 0 10 -1 2 3 4 5 6\n"
           " 5 11 -2 2 3 4 5 6\nLoop time")
    assert [r["Temp"] for r in parse_thermo(log)] == [10.0, 11.0]


def test_report_renders_from_a_minimal_results_file(tmp_path):
    from lpfm_insitu.evaluation.report import render

    results = {"meta": {"command": "lpfm eval --model m --output o", "date": "today",
                        "package_version": "0", "torch_version": "2", "threads": 2,
                        "cpu_count": 2, "model": {"name": "m", "path": "m", "sha256": "0" * 64,
                                                  "n_phases": 25, "confidence_threshold": 0.5}}}
    text = render(results, tmp_path)
    assert "lpfm eval --model m --output o" in text


def test_md_scoring_on_toy_logits():
    """Crystal accuracy, liquid rejection and the liquid-calibrated threshold, end to end."""
    from lpfm_insitu.evaluation.md_eval import score
    from lpfm_insitu.evaluation.md_templates import SYSTEMS_BY_NAME

    class Model:
        phases = (FCC, BCC, HCP, "A_hP3_191_ad")
        confidence_threshold = 0.0

        def threshold_for(self, steps):
            return self.confidence_threshold

        def unknown_thresholds(self, steps, candidates=None):
            return np.full(len(self.phases), self.confidence_threshold)

        def candidate_margin(self, steps, candidates=None):
            return None

    crystal, liquid = SYSTEMS_BY_NAME["Cu_fcc_1200K"], SYSTEMS_BY_NAME["Cu_liquid_2000K"]
    fcc_logits = np.tile([2.0, 1.0, 0.0, 0.0], (10, 1))
    fcc_logits[:2] = [0.5, 1.0, 0.0, 0.0]  # two atoms called bcc, confidence 1.0
    liquid_logits = np.c_[np.linspace(-1.0, 1.0, 10), np.full((10, 3), -5.0)]

    def raw(logits):
        return {"logits": {s: logits for s in (0, 1, 8)},
                "candidate_logits": {s: logits for s in (0, 1, 8)},
                "baselines": {"ptm_nocut": np.array([FCC] * 9 + [UNKNOWN])}, "bf16": {}}

    threshold = rejection_threshold(liquid_logits.max(axis=1), 0.9)
    thresholds = {s: threshold for s in (0, 1, 8)}
    c = score(Model(), crystal, raw(fcc_logits), thresholds)
    assert c["lpfm"]["0"]["argmax"] == pytest.approx(0.8)
    assert c["lpfm"]["8"]["liquid_threshold"] == pytest.approx(0.8)  # 1.0 > liquid threshold
    assert c["baselines"]["ptm_nocut"]["value"] == pytest.approx(0.9)
    l = score(Model(), liquid, raw(liquid_logits), thresholds)
    assert l["lpfm"]["0"]["argmax"] == 0.0  # argmax never says unknown
    assert l["lpfm"]["0"]["model_threshold"] == pytest.approx(0.5)  # 5 of 10 below 0
    assert l["lpfm"]["0"]["liquid_threshold"] == pytest.approx(0.9)
    assert l["baselines"]["ptm_nocut"]["value"] == pytest.approx(0.1)


def test_report_names_a_prior_only_where_the_run_length_changes_it():
    from lpfm_insitu.evaluation.report import _prior_text

    rare = {"A_tI2_139_a": -1.5, "A_hP4_194_ac": -1.5}
    text = _prior_text({"n_phases": 25, "log_prior": rare,
                        "step_log_priors": {"1": rare, "4": rare,
                                            "8": {k: -0.25 for k in rare}}})
    assert text.startswith("phase prior: log prior -1.5 on 2 of the 25 prototypes")
    assert "from 8 denoising steps on, log prior -0.25 on 2 of the 25" in text
    assert "from 1 " not in text and "from 4 " not in text
    assert _prior_text({"n_phases": 25, "log_prior": {}}).startswith("phase prior: uniform")


def test_a_rerender_keeps_the_sections_whatever_the_model_file(tmp_path, capsys):
    """``lpfm eval --sections ""`` renders results.json again; with a model file that
    differs from the recorded one it keeps the recorded model's results and name, never
    drops them (it once wrote a report with no sections)."""
    import json

    import torch

    from lpfm_insitu.cli.main import main
    from lpfm_insitu.model.files import save_model
    from lpfm_insitu.model.inference import PhaseModel
    from lpfm_insitu.model.network import ModelSpec, build_network

    phases = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c")
    spec = ModelSpec(phases=phases, backbone={"channels": 4, "max_ell": 2, "correlation": 2,
                                              "num_interactions": 1})
    torch.manual_seed(0)
    model_path = save_model(tmp_path / "m.safetensors",
                            PhaseModel(build_network(spec), phases), spec)
    out = tmp_path / "report"
    out.mkdir()
    recorded = {"name": "m", "path": "m", "sha256": "0" * 64, "n_phases": 3,
                "confidence_threshold": 0.5}
    results = {"meta": {"command": "lpfm eval --model m --output o", "date": "today",
                        "package_version": "0", "torch_version": "2", "threads": 2,
                        "cpu_count": 2, "model": recorded},
               "kept_marker": {"marker": 1}}
    (out / "results.json").write_text(json.dumps(results))
    assert main(["eval", "--model", str(model_path), "--output", str(out),
                 "--sections", ""]) == 0
    kept = json.loads((out / "results.json").read_text())
    assert kept["kept_marker"] == {"marker": 1} and kept["meta"]["model"]["sha256"] == "0" * 64
    assert "another model file" in capsys.readouterr().err
    # nothing to render: a clear error, not an empty report
    assert main(["eval", "--model", str(model_path), "--output", str(tmp_path / "empty"),
                 "--sections", ""]) != 0
    assert "holds no evaluation" in capsys.readouterr().err
