"""An installed package carries every shipped model file: weights, cards and training configs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "lpfm_insitu" / "models"


def test_wheel_installs_every_model_file_training_configs_included(tmp_path):
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "lpfm_insitu", source / "lpfm_insitu",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = wheels.glob("*.whl")

    shipped = {p.name for p in MODELS.iterdir() if p.is_file()}
    assert any(name.endswith(".yaml") for name in shipped)
    with zipfile.ZipFile(wheel) as archive:
        packaged = {Path(n).name for n in archive.namelist() if n.startswith("lpfm_insitu/models/")}
    assert shipped <= packaged, f"missing from the wheel: {sorted(shipped - packaged)}"

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    listing = subprocess.run(
        [sys.executable, "-c", "import importlib.resources as r, json; "
         "m = r.files('lpfm_insitu.models'); "
         "print(json.dumps([str(m), sorted(p.name for p in m.iterdir())]))"],
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        check=True, capture_output=True, text=True, timeout=300)
    where, names = json.loads(listing.stdout.strip().splitlines()[-1])
    assert Path(where).is_relative_to(target), f"imported {where}, not the installed copy"
    installed = set(names)
    yaml_files = {name for name in shipped if name.endswith(".yaml")}
    assert yaml_files <= installed, f"not installed: {sorted(yaml_files - installed)}"
