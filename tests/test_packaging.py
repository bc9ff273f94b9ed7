"""An installed package carries every shipped model file: weights, cards and training configs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "lpfm_insitu" / "model" / "shipped"


def test_built_package_holds_every_model_file_training_configs_included(tmp_path):
    # setuptools' build_py copies exactly what an install (wheel or not) gets, from the
    # pyproject.toml configuration, without needing the `wheel` package or a network.
    # It runs on a copy: setuptools writes *.egg-info next to the sources.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "lpfm_insitu", source / "lpfm_insitu",
                    ignore=shutil.ignore_patterns("__pycache__"))
    lib = tmp_path / "lib"
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                    "build_py", "--build-lib", str(lib)],
                   cwd=source, check=True, capture_output=True, text=True, timeout=300)

    shipped = {p.name for p in MODELS.iterdir() if p.is_file()}
    yaml_files = {name for name in shipped if name.endswith(".yaml")}
    assert yaml_files, "no training configs found next to the models"
    built = {p.name for p in (lib / "lpfm_insitu" / "model" / "shipped").iterdir()}
    assert shipped <= built, f"left out of the package: {sorted(shipped - built)}"

    listing = subprocess.run(
        [sys.executable, "-c", "import importlib.resources as r, json; "
         "m = r.files('lpfm_insitu.model.shipped'); "
         "print(json.dumps([str(m), sorted(p.name for p in m.iterdir())]))"],
        cwd=tmp_path, env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"},
        check=True, capture_output=True, text=True, timeout=300)
    where, names = json.loads(listing.stdout.strip().splitlines()[-1])
    assert Path(where).is_relative_to(lib), f"imported {where}, not the built copy"
    missing = sorted(yaml_files - set(names))
    assert not missing, f"not found by importlib.resources: {missing}"
