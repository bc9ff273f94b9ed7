"""The fused first-layer convolution, ghost-edge pruning and decoder standardisation
change how the network is computed, never what it computes."""

import numpy as np
import pytest
import torch

from lpfm_insitu.model.fused_convolution import (ScalarFusedConvolution, fuse_first_convolutions,
                                           unfuse_convolutions)
from lpfm_insitu.model.network import DecoderConfig, ModelSpec, build_compact_mace, build_network, BackboneConfig
from lpfm_insitu.model.files import load_model, save_model
from lpfm_insitu.model.inference import PhaseModel

PHASES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c")


def _random_inputs(conv, n_nodes=9, n_edges=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_nodes, conv.irreps_in1.dim, generator=g)
    y = torch.randn(n_edges, conv.irreps_in2.dim, generator=g, requires_grad=True)
    w = torch.randn(n_edges, conv.weight_numel, generator=g, requires_grad=True)
    edge_index = torch.randint(0, n_nodes, (2, n_edges), generator=g)
    edge_index[1, :3] = 0  # one atom with several edges, others with none
    return x, y, w, edge_index


@pytest.mark.parametrize("max_ell, channels", [(2, 8), (3, 16), (4, 5)])
def test_fused_convolution_equals_e3nn_with_gradients(max_ell, channels):
    config = BackboneConfig(max_ell=max_ell, channels=channels, correlation=2, num_interactions=1)
    conv = build_compact_mace(config).interactions[0].conv_tp
    fused = ScalarFusedConvolution(conv)
    x, y, w, edge_index = _random_inputs(conv)
    reference = torch.zeros(x.shape[0], conv.irreps_out.dim).index_add(
        0, edge_index[1], conv(x[edge_index[0]], y, w))
    mine = fused(x, y, w, edge_index)
    torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)
    # first and second derivatives, as the score and its training loss need them
    probe = torch.randn_like(reference)
    for out in (reference, mine):
        gy, gw = torch.autograd.grad((out * probe).sum(), (y, w), create_graph=True)
        out.second = torch.autograd.grad((gy ** 2).sum() + (gw ** 2).sum(), (y, w))
        out.first = (gy, gw)
    for a, b in zip(reference.first + reference.second, mine.first + mine.second):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_every_scalar_layer_is_fused_and_others_are_refused():
    from e3nn import o3

    mace = build_compact_mace(BackboneConfig(channels=4, max_ell=2, num_interactions=2,
                                             correlation=2))
    # hidden features are scalars, so the second layer's convolution is fusable too
    assert fuse_first_convolutions(mace) == 2
    assert all(isinstance(i.conv_tp, ScalarFusedConvolution) for i in mace.interactions)
    assert fuse_first_convolutions(mace) == 0  # already fused
    assert unfuse_convolutions(mace) == 2
    assert not any(isinstance(i.conv_tp, ScalarFusedConvolution) for i in mace.interactions)
    vector_input = o3.TensorProduct("4x1o", "1x0e+1x1o", "4x1o+4x0e",
                                    [(0, 0, 0, "uvu", True), (0, 1, 1, "uvu", True)],
                                    shared_weights=False, internal_weights=False)
    with pytest.raises(ValueError, match="not a single block of scalars"):
        ScalarFusedConvolution(vector_input)


@pytest.mark.parametrize("layers", [1, 2])
def test_pruning_ghost_edges_keeps_owned_logits_and_gradient(layers):
    from lpfm_insitu.model.graph import open_graph

    torch.manual_seed(0)
    spec = ModelSpec(phases=PHASES, backbone={"channels": 8, "max_ell": 2, "correlation": 2,
                                              "num_interactions": layers})
    network = build_network(spec)
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 9.0, (160, 3))
    positions = positions[np.argsort(positions[:, 0])]  # owned atoms: the low-x slab
    n_owned = 60
    graph = open_graph(positions, network.r_max)
    results = []
    for owned in (None, n_owned):
        pos = torch.tensor(positions, dtype=torch.float32, requires_grad=True)
        logits = network(pos, torch.as_tensor(graph.edge_index),
                         torch.tensor(graph.shifts, dtype=torch.float32), owned)[:n_owned]
        (grad,) = torch.autograd.grad(torch.logsumexp(logits, 1).sum(), pos)
        results.append((logits.detach(), grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-6)


def test_standardized_decoder_fits_and_survives_a_model_file(tmp_path):
    spec = ModelSpec(phases=PHASES, backbone={"channels": 4, "max_ell": 2, "correlation": 2,
                                              "num_interactions": 1},
                     decoder={"hidden": [8], "standardize": True})
    network = build_network(spec)
    features = torch.randn(50, int(network.feature_mask.sum())) * 1e-4 + 3.0
    network.decoder.fit_standardization(features)
    standardized = (features - network.decoder.feature_mean) * network.decoder.feature_scale
    torch.testing.assert_close(standardized.mean(0), torch.zeros(features.shape[1]),
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(standardized.std(0), torch.ones(features.shape[1]),
                               atol=1e-3, rtol=0)
    path = save_model(tmp_path / "m.safetensors", PhaseModel(network, PHASES), spec)
    loaded = load_model(path)
    torch.testing.assert_close(loaded.network.decoder.feature_scale,
                               network.decoder.feature_scale)


def test_unknown_decoder_setting_is_named():
    with pytest.raises(ValueError, match="normalise"):
        DecoderConfig.from_dict({"hidden": [8], "normalise": True})
