import pytest
import torch
from torch import nn

from big2small.errors import ConfigError
from big2small.graph.prunable_pairs import prunable_pairs
from big2small.methods.id_prune import InterpolativePruning, activation_grams, pivoted_cholesky
from tests.methods.roundtrip import RandomCalibration, digits_sized_cnn, outputs, round_trip


def test_keeping_every_channel_is_exact(tmp_path):
    model = digits_sized_cnn()
    data = RandomCalibration()
    _, rebuilt, _ = round_trip(InterpolativePruning(keep_fraction=1.0, calibration_images=64), model, tmp_path, data)
    images = data.calibration_images(16)
    torch.testing.assert_close(outputs(rebuilt, images), outputs(model, images), atol=1e-4, rtol=1e-4)


def test_pruned_model_equals_the_interpolated_activations(tmp_path):
    """The rebuilt network computes exactly the original with each pruned layer's output replaced by Z[:, kept] T."""
    model = digits_sized_cnn()
    data = RandomCalibration()
    compressor = InterpolativePruning(keep_fraction=0.5, calibration_images=64)
    _, rebuilt, _ = round_trip(compressor, model, tmp_path, data)
    pairs = prunable_pairs(model)
    grams = activation_grams(model, pairs, data.calibration_images(64), 32)
    reference = digits_sized_cnn()
    for pair in pairs:
        kept, t = pivoted_cholesky(grams[pair.consumer]).interpolation(round(0.5 * pair.channels))
        t = t.float()

        def interpolate(module, inputs, kept=kept, t=t):
            x = inputs[0]
            return (torch.einsum("nk...,kc->nc...", x[:, kept], t),)

        reference.get_submodule(pair.consumer).register_forward_pre_hook(interpolate)
    images = data.calibration_images(16)
    torch.testing.assert_close(outputs(rebuilt, images), outputs(reference, images), atol=1e-4, rtol=1e-4)
    assert rebuilt.features[0].out_channels == 8 and rebuilt.features[1].num_features == 8
    assert rebuilt.features[4].in_channels == 8 and rebuilt.classifier.in_features == 32


def test_pivoted_cholesky_matches_pivoted_qr_on_a_rank_deficient_matrix():
    z = torch.randn(200, 3, dtype=torch.float64) @ torch.randn(3, 6, dtype=torch.float64)
    decomposition = pivoted_cholesky(z.T @ z)
    kept, t = decomposition.interpolation(3)
    torch.testing.assert_close(z[:, kept] @ t, z, atol=1e-8, rtol=1e-8)
    assert decomposition.dropped_error(3) == pytest.approx(0.0, abs=1e-6)


def test_residual_streams_are_never_pruned():
    from big2small.models.cifar_resnet import CifarResNet

    pairs = prunable_pairs(CifarResNet(depth=20))
    assert [p.producer for p in pairs] == [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)]
    assert all(p.consumer == p.producer.replace("conv1", "conv2") for p in pairs)


def test_bad_options_and_missing_data_are_rejected():
    with pytest.raises(ConfigError, match=r"keep_fraction must lie in \(0, 1\]"):
        InterpolativePruning(keep_fraction=0)
    with pytest.raises(ConfigError, match="calibration_images must be an integer >= 1"):
        InterpolativePruning(calibration_images=0)
    with pytest.raises(ConfigError, match="needs a data module"):
        InterpolativePruning().fit(digits_sized_cnn(), data=None)
    with pytest.raises(ConfigError, match="no layer whose channels feed exactly one next layer"):
        InterpolativePruning().fit(nn.Sequential(nn.Linear(4, 4)), data=RandomCalibration())


@pytest.mark.parametrize("budget", ["params", "flops"])
def test_params_and_flops_budgets_reach_the_whole_model_reduction(tmp_path, budget):
    """The paper steers by the whole model's FLOPs (or parameters), not by artifact bytes: target_ratio is then
    original count / pruned count, met from below and within a few channels."""
    from big2small.methods.id_prune import model_flops

    model, data = digits_sized_cnn(), RandomCalibration()
    compressor = InterpolativePruning(budget=budget, target_ratio=1.5, calibration_images=64)
    _, rebuilt, _ = round_trip(compressor, model, tmp_path, data)
    image = data.calibration_images(1)

    def count(m):
        return model_flops(m, image) if budget == "flops" else sum(p.numel() for p in m.parameters())

    assert count(model) / 1.6 <= count(rebuilt) <= count(model) / 1.5


@pytest.mark.parametrize("budget", ["params", "flops"])
def test_the_cost_the_search_steers_by_is_the_pruned_models_count(tmp_path, budget):
    """Each greedy cut is scored per unit saved in the budget's unit, so that unit must be the true count of the
    pruned model: all its parameters, or the multiply-accumulates of its conv and linear layers."""
    from big2small.methods.id_prune import model_flops

    model, data = digits_sized_cnn(), RandomCalibration()
    compressor = InterpolativePruning(budget=budget, target_ratio=2.0, calibration_images=64)
    compressed, rebuilt, _ = round_trip(compressor, model, tmp_path, data)
    keep = {name.removesuffix(".weight"): s["kept_channels"] for name, s in compressed.layer_stats.items()}
    image = data.calibration_images(1)
    cost, limit = compressor._cost(model, prunable_pairs(model), image)
    count = model_flops(rebuilt, image) if budget == "flops" else sum(p.numel() for p in rebuilt.parameters())
    assert cost(keep) == count <= limit
    assert cost({name: s["channels"] for name, s in ((n.removesuffix(".weight"), s)
                                                     for n, s in compressed.layer_stats.items())}) == (
        model_flops(model, image) if budget == "flops" else sum(p.numel() for p in model.parameters()))


def test_recalibrated_pruning_is_stored_exactly(tmp_path):
    """recalibrate (the paper's iterative ID): shrink one layer, recompute the activations on the pruned model,
    repeat. The artifact must rebuild exactly that pruned model, also where a layer was cut several times (kept
    indices composed into the original's channels, BN statistics sliced with them)."""
    model, data = digits_sized_cnn(), RandomCalibration()
    compressor = InterpolativePruning(budget="params", target_ratio=2.0, calibration_images=64, recalibrate=True)
    _, rebuilt, _ = round_trip(compressor, model, tmp_path, data)
    pairs = prunable_pairs(model)
    images = data.calibration_images(64)
    cost, limit = compressor._cost(model, pairs, images)
    pruned, kept, _ = compressor._prune_iteratively(model, pairs, images, cost, limit)
    assert any(len(index) < pair.channels - max(1, round(0.05 * pair.channels))
               for pair, index in zip(pairs, kept.values(), strict=True)), "some layer must be cut more than once"
    torch.testing.assert_close(outputs(rebuilt, images), outputs(pruned, images), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in rebuilt.parameters()) <= sum(p.numel() for p in model.parameters()) / 2.0


def test_recalibration_uses_the_activations_of_the_pruned_model():
    """After the first cut the next layer's activations change; the recalibrated search sees that, the one-shot
    search does not, so (on a random network) the two choose differently."""
    model, data = digits_sized_cnn(), RandomCalibration()
    chosen = {}
    for recalibrate in (False, True):
        compressor = InterpolativePruning(budget="params", target_ratio=2.0, calibration_images=64,
                                          recalibrate=recalibrate)
        chosen[recalibrate] = compressor.fit(model, data=data).tensors["kept"]
    assert not torch.equal(chosen[False], chosen[True])


def test_singular_error_is_the_singular_value_ratio_of_the_activations():
    z = torch.randn(300, 6, dtype=torch.float64) * torch.tensor([5.0, 3, 2, 1, 0.5, 0.1], dtype=torch.float64)
    decomposition = pivoted_cholesky(z.T @ z)
    sigma = torch.linalg.svdvals(z)
    for keep in range(1, 6):
        assert decomposition.dropped_error(keep, "singular") == pytest.approx(float(sigma[keep] / sigma[0]), rel=1e-9)
    assert decomposition.dropped_error(2, "pivot") == pytest.approx(
        float(decomposition.r[2, 2].abs() / decomposition.r[0, 0].abs()))


def test_bad_budget_and_error_are_rejected():
    with pytest.raises(ConfigError, match="budget must be one of"):
        InterpolativePruning(budget="macs")
    with pytest.raises(ConfigError, match="error must be one of"):
        InterpolativePruning(error="frobenius")
    with pytest.raises(ConfigError, match="recalibrate must be true or false"):
        InterpolativePruning(recalibrate="maybe")
