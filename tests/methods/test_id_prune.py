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
