"""The network imports only mace-torch's network files, and mace stays whole for others."""

import subprocess
import sys

PROBE = """
import sys
import lpfm_insitu.model.network  # builds on mace's MACE class and blocks
lean = sorted(m for m in sys.modules if m.startswith("mace."))
assert "mace.tools.train" not in sys.modules, lean
assert "mace.modules.loss" not in sys.modules, lean
assert "torchmetrics" not in sys.modules
# later users of mace-torch in the same process get the whole packages
from mace.tools import to_one_hot, AtomicNumberTable  # names of mace.tools' own init
import mace.modules
from mace.tools.scripts_utils import extract_config_mace_model
blocks = mace.modules.blocks
assert mace.modules.interaction_classes["RealAgnosticInteractionBlock"] is \\
    blocks.RealAgnosticInteractionBlock
from lpfm_insitu.model.network import build_compact_mace, BackboneConfig
assert type(build_compact_mace(BackboneConfig(channels=4, max_ell=1, correlation=1))) \\
    is mace.modules.MACE
print("ok", len(lean))
"""


def test_the_network_loads_only_maces_network_files_and_mace_stays_whole():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_another_mace_layout_falls_back_to_the_plain_import(monkeypatch):
    from lpfm_insitu.model import mace_import

    def unexpected_layout():
        raise ImportError("mace.modules.models moved")

    monkeypatch.setattr(mace_import, "_NETWORK_PARTS", None)
    monkeypatch.setattr(mace_import, "_import_lean", unexpected_layout)
    parts = mace_import.mace_network_parts()
    import mace.modules

    assert parts.MACE is mace.modules.MACE
    assert parts.blocks.RealAgnosticInteractionBlock is mace.modules.RealAgnosticInteractionBlock


def test_a_failed_lean_import_leaves_no_placeholder_behind():
    """A half-entered package would make the plain import that follows fail."""
    probe = """
import importlib, sys
from lpfm_insitu.model import mace_import
real = importlib.import_module
def refuse(name, *args, **kwargs):
    if name == "mace.modules.models":
        raise ImportError("layout changed")
    return real(name, *args, **kwargs)
importlib.import_module = refuse
try:
    mace_import._import_lean()
except ImportError:
    pass
importlib.import_module = real
assert "mace.modules" not in sys.modules and "mace.tools" not in sys.modules
import mace.modules
assert mace.modules.MACE is not None
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == "ok"


def test_maces_import_notice_never_reaches_stdout():
    """`lpfm classify --json` writes to stdout: mace's accelerator notice must not."""
    probe = "from lpfm_insitu.model import network"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout == ""


def test_the_network_runs_without_torch_dynamo_or_scipy_signal_and_mace_gets_them_later():
    """mace.tools.compile (torch._dynamo) and mace.tools.torch_tools (e3nn.io, scipy.signal)
    wait until something other than the network asks for them; then they are whole,
    with the classes the network registered for symbolic simplification."""
    probe = """
import sys
import numpy as np
from ase.build import bulk
from lpfm_insitu import load_model
model = load_model()
model.classify_atoms(bulk("Cu", "fcc", a=3.6, cubic=True).repeat(3))
assert "torch._dynamo" not in sys.modules and "scipy.signal" not in sys.modules
import mace.tools.compile as compile_tools
from mace.modules.symmetric_contraction import SymmetricContraction
assert compile_tools.prepare is not None and "torch._dynamo" in sys.modules
assert SymmetricContraction in compile_tools._SIMPLIFY_REGISTRY
from mace.tools.torch_tools import get_change_of_basis, to_numpy
from mace.modules import models
assert np.allclose(models.get_change_of_basis().numpy(), get_change_of_basis().numpy())
import torch
assert to_numpy(torch.ones(2)).tolist() == [1.0, 1.0]
import mace.tools
assert mace.tools.compile is compile_tools
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == "ok"
