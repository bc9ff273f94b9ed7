"""The network and the inference core: score, symmetries, chunking, precision, errors."""

import contextlib

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.neighborlist import neighbor_list

from lpfm_insitu.constants import UNKNOWN_PHASE
from lpfm_insitu.model.graph import periodic_graph
from lpfm_insitu.model.image_halo import ImageHalo, with_ghost_images
from lpfm_insitu.model.inference import NoHalo, PhaseModel
from lpfm_insitu.model.local_scale import REFERENCE_NN_DISTANCE, equivalent_nn_distance
from lpfm_insitu.model.network import ModelSpec, build_network

SMALL = {"channels": 8, "correlation": 2, "max_ell": 2, "num_interactions": 2, "r_max": 4.6}
PHASES = ("A_cF4_225_a", "A_cI2_229_a", "A_hP2_194_c")


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    spec = ModelSpec(phases=PHASES, backbone=SMALL)
    return PhaseModel(build_network(spec), PHASES)


@pytest.fixture(scope="module")
def shape_model():
    """As small_model, with the decoder's shape invariants (randomly weighted, not zero)."""
    torch.manual_seed(0)
    spec = ModelSpec(phases=PHASES, backbone=SMALL, decoder={"shape_invariants": True})
    return PhaseModel(build_network(spec), PHASES)


@pytest.fixture(params=["small_model", "shape_model"])
def each_model(request):
    return request.getfixturevalue(request.param)


def _rattled_fcc(seed=0, repeat=3, sigma=0.1):
    atoms = bulk("Cu", "fcc", a=(4 * 15.0) ** (1 / 3), cubic=True).repeat(repeat)
    atoms.positions += np.random.default_rng(seed).normal(0, sigma, atoms.positions.shape)
    return atoms


def _log_density(network, positions, graph):
    pos = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    logits = network(pos, torch.as_tensor(graph.edge_index),
                     torch.tensor(graph.shifts, dtype=torch.float64))
    return torch.logsumexp(logits, dim=1).sum(), pos


def test_score_is_the_gradient_of_log_density(each_model):
    network = each_model.network.double()
    try:
        atoms = _rattled_fcc(repeat=2)
        graph = periodic_graph(atoms.positions, atoms.cell, True, each_model.cutoff)
        log_p, pos = _log_density(network, atoms.positions, graph)
        (score,) = torch.autograd.grad(log_p, pos)
        h = 1e-5
        rng = np.random.default_rng(1)
        for atom in rng.choice(len(atoms), 4, replace=False):
            for axis in range(3):
                plus, minus = atoms.positions.copy(), atoms.positions.copy()
                plus[atom, axis] += h
                minus[atom, axis] -= h
                numeric = (_log_density(network, plus, graph)[0] -
                           _log_density(network, minus, graph)[0]).item() / (2 * h)
                assert score[atom, axis].item() == pytest.approx(numeric, rel=1e-5, abs=1e-7)
    finally:
        network.float()


def test_logits_invariant_and_score_equivariant_under_rotation_and_translation(each_model):
    atoms = _rattled_fcc()
    ref = each_model.classify_atoms(atoms, denoise_steps=1)
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3),
                                           dtype=torch.float64))[0].numpy()
    moved = atoms.copy()
    moved.set_cell(atoms.cell @ rotation.T, scale_atoms=False)
    moved.positions = atoms.positions @ rotation.T + np.array([0.7, -1.3, 2.1])
    out = each_model.classify_atoms(moved, denoise_steps=1)
    np.testing.assert_allclose(out.logits, ref.logits, atol=2e-4)
    # one denoising step moves atoms along the score: it must rotate with the crystal
    np.testing.assert_allclose(out.displacement, ref.displacement @ rotation.T, atol=2e-5)
    assert np.abs(ref.displacement).max() > 1e-4


@contextlib.contextmanager
def averaging(model, radius):
    before = model.averaging_radius
    model.averaging_radius = radius
    try:
        yield model
    finally:
        model.averaging_radius = before


@pytest.mark.parametrize("averaging_radius", [0.0, 4.0])
@pytest.mark.parametrize("max_atoms_per_chunk", [None, 50])
def test_subdomain_with_ghost_images_matches_periodic_cell(small_model, max_atoms_per_chunk,
                                                           averaging_radius):
    with averaging(small_model, averaging_radius):
        _check_subdomain_matches_periodic_cell(small_model, max_atoms_per_chunk)


def test_shape_invariants_on_a_subdomain_with_ghosts_match_the_periodic_cell(shape_model):
    _check_subdomain_matches_periodic_cell(shape_model, None)


def test_a_fixed_scale_on_a_subdomain_matches_the_periodic_cell(small_model):
    _check_subdomain_matches_periodic_cell(small_model, 50, local=False)


def test_each_layer_of_a_subdomain_works_on_the_atoms_it_needs_only(small_model):
    """The last layer's node-wise work (product) runs on the owned atoms, the one before
    on them and their neighbours, not on every ghost; the answers stay exact."""
    atoms = _rattled_fcc(repeat=4)
    scale = PhaseModel.length_scale(atomic_volume=atoms.get_volume() / len(atoms))
    positions, owners = with_ghost_images(atoms, small_model.receptive_field(scale))
    rows = []
    hooks = [product.register_forward_hook(lambda module, args, out: rows.append(len(out)))
             for product in small_model.network.mace.products]
    try:
        sub = small_model.classify_subdomain(positions, len(atoms), scale, ImageHalo(owners))
    finally:
        for hook in hooks:
            hook.remove()
    assert rows[-1] == len(atoms)
    assert len(atoms) < rows[0] < len(positions)
    whole = small_model.classify_atoms(atoms, nn_distance=REFERENCE_NN_DISTANCE / scale)
    np.testing.assert_allclose(sub.logits, whole.logits, atol=1e-4)


def _edge_geometry(atoms, cutoff):
    """``(vectors, lengths, receiver, sender)`` of a periodic cell's graph, as the network
    computes them (float32 tensors)."""
    graph = periodic_graph(atoms.positions, atoms.cell, True, cutoff)
    sender, receiver = (torch.as_tensor(graph.edge_index[0]),
                        torch.as_tensor(graph.edge_index[1]))
    pos = torch.tensor(atoms.positions, dtype=torch.float32)
    vectors = pos[receiver] - pos[sender] + torch.tensor(graph.shifts, dtype=torch.float32)
    return vectors, torch.linalg.norm(vectors, dim=-1, keepdim=True), receiver, sender


def test_shape_invariants_tell_the_sign_of_a_tetragonal_distortion():
    """Negative cosine for FCC compressed along a cube axis, positive stretched; ~0
    magnitude for ideal FCC and HCP, whose first-shell second moments are isotropic."""
    from lpfm_insitu.model.network import shape_invariants

    def invariants(atoms):
        vectors, lengths, receiver, sender = _edge_geometry(atoms, 3.6)
        return shape_invariants(vectors, lengths, receiver, sender, len(atoms),
                                (3.05, 3.55)).numpy()

    a = (4 * 15.0) ** (1 / 3)
    fcc = bulk("Cu", "fcc", a=a, cubic=True).repeat(3)
    for axis_scale, sign in ((0.92, -1.0), (1.06, 1.0)):
        strained = fcc.copy()
        strained.set_cell(fcc.cell[:] @ np.diag([1.0, 1.0, axis_scale]), scale_atoms=True)
        magnitude, cosine, _ = invariants(strained).T
        assert magnitude.min() > 0.01  # ideal lattices: < 1e-3 (below)
        # damped below a ~3% distortion (SHAPE_J2_FLOOR), never of the wrong sign
        assert (sign * cosine).min() > 0.1, cosine
    for ideal in (fcc, bulk("Mg", "hcp", a=a / 2 ** 0.5, c=a / 2 ** 0.5 * (8 / 3) ** 0.5)
                  .repeat((4, 4, 3))):
        assert np.abs(invariants(ideal)[:, 0]).max() < 1e-3


def _check_subdomain_matches_periodic_cell(small_model, max_atoms_per_chunk, local=True):
    """The local scale (default) or one fixed scale: a subdomain's owned atoms get the
    periodic cell's answers."""
    atoms = _rattled_fcc(repeat=4)
    scale = PhaseModel.length_scale(atomic_volume=atoms.get_volume() / len(atoms))
    nn_distance = None if local else REFERENCE_NN_DISTANCE / scale
    whole = small_model.classify_atoms(atoms, denoise_steps=2, nn_distance=nn_distance)
    # local scales stay within a few % of the box's for a crystal: 10% covers them
    positions, owners = with_ghost_images(atoms, small_model.receptive_field(0.9 * scale, 2))
    sub = small_model.classify_subdomain(
        positions, len(atoms), None if local else scale, ImageHalo(owners), denoise_steps=2,
        max_atoms_per_chunk=max_atoms_per_chunk,
        typical_distance=equivalent_nn_distance(atoms.get_volume() / len(atoms)))
    assert len(positions) > 2 * len(atoms)
    if local:
        assert np.ptp(whole.length_scale) > 0  # the scales really are per atom
        np.testing.assert_allclose(whole.length_scale, scale, rtol=0.05)
    np.testing.assert_array_equal(sub.labels, whole.labels)
    np.testing.assert_allclose(sub.logits, whole.logits, atol=1e-4)
    np.testing.assert_allclose(sub.displacement, whole.displacement, atol=1e-6)


@pytest.mark.parametrize("periodic", [True, False])
def test_a_graph_cut_to_a_shorter_radius_equals_a_new_search(periodic):
    """The neighbour average reuses the network's graph instead of searching again."""
    from lpfm_insitu.model.graph import open_graph

    atoms = _rattled_fcc(repeat=3, sigma=0.2)
    if periodic:
        def graph_of(cutoff):
            return periodic_graph(atoms.positions, atoms.cell, True, cutoff)
    else:
        def graph_of(cutoff):
            return open_graph(atoms.positions, cutoff)
    cut = graph_of(4.6).within(atoms.positions, 3.0)
    fresh = graph_of(3.0)
    assert 0 < cut.n_edges < graph_of(4.6).n_edges

    def edges(graph):
        return sorted(zip(*graph.edge_index, *np.round(graph.shifts, 6).T))

    assert edges(cut) == edges(fresh)


def test_numpy_blas_runs_on_one_thread_during_a_pass_and_is_restored_after(small_model,
                                                                             monkeypatch):
    """numpy's spinning BLAS threads would take turns with torch's on the same cores."""
    from threadpoolctl import threadpool_info, threadpool_limits

    if not any(lib["user_api"] == "blas" for lib in threadpool_info()):
        pytest.skip("numpy loaded no BLAS library threadpoolctl can see")
    atoms = _rattled_fcc(repeat=2)
    seen = []

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    def graph_of(positions, cutoff=small_model.cutoff):
        seen.append(blas_threads())
        return periodic_graph(positions, atoms.cell, True, cutoff)

    with threadpool_limits(limits=2, user_api="blas"):
        small_model.evaluate(atoms.positions, len(atoms), graph_of, np.arange(len(PHASES)),
                             NoHalo(), need_gradient=True, average=False)
        assert seen == [{1}]
        assert blas_threads() == {2}
        monkeypatch.setenv("LPFM_LIMIT_NUMPY_BLAS", "0")  # the opt-out leaves them alone
        small_model.evaluate(atoms.positions, len(atoms), graph_of, np.arange(len(PHASES)),
                             NoHalo(), need_gradient=False, average=False)
        assert seen == [{1}, {2}]


def test_averaged_logits_are_the_mean_over_each_atoms_neighbourhood(small_model):
    atoms = _rattled_fcc(repeat=3, sigma=0.2)
    own = small_model.classify_atoms(atoms)
    radius = 4.0  # model units: the first two FCC shells at 15 A^3/atom
    with averaging(small_model, radius):
        averaged = small_model.classify_atoms(atoms)
    scale = own.length_scale  # each centre's own: its neighbourhood is read in its units
    centre, neighbour, distance = neighbor_list("ijd", atoms, radius / scale.min())
    inside = distance * scale[centre] < radius
    centre, neighbour = centre[inside], neighbour[inside]
    expected = own.logits.copy()
    np.add.at(expected, centre, own.logits[neighbour])
    expected /= (1 + np.bincount(centre, minlength=len(atoms)))[:, None]
    assert np.bincount(centre).min() >= 12  # at least the first shell around every atom
    np.testing.assert_allclose(averaged.logits, expected, atol=1e-5)
    np.testing.assert_array_equal(averaged.labels, np.argmax(expected, axis=1))
    np.testing.assert_allclose(averaged.confidence, expected.max(axis=1), atol=1e-5)
    # averaging over ~16 atoms narrows the atom-to-atom spread of every logit
    assert np.all(averaged.logits.std(axis=0) < 0.7 * own.logits.std(axis=0))
    # the score stays that of the per-atom log p: denoising moves atoms the same way
    with averaging(small_model, radius):
        moved = small_model.classify_atoms(atoms, denoise_steps=1).displacement
    np.testing.assert_allclose(moved, small_model.classify_atoms(atoms, denoise_steps=1)
                               .displacement, atol=1e-7)


@pytest.mark.parametrize("radius", [-1.0, 4.7, float("nan")])
def test_bad_averaging_radius_is_refused_with_the_allowed_range(small_model, radius):
    with pytest.raises(ValueError, match=r"averaging_radius must be between 0 \(off\) and "
                                         r"the model's cutoff 4.6"):
        small_model.averaging_radius = radius
    assert small_model.averaging_radius == 0.0


def test_bf16_on_cpu_runs_and_agrees_roughly(small_model):
    atoms = _rattled_fcc()
    fp32 = small_model.classify_atoms(atoms)
    small_model.to("cpu", "bf16")
    try:
        bf16 = small_model.classify_atoms(atoms)
    finally:
        small_model.to("cpu", "fp32")
    assert np.corrcoef(fp32.logits.ravel(), bf16.logits.ravel())[0, 1] > 0.99


def test_bf16_keeps_the_first_layer_in_fp32(small_model):
    # the first layer's neighbour sums carry thermal distortions as small differences:
    # in bf16 they were rounded away and 0.3% of a hot BCC crystal changed label
    first = small_model.network.mace.interactions[0]
    seen = []
    hook = first.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    small_model.to("cpu", "bf16")
    try:
        small_model.classify_atoms(_rattled_fcc())
    finally:
        small_model.to("cpu", "fp32")
        hook.remove()
    assert seen == [torch.float32]


def test_bf16_report_names_what_each_network_keeps_in_fp32(small_model, shape_model):
    from lpfm_insitu.evaluation.precision import bf16_call

    plain = bf16_call(small_model, lambda m: None)[1]
    shaped = bf16_call(shape_model, lambda m: None)[1]
    assert "first interaction" in plain and "first interaction" in shaped
    # neither small network standardises its decoder, so neither keeps it in fp32
    assert "decoder" not in plain and "decoder" not in shaped
    assert "shape invariants" in shaped and "shape invariants" not in plain


def test_candidates_restrict_labels(small_model):
    atoms = _rattled_fcc()
    result = small_model.classify_atoms(atoms, candidates=["A_cI2_229_a"])
    assert set(result.labels) == {PHASES.index("A_cI2_229_a")}


def test_threshold_marks_unknown(small_model):
    atoms = _rattled_fcc()
    result = small_model.classify_atoms(atoms)
    small_model.confidence_threshold = float(np.median(result.confidence))
    try:
        again = small_model.classify_atoms(atoms)
    finally:
        small_model.confidence_threshold = -np.inf
    unknown = again.labels == UNKNOWN_PHASE
    assert 0 < unknown.sum() < len(atoms)
    np.testing.assert_array_equal(unknown, result.confidence < np.median(result.confidence))
    assert again.fractions()["unknown"] == pytest.approx(unknown.mean())


def test_a_phase_threshold_sets_only_that_phases_threshold(small_model):
    atoms = _rattled_fcc()
    result = small_model.classify_atoms(atoms)
    names = small_model.phases
    label = int(np.bincount(result.labels).argmax())
    raised = float(np.median(result.confidence[result.labels == label]))
    small_model.phase_thresholds = {0: {names[label]: raised}, 4: {names[label]: np.inf}}
    try:
        again = small_model.classify_atoms(atoms)
        limits = small_model.unknown_thresholds(0)
        assert limits[label] == raised
        assert np.all(np.delete(limits, label) == small_model.threshold_for(0))
        # set over all phases: a run restricted to some candidates keeps the shared one
        subset = [names[label], names[(label + 1) % len(names)]]
        assert np.all(small_model.unknown_thresholds(0, subset) == small_model.threshold_for(0))
        assert small_model.unknown_thresholds(0, list(names))[label] == raised
        restricted = small_model.classify_atoms(atoms, candidates=subset)
        assert np.sum(restricted.labels == label) == np.sum(
            (np.argmax(restricted.logits[:, [names.index(c) for c in subset]], axis=1) == 0)
            & (restricted.confidence >= small_model.threshold_for(0)))
        # a phase's own threshold may lie below the step's shared one too (calibration
        # lowers it where the shared one costs a hot crystal and no liquid atom is there)
        lowered = small_model.threshold_for(0) - 1.0
        small_model.phase_thresholds = {0: {names[label]: lowered}}
        limits = small_model.unknown_thresholds(0)
        assert limits[label] == lowered
        assert np.all(np.delete(limits, label) == small_model.threshold_for(0))
    finally:
        small_model.phase_thresholds = {}
    was = result.labels == label
    gone = was & (result.confidence < raised)
    assert 0 < gone.sum() < was.sum()
    np.testing.assert_array_equal(again.labels[gone], UNKNOWN_PHASE)
    np.testing.assert_array_equal(again.labels[~gone], result.labels[~gone])


@pytest.mark.parametrize("change, message", [
    (lambda a: a.positions.__setitem__((0, 0), np.nan), "non-finite positions"),
    (lambda a: a.set_cell(np.zeros((3, 3))) or a.set_pbc(True), "zero volume"),
])
def test_bad_atoms_get_clear_errors(small_model, change, message):
    atoms = _rattled_fcc()
    change(atoms)
    with pytest.raises(ValueError, match=message):
        small_model.classify_atoms(atoms)


def test_bad_options_get_clear_errors(small_model):
    atoms = _rattled_fcc()
    with pytest.raises(ValueError, match="unknown phase name 'B_nonsense'"):
        small_model.classify_atoms(atoms, candidates=["A_cF4_225_a", "B_nonsense"])
    with pytest.raises(ValueError, match="denoise_steps"):
        small_model.classify_atoms(atoms, denoise_steps=-1)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        small_model.to("cpu", "fp16")
    with pytest.raises(ValueError, match="nn_distance must be positive"):
        small_model.classify_atoms(atoms, nn_distance=0.0)


def test_open_subdomain_without_ghosts_matches_isolated_cluster(small_model):
    # an open cluster evaluated with nn_distance: no periodic images may leak in
    atoms = _rattled_fcc(repeat=2)
    atoms.pbc = False
    result = small_model.classify_atoms(atoms, nn_distance=(np.sqrt(2) * 15.0) ** (1 / 3))
    far = atoms.copy()
    far.positions += 100.0
    again = small_model.classify_atoms(far, nn_distance=(np.sqrt(2) * 15.0) ** (1 / 3))
    np.testing.assert_allclose(result.logits, again.logits, atol=1e-4)


def test_bf16_runs_with_the_shipped_correlation_3_model():
    # MACE's symmetric contraction (correlation 3) refused bf16 autocast on the CPU
    from lpfm_insitu import load_model

    model = load_model("default")
    atoms = _rattled_fcc(repeat=3)
    fp32 = model.classify_atoms(atoms, denoise_steps=1)
    bf16 = load_model("default", precision="bf16").classify_atoms(atoms, denoise_steps=1)
    assert (fp32.labels == bf16.labels).mean() > 0.95
    assert np.abs(fp32.logits - bf16.logits).max() < 1.0


def test_denoising_stops_at_the_tolerance(small_model):
    atoms = _rattled_fcc(seed=4)
    full = small_model.classify_atoms(atoms, denoise_steps=4, keep_history=True)
    assert full.denoise_steps_done == 4 and len(full.history) == 5
    early = small_model.classify_atoms(atoms, denoise_steps=4, tolerance=1e3, keep_history=True)
    assert early.denoise_steps_done == 1 and len(early.history) == 2
    # one step taken, then the final answer is evaluated where that step ended
    np.testing.assert_allclose(early.logits, full.history[1]["logits"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="tolerance"):
        small_model.classify_atoms(atoms, denoise_steps=2, tolerance=0.0)


def test_log_prior_shifts_logits_and_score_unless_candidates_restrict(small_model):
    atoms = _rattled_fcc()
    plain = small_model.classify_atoms(atoms, denoise_steps=1, keep_history=True)
    prior = {"A_cI2_229_a": -1.5, "A_hP2_194_c": 0.7}
    small_model.log_prior = prior
    try:
        shifted = small_model.classify_atoms(atoms, denoise_steps=1, keep_history=True)
        restricted = small_model.classify_atoms(atoms, candidates=["A_cF4_225_a",
                                                                   "A_cI2_229_a"])
    finally:
        small_model.log_prior = {}
    shift = np.array([prior.get(p, 0.0) for p in PHASES])
    np.testing.assert_allclose(shifted.history[0]["logits"], plain.history[0]["logits"] + shift,
                               rtol=0, atol=1e-5)
    np.testing.assert_array_equal(shifted.labels, np.argmax(shifted.logits, axis=1))
    # a decision prior: the score (the network's own density) and so the denoising step
    # are those without it
    np.testing.assert_allclose(shifted.displacement, plain.displacement, rtol=0, atol=1e-7)
    assert np.abs(plain.displacement).max() > 1e-4
    # a caller's candidates replace the prior: raw network logits
    np.testing.assert_allclose(restricted.logits, plain.history[0]["logits"], rtol=0, atol=1e-5)


def test_step_log_priors_apply_to_runs_of_at_least_their_steps(small_model):
    atoms = _rattled_fcc()
    plain = small_model.classify_atoms(atoms, denoise_steps=2, keep_history=True)
    undenoised, denoised = {"A_cI2_229_a": -1.5}, {"A_cI2_229_a": -0.25, "A_hP2_194_c": 0.5}
    small_model.log_prior = undenoised
    small_model.step_log_priors = {2: denoised}
    try:
        shifted = small_model.classify_atoms(atoms, denoise_steps=2, keep_history=True)
        assert small_model.log_prior == undenoised
        assert small_model.step_log_priors == {2: denoised}
        small_model.log_prior = {}  # one prior for every run length again
        assert small_model.step_log_priors == {}
    finally:
        small_model.log_prior = {}
    for step, prior in ((0, undenoised), (1, undenoised), (2, denoised)):
        shift = np.array([prior.get(p, 0.0) for p in PHASES])
        np.testing.assert_allclose(shifted.history[step]["logits"],
                                   plain.history[step]["logits"] + shift, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(shifted.labels, np.argmax(shifted.logits, axis=1))
    np.testing.assert_allclose(shifted.displacement, plain.displacement, rtol=0, atol=1e-7)


def test_step_log_priors_refuse_bad_keys_and_phases(small_model):
    for steps in (0, -1, 1.5):
        with pytest.raises(ValueError, match="denoising steps >= 1"):
            small_model.step_log_priors = {steps: {"A_cI2_229_a": -1.0}}
    with pytest.raises(ValueError, match=r"B_nonsense.*its phases"):
        small_model.step_log_priors = {8: {"B_nonsense": -1.0}}
    assert small_model.step_log_priors == {}


def test_score_with_log_prior_is_the_gradient_of_the_networks_own_density(small_model):
    atoms = _rattled_fcc(repeat=2)
    small_model.log_prior = {"A_cI2_229_a": -2.0, "A_hP2_194_c": -0.5}
    try:
        graph = periodic_graph(atoms.positions, atoms.cell, True, small_model.cutoff)
        cand = np.arange(len(PHASES))
        _, gradient = small_model.logits_and_gradient(atoms.positions, graph, len(atoms), cand,
                                                      True)
        network = small_model.network.double()
        try:
            def log_p(positions):
                pos = torch.tensor(positions, dtype=torch.float64)
                logits = network(pos, torch.as_tensor(graph.edge_index),
                                 torch.tensor(graph.shifts, dtype=torch.float64))
                return torch.logsumexp(logits, dim=1).sum().item()  # no prior

            h = 1e-5
            for atom, axis in ((0, 0), (3, 2), (7, 1)):
                plus, minus = atoms.positions.copy(), atoms.positions.copy()
                plus[atom, axis] += h
                minus[atom, axis] -= h
                numeric = (log_p(plus) - log_p(minus)) / (2 * h)
                assert gradient[atom, axis] == pytest.approx(numeric, rel=1e-3, abs=1e-4)
        finally:
            network.float()
    finally:
        small_model.log_prior = {}


def test_bad_log_prior_is_refused_with_the_phase_names(small_model):
    with pytest.raises(ValueError, match=r"B_nonsense.*its phases"):
        small_model.log_prior = {"B_nonsense": -1.0}
    with pytest.raises(ValueError, match="finite"):
        small_model.log_prior = {"A_cI2_229_a": float("nan")}
    assert small_model.log_prior == {}


@pytest.mark.parametrize("fixed", [False, True], ids=["local_scale", "fixed_scale"])
def test_classify_periodic_wraps_atoms_and_matches_classify_atoms(small_model, fixed):
    atoms = _rattled_fcc(repeat=3)
    scale = PhaseModel.length_scale(atomic_volume=atoms.get_volume() / len(atoms))
    reference = small_model.classify_atoms(
        atoms, denoise_steps=1, nn_distance=REFERENCE_NN_DISTANCE / scale if fixed else None)
    cell = np.asarray(atoms.cell)
    strayed = atoms.positions + cell[0] - 2 * cell[2]  # outside the cell: wrapped back in
    got = small_model.classify_periodic(strayed, cell, length_scale=scale if fixed else None,
                                        denoise_steps=1)
    np.testing.assert_array_equal(got.labels, reference.labels)
    np.testing.assert_allclose(got.logits, reference.logits, atol=1e-4)
    np.testing.assert_allclose(got.displacement, reference.displacement, atol=1e-5)


def test_labels_from_logits_threshold_candidates_and_surface():
    from lpfm_insitu.model.inference import labels_from_logits

    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.5, 0.2]])
    labels, confidence, probability = labels_from_logits(logits)
    assert list(labels) == [0, 1, 1]
    np.testing.assert_allclose(confidence, [2.0, 3.0, 0.5])
    np.testing.assert_allclose(probability, np.exp(logits).max(1) / np.exp(logits).sum(1))
    assert list(labels_from_logits(logits, threshold=1.0)[0]) == [0, 1, UNKNOWN_PHASE]
    assert list(labels_from_logits(logits, np.array([0, 2]))[0]) == [0, 2, 2]
    at_surface = np.array([False, True, False])
    assert list(labels_from_logits(logits, at_surface=at_surface)[0]) == [0, UNKNOWN_PHASE, 1]
    empty = labels_from_logits(np.zeros((0, 3)))
    assert [len(a) for a in empty] == [0, 0, 0]


def test_shape_invariants_ignore_the_edges_past_the_first_shell_exactly():
    """The network hands ``shape_invariants`` only the edges shorter than its outer
    radius: those past it weigh exactly zero, so the invariants are bit for bit those
    of the whole graph."""
    from lpfm_insitu.model.network import shape_invariants

    atoms = bulk("Cu", "fcc", a=(4 * 15.0) ** (1 / 3), cubic=True).repeat(3)
    atoms.rattle(0.2, seed=4)
    vectors, lengths, receiver, sender = _edge_geometry(atoms, 4.6)
    shell = lengths.squeeze(-1) < 3.55
    assert 0 < int(shell.sum()) < len(shell)
    whole = shape_invariants(vectors, lengths, receiver, sender, len(atoms), (3.05, 3.55))
    first = shape_invariants(vectors[shell], lengths[shell], receiver[shell], sender[shell],
                             len(atoms), (3.05, 3.55))
    assert torch.equal(whole, first)


def test_the_network_is_built_without_torchscript_and_leaves_e3nn_as_it_was():
    """No module of a built network is a TorchScript one (scripting cost start-up and a
    slow first call), the same logits come out as from a scripted build of the same
    weights, and e3nn's global setting is what it was before."""
    from e3nn import get_optimization_defaults, set_optimization_defaults

    from lpfm_insitu.model import network as network_module

    spec = ModelSpec(phases=PHASES, backbone=SMALL)
    assert get_optimization_defaults()["jit_script_fx"]
    plain = build_network(spec)
    assert get_optimization_defaults()["jit_script_fx"]
    assert not any(isinstance(m, torch.jit.ScriptModule) for m in plain.modules())

    set_optimization_defaults(jit_script_fx=True)
    scripted = network_module._build_network(spec, None)
    assert any(isinstance(m, torch.jit.ScriptModule) for m in scripted.modules())
    scripted.load_state_dict(plain.state_dict())
    atoms = bulk("Cu", "fcc", a=(4 * 15.0) ** (1 / 3), cubic=True).repeat(3)
    atoms.rattle(0.1, seed=2)
    graph = periodic_graph(atoms.positions, atoms.cell, True, 4.6)
    inputs = (torch.tensor(atoms.positions, dtype=torch.float32),
              torch.as_tensor(graph.edge_index), torch.tensor(graph.shifts, dtype=torch.float32))
    with torch.no_grad():
        torch.testing.assert_close(plain(*inputs), scripted(*inputs), rtol=0, atol=0)


def test_a_candidate_margin_keeps_only_atoms_that_lead_the_next_candidate_by_it():
    from lpfm_insitu.model.inference import labels_from_logits

    logits = np.array([[1.0, 4.5, 0.0],    # below the threshold, leads by 3.5: kept
                       [1.0, 1.5, 0.0],    # below, leads by 0.5: unknown
                       [5.0, 4.9, 0.0],    # above the threshold: labelled whatever its lead
                       [1.0, 0.0, 9.0]])   # leads over all phases, but phase 2 is no candidate
    cand = np.array([0, 1])
    plain, _, _ = labels_from_logits(logits, cand, threshold=4.8)
    kept, confidence, _ = labels_from_logits(logits, cand, threshold=4.8, margin=2.0)
    assert plain.tolist() == [UNKNOWN_PHASE, UNKNOWN_PHASE, 0, UNKNOWN_PHASE]
    assert kept.tolist() == [1, UNKNOWN_PHASE, 0, UNKNOWN_PHASE]
    np.testing.assert_array_equal(confidence, [4.5, 1.5, 5.0, 1.0])
    # a free-surface atom stays unknown, and a lead exactly at the margin counts
    surface = np.array([True, False, False, False])
    assert labels_from_logits(logits, cand, 4.8, surface, margin=2.0)[0][0] == UNKNOWN_PHASE
    assert labels_from_logits(logits, cand, 4.8, margin=3.5)[0][0] == 1


def test_candidate_margins_serve_only_their_own_candidate_set(small_model):
    names = small_model.phases
    try:
        small_model.candidate_margins = {"A_cF4_225_a,A_hP2_194_c": {0: 2.0, 8: 5.0}}
        assert small_model.candidate_margins == {("A_cF4_225_a", "A_hP2_194_c"): {0: 2.0, 8: 5.0}}
        for candidates in (["hcp", "fcc"], ["A_cF4_225_a", "A_hP2_194_c"], np.array([2, 0])):
            assert [small_model.candidate_margin(k, candidates) for k in (0, 7, 8)] == [2, 2, 5]
        assert small_model.candidate_margin(0, None) is None
        assert small_model.candidate_margin(0, list(names)) is None  # all phases: no subset
        assert small_model.candidate_margin(0, ["fcc", "bcc"]) is None  # another set
        atoms = _rattled_fcc()
        threshold = float(np.max(small_model.classify_atoms(atoms).confidence)) + 1.0
        small_model.confidence_threshold = threshold  # every atom below it
        pair = ["fcc", "hcp"]
        result = small_model.classify_atoms(atoms, candidates=pair)
        two = result.logits[:, [0, 2]]
        lead = np.abs(two[:, 0] - two[:, 1])
        margin = float(np.median(lead))
        small_model.candidate_margins = {"A_cF4_225_a,A_hP2_194_c": {0: margin}}
        again = small_model.classify_atoms(atoms, candidates=pair)
        np.testing.assert_array_equal(again.labels != UNKNOWN_PHASE, lead >= margin)
        # over all phases the margin is not read: every atom below the threshold
        assert np.all(small_model.classify_atoms(atoms).labels == UNKNOWN_PHASE)
        with pytest.raises(ValueError, match="at least two of this model's phases"):
            small_model.candidate_margins = {"A_cF4_225_a,A_hP3_191_ad": {0: 1.0}}
    finally:
        small_model.candidate_margins = {}
        small_model.confidence_threshold = -np.inf
