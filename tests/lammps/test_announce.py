"""What rank 0 prints about the columns: the unknown thresholds a user reads -1 by."""

import re

from lpfm_insitu.lammps.announce import mapping_lines
from lpfm_insitu.lammps.settings import InsituSettings
from lpfm_insitu.model.files import load_model


def test_unknown_line_names_every_phase_threshold_of_its_own():
    model = load_model("default")
    model.step_thresholds = {0: 3.0, 8: 4.5}
    model.phase_thresholds = {0: {"A_hP2_194_c": 3.9}, 8: {"A_oF8_70_a": 6.2}}
    for steps, shared, raised in ((0, "3", "hcp (A_hP2_194_c): < 3.9"),
                                  (8, "4.5", "gamma-Pu (A_oF8_70_a): < 6.2")):
        settings = InsituSettings(denoise_steps=steps)
        line = mapping_lines(settings, model, [])[0]
        assert line.startswith(f"{settings.phase_column}: -1 = unknown (confidence < {shared};")
        assert f"labelled {raised})" in line, line
        assert len(re.findall("labelled", line)) == 1  # only the phase set for this run


def test_unknown_line_names_a_lowered_phase_threshold_too():
    model = load_model("default")
    model.step_thresholds = {0: 3.0}
    model.phase_thresholds = {0: {"A_cI2_229_a": 2.8}}
    line = mapping_lines(InsituSettings(denoise_steps=0), model, [])[0]
    assert "(confidence < 3; labelled bcc (A_cI2_229_a): < 2.8)" in line, line


def test_unknown_line_gives_the_candidate_margin_of_a_calibrated_candidate_set():
    model = load_model("default")
    model.step_thresholds = {0: 3.0}
    model.candidate_margins = {"A_cF4_225_a,A_cI2_229_a,A_hP2_194_c,A_hP3_191_ad": {0: 2.5}}
    restricted = InsituSettings(denoise_steps=0, candidates=("bcc", "hcp", "fcc", "omega"))
    line = mapping_lines(restricted, model, [])[0]
    assert "(confidence < 3; kept where the label leads the next candidate by >= 2.5)" in line
    # over all phases, or another candidate set, the threshold alone decides
    for settings in (InsituSettings(denoise_steps=0),
                     InsituSettings(denoise_steps=0, candidates=("bcc", "hcp"))):
        assert "kept where" not in mapping_lines(settings, model, [])[0]
