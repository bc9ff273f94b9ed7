"""lpfm eval's strain section: the deformations do what they say, and a shipped model's
answers on a compressed crystal come back in the shape the report renders."""

from __future__ import annotations

import numpy as np
import pytest

from lpfm_insitu.evaluation.strain_eval import MODES, crystal_under_compression, deformation
from lpfm_insitu.training.synthetic import apply_strain


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("compression", [0.0, 0.05, 0.15])
def test_deformation_removes_the_asked_volume(mode, compression):
    F = deformation(mode, compression)
    assert np.isclose(np.linalg.det(F), 1.0 - compression)
    assert np.allclose(F, F.T)


def test_uniaxial_compression_shortens_one_axis_only():
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.615, cubic=True)
    squeezed = apply_strain(atoms, deformation("uniaxial x", 0.1))
    assert np.allclose(squeezed.cell.lengths(), atoms.cell.lengths() * [0.9, 1, 1])
    assert np.allclose(squeezed.get_scaled_positions(), atoms.get_scaled_positions())


@pytest.mark.parametrize("mode, compression, message", [
    ("shear", 0.1, "unknown strain mode 'shear'"),
    ("uniaxial w", 0.1, "unknown strain mode 'uniaxial w'"),
    ("uniaxial z", 1.0, "compression must be in [0, 1), got 1.0"),
    ("hydrostatic", -0.1, "got -0.1"),
])
def test_bad_deformations_are_named(mode, compression, message):
    with pytest.raises(ValueError) as info:
        deformation(mode, compression)
    assert message in str(info.value)


def test_compressed_fcc_scores_and_report(tmp_path):
    from ase.build import bulk

    from lpfm_insitu import load_model
    from lpfm_insitu.evaluation.report import _strain, targets

    pytest.importorskip("ovito")
    model = load_model("fast")
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(5)
    atoms.positions += np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
    candidates = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c", "A_hP3_191_ad")
    entry = crystal_under_compression(model, atoms, "A_cF4_225_a", compressions=(0.05,),
                                      modes=("hydrostatic", "uniaxial z"),
                                      candidates=candidates)
    assert entry["candidates"] == list(candidates)
    assert entry["unstrained"]["0"]["labelled"] == 1.0
    assert entry["unstrained"]["ptm_nocut"] == 1.0
    # PTM matches templates up to scale: a hydrostatic compression changes nothing for it
    hydro = entry["strained"]["hydrostatic"]["0.05"]
    assert hydro["ptm_nocut"] == entry["unstrained"]["ptm_nocut"]
    # a crystal 1.7% shorter in every direction is well inside the trained scale range
    assert hydro["0"]["labelled"] == 1.0 and hydro["0"]["unknown"] == 0.0
    for scores in (hydro, entry["strained"]["uniaxial z"]["0.05"]):
        for step in ("0", "8"):
            wrong = sum(f for _, f in scores[step]["wrong_labels"])
            assert wrong <= 1.0 - scores[step]["labelled"] + 1e-9
    # the restricted run is scored at the same steps, as fractions of the crystal's atoms
    assert entry["unstrained"]["candidates"] == {"0": 1.0, "8": 1.0}
    for scores in (hydro, entry["strained"]["uniaxial z"]["0.05"]):
        assert set(scores["candidates"]) == {"0", "8"}
        assert all(0.0 <= v <= 1.0 for v in scores["candidates"].values())
    section = {"compressions": [0.05], "modes": ["hydrostatic", "uniaxial z"], "steps": [0, 8],
               "systems": {"Cu_test": entry}}
    text = "\n".join(_strain(section))
    assert "## 4. Compressed hot crystals" in text
    assert "| Cu_test | hydrostatic | 100.0 / " in text
    # the targets table names the worst uniaxial case (hydrostatic is not a candidate)
    (row,) = [r for r in targets({"strain": section}) if r[0].startswith("hot crystals compr")]
    worst = entry["strained"]["uniaxial z"]["0.05"]
    assert row[2] == (f"5%: {100 * worst['0']['labelled']:.1f} % (Cu_test, uniaxial z) / "
                      f"{100 * worst['8']['labelled']:.1f} % (Cu_test, uniaxial z)")
    (row,) = [r for r in targets({"strain": section}) if r[0].startswith("same over the fam")]
    assert row[2] == (f"5%: {100 * worst['candidates']['0']:.1f} % (Cu_test, uniaxial z) / "
                      f"{100 * worst['candidates']['8']:.1f} % (Cu_test, uniaxial z)")
    assert "| Cu_test | fcc, bcc, hcp, omega | none | 100.0 / 100.0 |" in text
    cells = entry["strained"]["uniaxial z"]["0.05"]["candidates"]
    assert f"| Cu_test |  | uniaxial z | {100 * cells['0']:.1f} / {100 * cells['8']:.1f} |" in text
    # a report written before the restricted run renders without that table or row
    for scores in [entry["unstrained"]] + [entry["strained"][m]["0.05"] for m in section["modes"]]:
        del scores["candidates"]
    assert "Restricted candidates" not in "\n".join(_strain(section))
    assert not [r for r in targets({"strain": section}) if r[0].startswith("same over the fam")]
