"""Which parts of the network run in fp32 under half-precision autocast, on every device type.

``LPFMNetwork.fp32_parts`` names what the network keeps in fp32; these tests look inside
with forward hooks and check the claim, and that the rest really runs in half precision.
MACE calls its interaction blocks with keyword arguments only, so a wrapper that looks
for the device among positional arguments alone turns off the wrong autocast (on CUDA
the first interaction then ran in bf16/fp16 while the report said fp32).
"""

import numpy as np
import pytest
import torch
from ase.build import bulk
from e3nn import o3

from lpfm_insitu.model import network as model_module
from lpfm_insitu.model.inference import PhaseModel
from lpfm_insitu.model.network import ModelSpec, build_network

SMALL = {"channels": 8, "correlation": 2, "max_ell": 2, "num_interactions": 2, "r_max": 4.6}
PHASES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c")
HALF = {torch.float16, torch.bfloat16}

# (device type, autocast precision): every device type the package runs on
CASES = [("cpu", "bf16"), ("cuda", "bf16"), ("cuda", "fp16")]


@pytest.fixture(scope="module")
def every_part_model():
    """A small network with every optional fp32 part: shape invariants, standardised decoder."""
    torch.manual_seed(0)
    spec = ModelSpec(phases=PHASES, backbone=SMALL,
                     decoder={"shape_invariants": True, "standardize": True})
    return PhaseModel(build_network(spec), PHASES)


def _atoms():
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    atoms.positions += np.random.default_rng(0).normal(0, 0.05, atoms.positions.shape)
    return atoms


def _parts(network):
    """The modules behind each name ``fp32_parts`` may hold (shape invariants are checked
    where they enter the decoder)."""
    from mace.modules.symmetric_contraction import SymmetricContraction

    return {
        "first interaction": [network.mace.interactions[0]],
        "symmetric contractions": [m for m in network.mace.modules()
                                   if isinstance(m, SymmetricContraction)],
        "decoder": [network.decoder],
        "e3nn linear maps and tensor products": [
            m for m in network.mace.modules() if isinstance(m, (o3.Linear, o3.TensorProduct))],
        "radial MLPs": [i.conv_tp_weights for i in network.mace.interactions],
    }


def _record_dtypes(modules):
    """Forward hooks on ``modules`` and all their submodules: the floating output dtypes."""
    seen, handles = [], []

    def hook(module, _args, output):
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        seen.extend((module.__class__.__name__, o.dtype) for o in outputs
                    if torch.is_tensor(o) and o.is_floating_point())

    for top in modules:
        for sub in top.modules():
            if isinstance(sub, torch.jit.ScriptModule):  # no hooks there; their parents have
                continue
            handles.append(sub.register_forward_hook(hook))
    return seen, handles


def _classify_recording(model, device, precision, network_parts, other):
    """Classify under autocast, recording output dtypes inside the parts and inside ``other``."""
    kept_modules = [m for name in network_parts for m in _parts(model.network).get(name, [])]
    kept, kept_handles = _record_dtypes(kept_modules)
    rest, rest_handles = _record_dtypes([other])
    decoder_inputs = []
    decoder_handle = model.network.decoder.register_forward_pre_hook(
        lambda _m, args: decoder_inputs.append(args[0].dtype))
    model.to(device, precision)
    try:
        result = model.classify_atoms(_atoms())
    finally:
        model.to("cpu", "fp32")
        for handle in (*kept_handles, *rest_handles, decoder_handle):
            handle.remove()
    return result, kept, rest, decoder_inputs


@pytest.mark.parametrize("device,precision", CASES)
def test_every_part_named_fp32_runs_in_fp32_and_the_rest_in_half(every_part_model, device,
                                                                 precision):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device: the CUDA autocast rows run where one is present")
    network = every_part_model.network
    assert set(network.fp32_parts) == {"first interaction", "symmetric contractions",
                                       "e3nn linear maps and tensor products",
                                       "radial MLPs", "shape invariants", "decoder"}
    assert _parts(network)["e3nn linear maps and tensor products"]
    second_convolution = network.mace.interactions[1].conv_tp
    result, kept, rest, decoder_inputs = _classify_recording(
        every_part_model, device, precision, network.fp32_parts, second_convolution)
    assert np.isfinite(result.logits).all()
    assert kept and rest, "the hooks saw no outputs"
    in_half = sorted({name for name, dtype in kept if dtype in HALF})
    assert not in_half, f"parts claimed fp32 ran in half precision inside: {in_half}"
    # autocast really was on: the second interaction's convolution is not kept in fp32
    assert {dtype for _name, dtype in rest} == {torch.bfloat16 if precision == "bf16"
                                               else torch.float16}
    # the shape invariants reach the decoder unrounded: features are promoted, not cast
    assert decoder_inputs == [torch.float32]


def test_kept_blocks_find_the_device_among_keyword_arguments():
    # the first interaction is called with keyword arguments only
    tensor = torch.zeros(2)
    assert model_module.input_device_type((), {"node_feats": tensor, "first_layer": True}) \
        == "cpu"
    assert model_module.input_device_type((1, tensor), {}) == "cpu"
    with pytest.raises(TypeError, match="without tensor arguments"):
        model_module.input_device_type((1,), {"first_layer": True})


def test_a_device_lookup_among_positional_arguments_only_is_caught(every_part_model,
                                                                   monkeypatch):
    """The check above fails on the CPU for the old lookup (positional arguments only)."""

    full_lookup = model_module.input_device_type

    def positional_only(args, kwargs):
        return full_lookup(args, {})

    monkeypatch.setattr(model_module, "input_device_type", positional_only)
    with pytest.raises(TypeError, match="without tensor arguments"):
        _classify_recording(every_part_model, "cpu", "bf16", [], torch.nn.Identity())
