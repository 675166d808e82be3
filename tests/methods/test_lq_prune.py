import math

import pytest
import torch
from torch import nn

from big2small.errors import ConfigError
from big2small.methods.lq_prune import LqPruning, terms_worth_keeping
from tests.methods.roundtrip import round_trip


def test_one_dominant_entry_is_kept_alone():
    row = torch.full((1, 50), 1e-6)
    row[0, 17] = 5.0
    assert math.ceil(float(terms_worth_keeping(row, q=0.5, eta=0.1)[0])) == 1


def test_equal_entries_keep_the_share_the_bound_gives():
    # s = 1 for equal magnitudes, so m = d (1 + eta)^(1/(q-1)): with q = 0.5, eta = 0.1, d = 100 -> 82.6...
    m = float(terms_worth_keeping(torch.ones(1, 100), q=0.5, eta=0.1)[0])
    assert m == pytest.approx(100 / 1.1**2, rel=1e-5)


def test_neurons_keep_their_largest_weights_through_the_artifact(tmp_path):
    model = nn.Sequential(nn.Linear(20, 3, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(3, 20) * 1e-6)
        model[0].weight[0, 4] = 3.0                   # neuron 0: one dominant weight
        model[0].weight[1] = torch.linspace(1, 2, 20)  # neuron 1: spread out
    compressed, rebuilt, _ = round_trip(LqPruning(), model, tmp_path)
    kept = rebuilt[0].weight.detach() != 0
    assert kept[0].tolist() == [i == 4 for i in range(20)]
    assert rebuilt[0].weight[0, 4] == 3.0
    assert int(kept[1].sum()) == math.ceil(float(terms_worth_keeping(model[0].weight[1:2].detach(), 0.5, 0.1)[0]))
    assert compressed.layer_stats["0.weight"]["kept_fraction"] < 1


def test_bad_options_are_rejected():
    with pytest.raises(ConfigError, match=r"q must lie in \(0, 1\)"):
        LqPruning(q=1.0)
    with pytest.raises(ConfigError, match="eta must be a finite number >= 0"):
        LqPruning(eta=-0.5)
