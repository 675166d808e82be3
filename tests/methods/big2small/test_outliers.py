import torch

from big2small.methods.big2small.outliers import preprocess, restore
from big2small.methods.big2small.settings import OutlierSettings


def _weight_with_outliers():
    weight = torch.randn(32, 16, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.05
    planted = torch.tensor([5, 700, 4000])
    weight.view(-1)[planted] = torch.tensor([2.0, -3.0, 1.5])
    return weight, planted


def test_sigma_rule_finds_planted_outliers_and_restores_them_exactly():
    weight, planted = _weight_with_outliers()
    prepared = preprocess(weight, OutlierSettings(k=6.0))
    assert prepared.outlier_index.tolist() == planted.tolist()
    assert prepared.target.abs().max() < 12  # clipped to k sigma: far from the raw -3.0 / 0.05 = 60
    rebuilt = restore(prepared.target, prepared.mean, prepared.std, prepared.outlier_index, prepared.outlier_value)
    assert torch.equal(rebuilt.view(-1)[planted], weight.view(-1)[planted].half().float())
    inliers = torch.ones(weight.numel(), dtype=torch.bool)
    inliers[planted] = False
    assert torch.allclose(rebuilt.view(-1)[inliers], weight.view(-1)[inliers], atol=1e-6)


def test_fraction_rule_keeps_the_requested_share():
    weight = torch.randn(10_000, generator=torch.Generator().manual_seed(1)).reshape(100, 100)
    prepared = preprocess(weight, OutlierSettings(rule="fraction", fraction=0.01))
    assert prepared.outlier_index.numel() == 100


def test_disabled_stores_no_outliers_but_still_standardises():
    weight, _ = _weight_with_outliers()
    prepared = preprocess(weight, OutlierSettings(enabled=False))
    assert prepared.outlier_index.numel() == 0
    assert abs(float(prepared.target.mean())) < 1e-5 and abs(float(prepared.target.std(unbiased=False)) - 1) < 1e-4

