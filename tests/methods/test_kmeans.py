import pytest
import torch

from big2small.errors import ConfigError
from big2small.methods.kmeans import KMeansSharing, kmeans_1d
from tests.methods.roundtrip import digits_sized_cnn, round_trip


def test_weights_with_four_distinct_values_are_exact_at_2_bits(tmp_path):
    model = digits_sized_cnn()
    levels = torch.tensor([-0.3, -0.05, 0.1, 0.4])
    with torch.no_grad():
        for name in ("features.0.weight", "features.4.weight", "features.7.weight", "classifier.weight"):
            param = model.get_parameter(name)
            param.copy_(levels[torch.randint(0, 4, param.shape)])
    compressed, rebuilt, _ = round_trip(KMeansSharing(bits=2), model, tmp_path)
    assert {layer["centroids"] for layer in compressed.meta["layers"]} == {4}
    for name in ("features.0.weight", "classifier.weight"):
        assert torch.equal(rebuilt.get_parameter(name), model.get_parameter(name))


def test_kmeans_1d_finds_separated_clusters():
    values = torch.cat([torch.full((50,), -1.0), torch.full((30,), 2.0)]) + 0.01 * torch.randn(80)
    centroids, assignment = kmeans_1d(values, 2, iterations=20)
    torch.testing.assert_close(centroids, torch.tensor([-1.0, 2.0]), atol=0.01, rtol=0)
    assert torch.equal(assignment, (values > 0.5).long())


def test_more_bits_mean_smaller_error(tmp_path):
    model = digits_sized_cnn()
    errors = []
    for bits in (2, 5):
        _, rebuilt, _ = round_trip(KMeansSharing(bits=bits), model, tmp_path)
        errors.append(float((rebuilt.features[7].weight - model.features[7].weight).detach().norm()))
    assert errors[1] < errors[0] / 4


def test_bad_options_are_rejected():
    with pytest.raises(ConfigError, match="bits must be an integer in 1..16"):
        KMeansSharing(bits=17)
    with pytest.raises(ConfigError, match="iterations must be an integer >= 0"):
        KMeansSharing(iterations=-1)
