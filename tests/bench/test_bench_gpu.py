"""lpfm bench's GPU rows: measured where CUDA is present, skipped with a line elsewhere."""

import numpy as np
import pytest

from lpfm_insitu.bench.gpu import gpu_markdown, no_cuda_reason, run_gpu
from lpfm_insitu.bench.report import write_report

HAS_CUDA = no_cuda_reason() is None


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the rows are measured instead")
def test_without_cuda_the_rows_are_skipped_with_a_line_saying_so(tmp_path):
    said = []
    section = run_gpu("default", sizes=(1000,), log=said.append)
    assert section == {"skipped": "torch sees no CUDA device on this machine",
                       "model": "default"}
    assert said == ["  GPU rows skipped: torch sees no CUDA device on this machine"]
    text = write_report({"gpu": section, "command": "lpfm bench"}, tmp_path).read_text()
    assert "## GPU throughput" in text
    assert "Skipped: torch sees no CUDA device on this machine" in text
    assert "no GPU" in text


def test_gpu_rows_are_written_as_a_table():
    row = {"n_atoms": 10976, "precision": "bf16", "end_to_end_us_per_atom": 1.5,
           "network_us_per_atom": 0.2,
           "split_us_per_atom": {"graph": 1.0, "host->device copies": 0.1,
                                 "network": 0.2, "rest (average, device->host, glue)": 0.2},
           "peak_kib_per_atom": 24.5, "atoms_that_fit": 5.1e6, "gpu": "GPU X",
           "gpu_memory_gib": 139.0}
    lines = gpu_markdown({"rows": [row], "repeats": 3, "gpu": "GPU X"})
    assert "On GPU X; best of 3 calls after a warm-up." in lines
    assert "| 10976 | bf16 | 1.500 | 0.200 | 1.000 | 0.100 | 0.200 | 24.50 | 5.1e+06 |" in lines


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_gpu_rows_are_measured_and_half_precision_labels_agree():
    section = run_gpu("default", sizes=(2000,), precisions=("fp32", "fp16"), repeats=1,
                      log=lambda *_: None)
    for row in section["rows"]:
        assert 0 < row["network_us_per_atom"] < row["end_to_end_us_per_atom"]
        assert row["peak_kib_per_atom"] > 0 and row["atoms_that_fit"] > 2000
    from lpfm_insitu.bench.throughput import crystal
    from lpfm_insitu.model.files import load_model

    atoms = crystal(2000)
    fp32 = load_model("default").to("cuda", "fp32").classify_atoms(atoms)
    fp16 = load_model("default").to("cuda", "fp16").classify_atoms(atoms)
    assert np.mean(fp32.labels == fp16.labels) >= 0.999
