"""Entropy-coded artifacts of every compressor that stores integer codes: the same codes in fewer bytes, the coded
bytes counted by the budget, and forged stream sizes refused."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from big2small.codec import Compressed
from big2small.errors import ArtifactError
from big2small.methods.big2small import codec_choice
from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.big2small.settings import RefinementSettings
from big2small.methods.kmeans import KMeansSharing
from big2small.methods.quant import UniformQuantizer
from big2small.rebuilding import rebuild_model
from tests.methods.big2small.test_big2small import NO_REFINEMENT, SHORT_REFINEMENT, trainer_factory
from tests.methods.roundtrip import round_trip


def peaked_model(seed: int = 0) -> torch.nn.Module:
    """A small CNN with Laplace-distributed weights, as trained networks have (codes far from uniform)."""
    return laplace_cnn(seed, 16, 32)


def laplace_cnn(seed: int, first: int, second: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, first, 3), torch.nn.ReLU(), torch.nn.Conv2d(first, second, 3),
                                torch.nn.Flatten(), torch.nn.Linear(second * 4 * 4, 10)).eval()
    with torch.no_grad():
        for module in model:
            if hasattr(module, "weight"):
                module.weight.copy_(torch.distributions.Laplace(0.0, 0.05).sample(module.weight.shape))
    return model


def weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")}


# k-means clusters from quantiles hold similar shares of the weights, so their indices code to little less than
# their width: its artifact is only never larger.
@pytest.mark.parametrize("make,gain", [(lambda coded: UniformQuantizer(bits=6, entropy_coding=coded), 1.15),
                                       (lambda coded: KMeansSharing(bits=5, entropy_coding=coded), 1.0)])
def test_coded_artifacts_hold_the_same_model_in_no_more_bytes(make, gain, tmp_path):
    model = peaked_model()
    (tmp_path / "fixed").mkdir(), (tmp_path / "coded").mkdir()
    fixed, rebuilt_fixed, ratio_fixed = round_trip(make(False), model, tmp_path / "fixed")
    coded, rebuilt_coded, ratio_coded = round_trip(make(True), model, tmp_path / "coded")
    assert not any("coding" in layer for layer in fixed.meta["layers"])
    assert ratio_coded >= gain * ratio_fixed
    assert any(layer.get("coding") == "rans" for layer in coded.meta["layers"]) == (gain > 1)
    for name, weight in weights(rebuilt_fixed).items():
        assert torch.equal(weight, rebuilt_coded.get_parameter(name))


@pytest.mark.parametrize("make", [lambda ratio: UniformQuantizer(target_ratio=ratio),
                                  lambda ratio: KMeansSharing(target_ratio=ratio)])
def test_the_mixed_precision_search_spends_the_coded_bytes(make, tmp_path):
    """At the same target, coded bytes buy more bits per weight: a lower weight error, the ratio still met."""
    model = peaked_model()
    (tmp_path / "fixed").mkdir(), (tmp_path / "coded").mkdir()
    fixed_method, coded_method = make(10.0), make(10.0)
    fixed_method.entropy_coding = False
    _, rebuilt_fixed, ratio_fixed = round_trip(fixed_method, model, tmp_path / "fixed")
    _, rebuilt_coded, ratio_coded = round_trip(coded_method, model, tmp_path / "coded")
    assert ratio_fixed >= 10.0 and ratio_coded >= 10.0

    def error(rebuilt):
        return sum(float(((rebuilt.get_parameter(n) - w) ** 2).sum()) for n, w in weights(model).items())

    assert error(rebuilt_coded) < 0.8 * error(rebuilt_fixed)


def forge(compressed: Compressed, edit) -> Compressed:
    forged = copy.deepcopy(compressed)
    edit(next(layer for layer in forged.meta["layers"] if "coding" in layer))
    return Compressed.from_bytes(forged.to_bytes())  # the checksum recomputed, as a forger would


@pytest.mark.parametrize("edit,message", [
    (lambda layer: layer.__setitem__("code_bytes", 10 ** 9), "not smaller than its"),
    (lambda layer: layer.__setitem__("code_bytes", layer["code_bytes"] - 1), "holds|words|histogram|payload"),
    (lambda layer: layer.pop("code_bytes"), "code_bytes|come together"),
    (lambda layer: layer.__setitem__("coding", "huffman"), "coding"),
])
def test_forged_stream_sizes_are_refused(edit, message):
    model = peaked_model()
    compressed = UniformQuantizer(bits=6).compress(copy.deepcopy(model))
    with pytest.raises(ArtifactError, match=message):
        rebuild_model(forge(compressed, edit), model)


def test_big2small_codes_are_coded_and_count_as_coded_bytes_in_the_budget(tmp_path):
    model = peaked_model()
    settings = dict(target_ratio=8.0, fit={"steps": 20}, refinement=NO_REFINEMENT)
    runs = {}
    for coded in (False, True):
        method = Big2SmallCompressor(**settings, storage={"entropy_coding": coded})
        compressed = method.compress(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path / str(coded)))
        data = compressed.to_bytes()
        rebuilt = rebuild_model(Compressed.from_bytes(data), model)
        original = 4 * sum(w.numel() for w in weights(model).values())
        runs[coded] = compressed, original / len(data), rebuilt
    fixed, coded = runs[False], runs[True]
    assert not any("code_coding" in layer for layer in fixed[0].meta["layers"])
    assert any(layer.get("code_coding") == "rans" for layer in coded[0].meta["layers"])
    assert fixed[1] >= 8.0 * 0.99 and coded[1] >= 8.0 * 0.99
    sizes = {name: w.numel() for name, w in weights(model).items()}

    def stored_bits(compressed):  # the code width of every weight, summed: more bits in the same bytes once coded
        return sum(bits * sizes[name] for name, bits in compressed.meta["code_bits"].items())

    assert stored_bits(coded[0]) > stored_bits(fixed[0])

    def error(rebuilt):
        return sum(float(((rebuilt.get_parameter(n) - w) ** 2).sum()) for n, w in weights(model).items())

    assert error(coded[2]) < error(fixed[2])
    layer = next(entry for entry in coded[0].meta["layers"] if "code_coding" in entry)
    forged = copy.deepcopy(coded[0])
    next(e for e in forged.meta["layers"] if e["name"] == layer["name"])["code_bytes"] = math.prod(layer["shape"])
    with pytest.raises(ArtifactError, match="not smaller"):
        rebuild_model(Compressed.from_bytes(forged.to_bytes()), model)


def test_the_choice_leaves_room_for_refined_codes(tmp_path):
    """Refinement moves codes, which changes their coded size: the codec choice keeps refinement.code_reserve of the
    budget for it, so an artifact refined as by default still meets the target."""
    model = peaked_model(1)
    method = Big2SmallCompressor(target_ratio=8.0, fit={"steps": 10}, input_shape=[1, 8, 8],
                                 refinement={**SHORT_REFINEMENT, "steps": 40})
    compressed = method.compress(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
    original = 4 * sum(w.numel() for w in weights(model).values())
    assert 8.0 <= original / len(compressed.to_bytes()) <= 8.0 / (1 - 2 * RefinementSettings().code_reserve)


@pytest.mark.parametrize("bits", [1, 3])
def test_rate_levels_trade_error_for_coded_bytes(bits):
    from big2small.methods.big2small.layer_codes import RATE_LEVELS, weight_codes

    torch.manual_seed(0)
    weight = torch.distributions.Laplace(0.0, 0.05).sample((32, 16, 3, 3))
    results = []
    for level in range(RATE_LEVELS + 1):
        codes = weight_codes(weight, bits, level)
        results.append((codes.stored(True)[1].numel(), float(((codes.values() - weight) ** 2).sum())))
    sizes, errors = zip(*results, strict=True)
    assert list(sizes) == sorted(sizes, reverse=True) and sizes[-1] < 0.9 * sizes[0]
    assert list(errors) == sorted(errors)


def test_rate_levels_are_checked():
    from big2small.errors import ConfigError

    with pytest.raises(ConfigError, match="rate_levels"):
        Big2SmallCompressor(storage={"rate_levels": 9})


def test_dead_zones_reach_rates_below_nearest_rounding_and_keep_their_codes_through_refinement():
    from big2small.methods.big2small.layer_codes import (
        DEAD_ZONES,
        NEAREST,
        RATE_LEVELS,
        TERNARY,
        weight_codes_at_levels,
    )
    from big2small.methods.big2small.rounding_offsets import RoundingOffsets

    torch.manual_seed(0)
    weight = torch.distributions.Laplace(0.0, 0.05).sample((32, 16, 3, 3))
    levels = list(range(RATE_LEVELS + 1))
    nearest = weight_codes_at_levels(weight, TERNARY, levels)
    zoned = weight_codes_at_levels(weight, TERNARY, levels, DEAD_ZONES)
    fewest = min(codes.stored_size(True)[1] for codes in nearest.values())
    assert min(codes.stored_size(True)[1] for codes in zoned.values()) < 0.8 * fewest
    # Level 0 is the least-error codes either way; the dead zone only changes the priced levels.
    assert torch.equal(zoned[0].codes, nearest[0].codes)
    assert any(not torch.equal(zoned[level].codes, nearest[level].codes) for level in levels[1:])
    # A dead-zone code is never larger in magnitude than the nearest code at its scale.
    deepest = zoned[levels[-1]]
    ratios = weight.reshape(32, -1) / deepest.scale.float()[:, None]
    assert (deepest.codes.reshape(32, -1).abs() <= torch.round(ratios).abs().clamp(max=1)).all()
    # The refinement's roundings start at the stored codes, not at the nearest ones.
    start = RoundingOffsets({"w": weight}, {"w": deepest}).codes({"w": deepest})["w"]
    assert torch.equal(start.codes, deepest.codes)
    assert NEAREST in DEAD_ZONES


def test_refined_zeros_stay_zeros_only_in_mostly_zero_layers():
    from big2small.methods.big2small.layer_codes import TERNARY, WeightCodes
    from big2small.methods.big2small.rounding_offsets import RoundingOffsets

    torch.manual_seed(0)
    weight = torch.randn(8, 64) * 0.1
    scale = torch.full((8,), 0.1).half()
    sparse = WeightCodes(torch.where(torch.rand(8, 64) < 0.8, 0, torch.sign(weight)).long(), scale, TERNARY)
    dense = WeightCodes(torch.where(torch.rand(8, 64) < 0.2, 0, torch.sign(weight)).long(), scale, TERNARY)
    for coded, zeros_move in ((sparse, False), (dense, True)):
        rounding = RoundingOffsets({"w": weight}, {"w": coded}, keep_zeros_above=0.5)
        with torch.no_grad():
            rounding.offsets[0].fill_(5.0)  # push every code one level up
        moved = rounding.codes({"w": coded})["w"].codes
        zeros = coded.codes == 0
        assert bool((moved[zeros] != 0).any()) == zeros_move
        assert (moved[~zeros] >= coded.codes[~zeros]).all()
    free = RoundingOffsets({"w": weight}, {"w": sparse}, keep_zeros_above=1.0)
    with torch.no_grad():
        free.offsets[0].fill_(5.0)
    assert (free.codes({"w": sparse})["w"].codes[sparse.codes == 0] != 0).any()


def test_the_dead_zone_switch_changes_the_codes_and_both_meet_the_target(tmp_path):
    from big2small.errors import ConfigError

    model = laplace_cnn(0, 40, 80)  # large enough for 24x
    original = 4 * sum(w.numel() for w in weights(model).values())
    errors = {}
    for dead_zone in (True, False):
        method = Big2SmallCompressor(target_ratio=24.0, fit={"steps": 10}, input_shape=[1, 8, 8],
                                     storage={"dead_zone": dead_zone}, refinement={"enabled": False})
        compressed = method.compress(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path / str(dead_zone)))
        assert original / len(compressed.to_bytes()) >= 24.0
        rebuilt = weights(rebuild_model(compressed, model))
        errors[dead_zone] = sum(float(((rebuilt[n] - w) ** 2).sum()) for n, w in weights(model).items())
    assert errors[True] != errors[False]
    with pytest.raises(ConfigError, match="dead_zone"):
        Big2SmallCompressor(storage={"dead_zone": "yes"})


def test_refined_codes_that_outgrow_the_budget_are_chosen_again_within_it(tmp_path, caplog):
    """Refinement that moves many zero codes (here a large code_lr) makes them cost more coded bytes than chosen;
    the choice is made again for that growth and, when that is over too, within the budget with the zeros of
    mostly-zero layers kept, so the artifact still lands at its target."""
    model = laplace_cnn(0, 40, 80)  # large enough that the header's settings take a small share of its bytes
    original = 4 * sum(w.numel() for w in weights(model).values())
    method = Big2SmallCompressor(target_ratio=24.0, fit={"steps": 10}, input_shape=[1, 8, 8],
                                 refinement={**SHORT_REFINEMENT, "steps": 30, "code_lr": 0.3, "rate_aware": False})
    with caplog.at_level("INFO", logger="big2small.methods.big2small.compressor"):
        compressed = method.compress(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
    assert "choosing again" in caplog.text and "keeping mostly-zero layers' zeros" in caplog.text
    assert original / len(compressed.to_bytes()) >= 24.0 * 0.95


def test_a_rate_aware_refinement_lands_on_the_target_without_choosing_again(tmp_path, caplog):
    """The same refinement as above, each code move paid for in coded bits: the refined codes stay within the bytes
    the target leaves them, so the first refinement is the last, and the artifact meets the target."""
    model = laplace_cnn(0, 40, 80)  # large enough that the header's settings take a small share of its bytes
    original = 4 * sum(w.numel() for w in weights(model).values())
    method = Big2SmallCompressor(target_ratio=24.0, fit={"steps": 10}, input_shape=[1, 8, 8],
                                 refinement={**SHORT_REFINEMENT, "steps": 30, "code_lr": 0.1})
    with caplog.at_level("INFO", logger="big2small.methods.big2small.compressor"):
        compressed = method.compress(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
    assert "choosing again" not in caplog.text
    assert original / len(compressed.to_bytes()) >= 24.0


def test_a_ratio_no_inr_reaches_is_reached_by_codes_or_refused_before_refinement(tmp_path):
    from big2small.errors import ConfigError

    model = laplace_cnn(0, 64, 128)
    original = 4 * sum(w.numel() for w in weights(model).values())
    settings = {"fit": {"steps": 5}, "input_shape": [1, 8, 8], "refinement": NO_REFINEMENT}
    with pytest.raises(ConfigError, match="out of reach"):  # the INRs alone: outliers and stats take too much
        Big2SmallCompressor(target_ratio=70.0, storage={"layer_choice": "inr"}, **settings).compress(
            copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path / "inr"))
    compressed = Big2SmallCompressor(target_ratio=70.0, **settings).compress(
        copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path / "codes"))
    assert original / len(compressed.to_bytes()) >= 70.0
    assert {row["stored_as"] for row in compressed.layer_stats.values()} == {"codes"}
    with pytest.raises(ConfigError, match="fewest-byte codes gives"):
        Big2SmallCompressor(target_ratio=200.0, **settings).compress(
            copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path / "far"))


def quiet_kernel_cnn() -> torch.nn.Module:
    """laplace_cnn with half the kernels nearly silent, as some are in trained convs: their codes are zeros
    together."""
    model = laplace_cnn(0, 40, 80)
    with torch.no_grad():
        for module in model:
            if isinstance(module, torch.nn.Conv2d):
                quiet = torch.rand(module.weight.shape[:2], generator=torch.Generator().manual_seed(2)) < 0.5
                module.weight.mul_(torch.where(quiet, 0.01, 1.0)[:, :, None, None])
    return model


def without_small_layer_floor(monkeypatch) -> None:
    """These tests are about the bytes context coding saves; quiet_kernel_cnn's first conv (360 weights) would
    otherwise hold 4 bits by the small-layer floor (tested in test_big2small.py), which leaves those bytes no
    layer to buy at 24x."""
    monkeypatch.setattr(codec_choice, "SMALL_TARGET_BITS", 0)


def test_context_coded_codes_hold_the_same_model_in_fewer_bytes(tmp_path):
    model = quiet_kernel_cnn()
    runs = {}
    for context in (True, False):
        method = Big2SmallCompressor(target_ratio=24.0, fit={"steps": 10}, input_shape=[1, 8, 8],
                                     storage={"context_coding": context}, refinement={"enabled": False})
        compressed = method.compress(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path / str(context)))
        data = compressed.to_bytes()
        runs[context] = compressed, len(data), weights(rebuild_model(Compressed.from_bytes(data), model))
    assert "context" in {layer.get("code_coding") for layer in runs[True][0].meta["layers"]}
    assert runs[True][1] < runs[False][1]
    for name, weight in runs[False][2].items():
        assert torch.equal(weight, runs[True][2][name])


def test_a_budget_that_counts_context_coded_codes_buys_a_lower_error_at_the_same_target(tmp_path, monkeypatch):
    from big2small.errors import ConfigError

    without_small_layer_floor(monkeypatch)

    model = quiet_kernel_cnn()
    original = 4 * sum(w.numel() for w in weights(model).values())
    errors, codings = {}, {}
    for context in (True, False):
        method = Big2SmallCompressor(target_ratio=24.0, fit={"steps": 10}, input_shape=[1, 8, 8],
                                     storage={"context_coding": context, "context_budget": context},
                                     refinement={"enabled": False})
        compressed = method.compress(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path / str(context)))
        data = compressed.to_bytes()
        assert original / len(data) >= 24.0
        rebuilt = weights(rebuild_model(Compressed.from_bytes(data), model))
        errors[context] = sum(float(((rebuilt[n] - w) ** 2).sum()) for n, w in weights(model).items())
        codings[context] = {layer.get("code_coding") for layer in compressed.meta["layers"]}
    assert "context" in codings[True] and "context" not in codings[False]
    assert errors[True] < errors[False]
    with pytest.raises(ConfigError, match="context_coding"):
        Big2SmallCompressor(storage={"context_coding": "yes"})
    with pytest.raises(ConfigError, match="context_budget"):
        Big2SmallCompressor(storage={"context_budget": 1})


@pytest.mark.parametrize("spend_on", ["context_refinement", "context_budget"])
def test_refined_codes_that_spend_the_context_saved_bytes_stay_within_the_target(spend_on, tmp_path, monkeypatch):
    """Spending the bytes the context-coded streams save, on refined moves (the refinement's bit limit grows by the
    share they save) or on codes (the choice counts them; the bit limit follows that share as the codes move), the
    refined artifact takes more of the bytes the target allows than the one whose saving lifts the ratio, and still
    stays within them."""
    from big2small.errors import ConfigError

    without_small_layer_floor(monkeypatch)
    model = quiet_kernel_cnn()
    original = 4 * sum(w.numel() for w in weights(model).values())
    sizes = {}
    for spend in (True, False):
        method = Big2SmallCompressor(target_ratio=24.0, fit={"steps": 10}, input_shape=[1, 8, 8],
                                     storage={spend_on: spend},
                                     refinement={**SHORT_REFINEMENT, "steps": 30, "code_lr": 0.1})
        compressed = method.compress(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path / str(spend)))
        sizes[spend] = len(compressed.to_bytes())
        assert "context" in {layer.get("code_coding") for layer in compressed.meta["layers"]}
    assert sizes[False] < sizes[True] <= original / 24.0
    with pytest.raises(ConfigError, match="context_refinement and context_budget"):
        Big2SmallCompressor(storage={"context_refinement": True, "context_budget": True})


@pytest.mark.parametrize("make", [lambda context: UniformQuantizer(bits=3, context_coding=context),
                                  lambda context: KMeansSharing(bits=2, context_coding=context)])
def test_quant_and_kmeans_store_quiet_kernels_context_coded_in_fewer_bytes(make, tmp_path):
    """Kernels of codes at the level nearest zero together code to fewer bytes under their kernel's context, and
    rebuild the same weights."""
    model = quiet_kernel_cnn()
    (tmp_path / "static").mkdir(), (tmp_path / "context").mkdir()
    static, rebuilt_static, ratio_static = round_trip(make(False), model, tmp_path / "static")
    context, rebuilt_context, ratio_context = round_trip(make(True), model, tmp_path / "context")
    assert "context" not in {layer.get("coding") for layer in static.meta["layers"]}
    assert "context" in {layer.get("coding") for layer in context.meta["layers"]}
    assert ratio_context > ratio_static
    for name, weight in weights(rebuilt_static).items():
        assert torch.equal(weight, rebuilt_context.get_parameter(name))


def test_a_context_coding_claimed_for_wide_codes_is_refused():
    model = peaked_model()
    compressed = UniformQuantizer(bits=6).compress(copy.deepcopy(model))
    with pytest.raises(ArtifactError, match="never context-coded"):
        rebuild_model(forge(compressed, lambda layer: layer.__setitem__("coding", "context")), model)
