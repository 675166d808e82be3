import copy
import dataclasses
import gc
import logging
import math

import lightning as L
import pytest
import torch
from torch import nn

from big2small.errors import ConfigError
from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.big2small.matching import observing
from big2small.methods.big2small.refinement import PoolByStep, matched_modules
from big2small.methods.big2small.settings import RefinementSettings
from big2small.methods.big2small.synthesis import native_bf16, statistics_gap, synthetic_inputs
from big2small.methods.registry import rebuild
from tests.conftest import tiny_cnn
from tests.methods.big2small.test_big2small import trainer_factory


def _bn_gap(model, images):
    gaps = []
    hooks = [m.register_forward_pre_hook(lambda m, a: gaps.append(float(statistics_gap(a[0], m))))
             for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return sum(gaps)


def cnn_with_known_statistics() -> nn.Module:
    """A tiny CNN (eval mode) whose BatchNorm running statistics are those of a "training set" the generator never
    sees: 256 images with mean 0.5 and std 2."""
    model = tiny_cnn()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model.train()(0.5 + 2 * torch.randn(256, 1, 8, 8, generator=torch.Generator().manual_seed(3)))
    return model.eval()


@pytest.mark.parametrize("precision, schedule", [("32", "constant"), ("bf16", "constant"), ("32", "cosine")])
def test_bn_statistics_inputs_match_the_running_statistics_better_than_noise(tmp_path, precision, schedule):
    model = cnn_with_known_statistics()
    noise = synthetic_inputs(model, [1, 8, 8], RefinementSettings(inputs="noise", num_inputs=16), seed=0,
                             trainer_factory=trainer_factory(tmp_path))
    settings = RefinementSettings(num_inputs=16, input_steps=100, input_precision=precision, input_schedule=schedule)
    matched = synthetic_inputs(model, [1, 8, 8], settings, seed=0, trainer_factory=trainer_factory(tmp_path))
    assert matched.dtype == torch.float32
    assert _bn_gap(model, matched) < 0.5 * _bn_gap(model, noise)
    assert all(p.requires_grad for p in model.parameters())  # the model is handed back as it was


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_first_input_step_moves_every_pixel_by_input_lr(tmp_path, schedule):
    """Adam's first step moves each pixel by its lr (the sign of its gradient), under either schedule."""
    model = tiny_cnn().eval()
    noise = synthetic_inputs(model, [1, 8, 8], RefinementSettings(inputs="noise", num_inputs=4), seed=0,
                             trainer_factory=trainer_factory(tmp_path))
    for lr in (0.05, 0.2):
        settings = RefinementSettings(num_inputs=4, input_steps=1, input_lr=lr, input_schedule=schedule)
        moved = synthetic_inputs(model, [1, 8, 8], settings, seed=0, trainer_factory=trainer_factory(tmp_path))
        assert float((moved - noise).abs().max()) == pytest.approx(lr, rel=1e-3)
    with pytest.raises(ConfigError, match="input_schedule"):
        RefinementSettings(input_schedule="linear")
    with pytest.raises(ConfigError, match="input_lr"):
        RefinementSettings(input_lr=0)


def test_a_class_weight_makes_the_synthetic_images_cover_their_assigned_classes(tmp_path):
    model = tiny_cnn()
    with torch.no_grad():
        model.train()(torch.randn(256, 1, 8, 8, generator=torch.Generator().manual_seed(3)))
        model.classifier.weight.mul_(30)  # logits that inputs can move (a random head's are nearly constant)
    model.eval()

    def assigned_share(class_weight: float) -> float:
        settings = RefinementSettings(num_inputs=20, input_steps=60, class_weight=class_weight)
        images = synthetic_inputs(model, [1, 8, 8], settings, seed=0, trainer_factory=trainer_factory(tmp_path))
        with torch.no_grad():
            predicted = model(images).argmax(dim=1)
        return float((predicted == torch.arange(20) % 10).float().mean())  # image i is assigned class i mod 10

    assert assigned_share(1.0) >= 0.4 and assigned_share(0.0) <= 0.2  # chance: 0.1


def _smooth_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(48, 96), nn.BatchNorm1d(96), nn.ReLU(), nn.Linear(96, 32))
    o, i = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 48), indexing="ij")
    with torch.no_grad():
        model[0].weight.copy_(torch.sin(4 * o + 3 * i) / 7)
        model[3].weight.copy_(torch.cos(3 * torch.linspace(0, 1, 32)[:, None] * torch.linspace(0, 1, 96)[None]) / 10)
    return model.eval()


@pytest.mark.parametrize("feature_weight", [0.0, 1.0])
def test_refinement_brings_the_rebuilt_outputs_closer_to_the_original(tmp_path, feature_weight):
    model = _smooth_mlp()
    x = torch.randn(256, 48, generator=torch.Generator().manual_seed(1))

    def output_error(refine: bool) -> float:
        # Fixed widths (no target_ratio): the INRs do not change with the artifact header's size.
        compressor = Big2SmallCompressor(target_ratio=None, inr={"width": 16}, fit={"steps": 20, "lr": 3e-3},
                                         input_shape=[48],
                                         storage={"layer_choice": "inr"},
                                         refinement={"enabled": refine, "inputs": "noise", "steps": 60, "lr": 3e-3,
                                                     "num_inputs": 64, "feature_weight": feature_weight,
                                                     "affine_lr": 0})  # the INRs alone, at the same widths
        compressed = compressor.fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
        rebuilt = rebuild(compressed, copy.deepcopy(model)).eval()
        with torch.no_grad():
            return float((rebuilt(x) - model(x)).pow(2).mean() / model(x).var())

    assert output_error(refine=True) < 0.7 * output_error(refine=False)


def test_observing_collects_the_named_layer_outputs_in_the_order_asked():
    model = _smooth_mlp()
    x = torch.randn(4, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), observing(model, ["3", "0"]) as outputs:
        model(x)
    assert [o.shape[1] for o in outputs] == [32, 96]
    torch.testing.assert_close(outputs[1], model[0](x))
    assert not model[0]._forward_hooks  # the hooks are gone afterwards


class RecordingImages:
    """A data module's calibration_images that records how many images each call asks for."""

    def __init__(self):
        self.asked = []

    def calibration_images(self, count):
        self.asked.append(count)
        return torch.randn(count, 48, generator=torch.Generator().manual_seed(4))


def test_refinement_on_real_images_marks_the_compressor_as_using_data(tmp_path):
    settings = dict(target_ratio=3, fit={"steps": 5}, input_shape=[48],
                    refinement={"enabled": True, "inputs": "data", "steps": 3, "num_inputs": 16,
                                "light_above_bits": None})
    assert Big2SmallCompressor(**settings).uses_data
    assert not Big2SmallCompressor(**{**settings, "refinement": {"enabled": True}}).uses_data
    assert not Big2SmallCompressor(**{**settings, "refinement": {"enabled": False, "inputs": "data"}}).uses_data
    with pytest.raises(ConfigError, match="needs a data module"):
        Big2SmallCompressor(**settings).fit(_smooth_mlp(), trainer_factory=trainer_factory(tmp_path))
    images = RecordingImages()
    compressed = Big2SmallCompressor(**settings).fit(_smooth_mlp(), data=images, trainer_factory=trainer_factory(tmp_path))
    assert images.asked == [16] and compressed.meta["replaced"]


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class _Pair(nn.Module):
    """Returns two tensors: its layer is matched at its own output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 32, 1)

    def forward(self, x):
        y = self.conv(x)
        return y, -y


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block, self.pair = nn.Conv2d(1, 32, 3, padding=1), _Block(), _Pair()
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        x = self.block(self.stem(x))
        x = self.pair(x)[0]
        return self.head(x.mean(dim=(2, 3)))


def test_blocks_are_the_modules_holding_the_layers_where_they_return_one_tensor():
    model = _Net().eval()
    layers = ["stem", "block.conv", "pair.conv", "head"]
    example = torch.randn(2, 1, 6, 6)
    assert matched_modules(model, layers, "layers", example) == sorted(layers)
    assert matched_modules(model, layers, "blocks", example) == ["block", "head", "pair.conv", "stem"]


def test_refinement_matching_blocks_refines_otherwise_and_round_trips(tmp_path):
    model = _Net().eval()

    def fitted(match: str):
        compressor = Big2SmallCompressor(target_ratio=4, fit={"steps": 5}, input_shape=[1, 6, 6],
                                         refinement={"inputs": "noise", "steps": 30, "num_inputs": 8, "batch_size": 4,
                                                     "match": match, "code_lr": 0.1})
        return compressor.fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))

    layers, blocks = fitted("layers"), fitted("blocks")
    assert blocks.config["refinement"]["match"] == "blocks"
    assert layers.tensors.keys() == blocks.tensors.keys()
    assert any(not torch.equal(layers.tensors[k], blocks.tensors[k]) for k in layers.tensors)  # other roundings
    rebuilt = rebuild(blocks, copy.deepcopy(model))
    assert torch.isfinite(rebuilt(torch.randn(2, 1, 6, 6))).all()


def test_each_refinement_step_draws_its_batch_from_the_pool_of_its_share_of_the_steps():
    def draws():  # each iteration of a sampler draws anew: one sampler per use
        return torch.utils.data.RandomSampler(range(4), replacement=True, num_samples=6 * 2,
                                              generator=torch.Generator().manual_seed(0))

    indices = list(PoolByStep(draws(), pool_size=4, batch=2, steps=6, pools=3))
    assert len(indices) == 12
    for step in range(6):
        pool = step // 2  # steps 0-1 pool 0, 2-3 pool 1, 4-5 pool 2
        assert all(4 * pool <= i < 4 * pool + 4 for i in indices[2 * step : 2 * step + 2]), step
    assert list(PoolByStep(draws(), pool_size=4, batch=2, steps=6, pools=1)) == list(draws())  # the plain draws


def test_refreshed_inputs_are_fresh_pools_and_the_fit_round_trips(tmp_path, monkeypatch):
    from big2small.methods.big2small import compressor as compressor_module

    made = []
    real = compressor_module.synthetic_inputs

    def recording(model, shape, settings, seed, trainer_factory):
        images = real(model, shape, settings, seed, trainer_factory)
        made.append(images)
        return images

    monkeypatch.setattr(compressor_module, "synthetic_inputs", recording)
    model = tiny_cnn()
    compressor = Big2SmallCompressor(target_ratio=4, fit={"steps": 5}, input_shape=[1, 8, 8],
                                     refinement={"steps": 4, "input_steps": 2, "num_inputs": 8, "batch_size": 4,
                                                 "refresh": 2, "light_above_bits": None})
    compressed = compressor.fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
    assert len(made) == 2 and all(len(pool) == 8 for pool in made)
    assert not torch.allclose(made[0], made[1])  # each pool from its own seed
    assert torch.isfinite(rebuild(compressed, copy.deepcopy(model))(torch.randn(2, 1, 8, 8))).all()


def test_the_progress_bar_names_what_is_refined():
    from big2small.methods.big2small.refinement import refined_label

    assert refined_label(False, True, "bn_stats") == "refining codes on synthetic inputs"
    assert refined_label(True, False, "noise") == "refining INRs on synthetic inputs"
    assert refined_label(True, True, "data") == "refining INRs and codes on training images"


def test_the_teachers_outputs_kept_once_refine_as_the_teacher_run_on_every_batch(tmp_path, monkeypatch):
    from big2small.methods.big2small import refinement

    model = _Net().eval()

    def fitted():
        compressor = Big2SmallCompressor(target_ratio=4, fit={"steps": 5}, input_shape=[1, 6, 6],
                                         refinement={"inputs": "noise", "steps": 30, "num_inputs": 8, "batch_size": 4,
                                                     "code_lr": 0.1})
        return compressor.fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))

    kept = fitted()
    monkeypatch.setattr(refinement, "TEACHER_CACHE_BYTES", 0)  # too little memory to keep them: run alongside
    alongside = fitted()
    assert kept.tensors.keys() == alongside.tensors.keys()
    # A conv's output for one input moves in its last bits with the other inputs of its batch (the kept outputs were
    # computed in other batches), so the two refinements agree up to that: nearly every rebuilt value the same.
    ours, theirs = (rebuild(c, copy.deepcopy(model)).state_dict() for c in (kept, alongside))
    names = [name for name, value in ours.items() if value.is_floating_point()]
    same = torch.cat([(ours[name] == theirs[name]).reshape(-1) for name in names])
    assert same.float().mean() >= 0.99
    for name in names:
        assert (ours[name] - theirs[name]).abs().max() <= 0.05 * ours[name].abs().max(), name


def _fit_log(tmp_path, caplog, **refinement) -> str:
    """The log of a tiny CNN's fit at about 10 bits per weight with these refinement settings."""
    compressor = Big2SmallCompressor(target_ratio=3, fit={"steps": 5}, input_shape=[1, 8, 8],
                                     refinement={"num_inputs": 8, "batch_size": 4, **refinement})
    with caplog.at_level(logging.INFO, logger="big2small"):
        compressor.fit(tiny_cnn(), trainer_factory=trainer_factory(tmp_path))
    return caplog.text


@pytest.mark.parametrize(("light_above_bits", "light"), [(3.0, True), (1000.0, False), (None, False)])
def test_a_plan_of_many_bits_per_weight_is_refined_on_the_light_budget(tmp_path, caplog, light_above_bits, light):
    log = _fit_log(tmp_path, caplog, steps=6, input_steps=10, light_above_bits=light_above_bits)
    assert ("refining on 8 inputs, 6 input steps (cosine from lr 0.3) and 5 steps" in log) == light


@pytest.mark.parametrize(("heavy_below_bits", "heavy"), [(1000.0, True), (0.01, False), (None, False)])
def test_a_plan_of_few_bits_per_weight_is_refined_for_more_steps(tmp_path, caplog, heavy_below_bits, heavy):
    log = _fit_log(tmp_path, caplog, steps=2, input_steps=2, light_above_bits=None, heavy_below_bits=heavy_below_bits)
    assert ("(< refinement.heavy_below_bits 1000): refining for 5 steps, layer outputs weighted 3" in log) == heavy


@pytest.mark.parametrize(("mix_below_bits", "mixed"), [(1000.0, True), (0.01, False), (None, False)])
def test_a_plan_of_few_bits_per_weight_sees_its_inputs_mixed(tmp_path, caplog, mix_below_bits, mixed):
    log = _fit_log(tmp_path, caplog, steps=2, input_steps=2, light_above_bits=None, mix_below_bits=mix_below_bits)
    assert ("(< refinement.mix_below_bits 1000): its inputs are seen as mixup" in log) == mixed


def test_plans_under_mix_below_bits_take_the_mixed_views_unless_views_names_one():
    settings = RefinementSettings(mix_below_bits=3.0, heavy_below_bits=1.3, light_above_bits=3.0)
    assert [settings.for_bits_per_weight(bits).views for bits in (0.9, 1.9, 3.6)] == ["mixup", "mixup", "none"]
    assert RefinementSettings(views="flip_shift").for_bits_per_weight(0.9).views == "flip_shift"  # a set view stays
    assert RefinementSettings(mixed_views="cutmix").for_bits_per_weight(1.9).views == "cutmix"
    assert RefinementSettings(mix_below_bits=None).for_bits_per_weight(0.9).views == "none"


def test_the_heavy_budget_multiplies_the_steps_and_the_layer_weight_of_coarse_plans_only():
    settings = RefinementSettings(num_inputs=256, input_steps=100, steps=600, heavy_below_bits=1.3)
    heavy = settings.for_bits_per_weight(0.9)
    assert (heavy.num_inputs, heavy.input_steps, heavy.steps, heavy.batch_size) == (256, 100, 1500, 32)
    assert heavy.feature_weight == pytest.approx(3.0)
    assert RefinementSettings(feature_weight=0.0, heavy_below_bits=1.3).for_bits_per_weight(0.9).feature_weight == 0
    assert settings.for_bits_per_weight(1.9).steps == 600 and settings.for_bits_per_weight(1.9).feature_weight == 1
    assert RefinementSettings(heavy_below_bits=None).for_bits_per_weight(0.5).steps == 600
    with pytest.raises(ConfigError, match="heavy_below_bits"):
        RefinementSettings(heavy_below_bits=4.0, light_above_bits=3.0)


def test_the_light_budget_shortens_the_synthesis_on_a_cosine_schedule_and_the_steps_and_rounds_at_once():
    settings = RefinementSettings(num_inputs=256, input_steps=100, steps=600, light_above_bits=3.0)
    light = settings.for_bits_per_weight(3.6)
    assert (light.num_inputs, light.input_steps, light.steps, light.batch_size) == (256, 60, 500, 32)
    assert (light.input_lr, light.input_schedule) == (pytest.approx(0.3), "cosine")
    assert light.soft_share == 0 and settings.for_bits_per_weight(1.9).soft_share == 0.8  # fine codes round at once
    assert settings.for_bits_per_weight(1.9).steps == 600 and settings.for_bits_per_weight(1.9).feature_weight == 1
    whole = RefinementSettings(light_above_bits=None)
    assert whole.for_bits_per_weight(32.0) == dataclasses.replace(whole, adversarial_step=0.0)


def test_the_refined_1d_parameters_are_stored_counted_and_rebuilt(tmp_path):
    from big2small.codec import Compressed
    from big2small.errors import ArtifactError
    from big2small.methods.big2small.artifact import tuned_names
    from big2small.rebuilding import rebuild_model

    model = tiny_cnn()
    short = {"steps": 20, "input_steps": 3, "num_inputs": 16, "batch_size": 8, "light_above_bits": None}

    def fit(name, **refinement):
        return Big2SmallCompressor(target_ratio=4, fit={"steps": 3}, input_shape=[1, 8, 8],
                                   refinement={**short, **refinement}).fit(
            given, trainer_factory=trainer_factory(tmp_path / name))

    given = copy.deepcopy(model)
    tuned = fit("tuned", affine_lr=0.05)  # their changes at refinement.affine_bits (6)
    # The refinement's student and teacher share the given model's weights; the model is left as it was.
    for name, value in model.state_dict().items():
        assert torch.equal(given.state_dict()[name], value), name
    assert all(p.requires_grad and p.grad is None for p in given.parameters())
    own = fit("own", affine_lr=0)
    half = fit("half", affine_lr=0.05, affine_bits=None)  # every tuned value in fp16
    names = tuned_names(model, tuned.meta["replaced"])
    count = sum(model.get_parameter(name).numel() for name in names)
    assert names and tuned.meta["tuned"] == count == half.meta["tuned"] and tuned.meta["tuned_bits"] == 6
    assert tuned.tensors["tuned_levels"].numel() == math.ceil(count * 6 / 8) and tuned.tensors["tuned_scales"].numel() == len(names)
    assert "tuned" not in tuned.tensors and half.tensors["tuned"].numel() == count and "tuned_bits" not in half.meta
    assert not any(key.startswith("tuned") for key in [*own.tensors, *own.meta])  # the model's own cost nothing
    original = 4 * sum(model.get_parameter(name).numel() for name in tuned.meta["replaced"])
    assert original / len(tuned.to_bytes()) >= 4  # the tuned values are within the target's bytes

    def rebuilt_values(compressed):
        rebuilt = rebuild(Compressed.from_bytes(compressed.to_bytes()), copy.deepcopy(model))
        return torch.cat([rebuilt.get_parameter(name).detach().reshape(-1) for name in names])

    own_values = torch.cat([model.get_parameter(name).detach().reshape(-1) for name in names])
    assert torch.equal(rebuilt_values(half), half.tensors["tuned"].float())
    assert not torch.equal(rebuilt_values(tuned), own_values)
    assert torch.equal(rebuilt_values(own), own_values)

    forged = Compressed.from_bytes(tuned.to_bytes())
    forged.meta["tuned"] = count + 1
    with pytest.raises(ArtifactError, match="tuned"):
        rebuild_model(forged, model)
    for key, value in (("tuned_bits", 9), ("tuned_bits", "6")):
        forged = Compressed.from_bytes(tuned.to_bytes())
        forged.meta[key] = value
        with pytest.raises(ArtifactError, match="tuned_bits"):
            rebuild_model(forged, model)
    negative = Compressed.from_bytes(tuned.to_bytes())
    negative.tensors["tuned_scales"] = -negative.tensors["tuned_scales"].abs() - 1
    with pytest.raises(ArtifactError, match="tuned_scales"):
        rebuild_model(negative, model)
    for compressed, key in ((tuned, "tuned_levels"), (half, "tuned")):
        short_stream = Compressed.from_bytes(compressed.to_bytes())
        short_stream.tensors[key] = short_stream.tensors[key][:-1]
        with pytest.raises(ValueError, match="tuned values|packed bytes"):
            rebuild(short_stream, copy.deepcopy(model))


def test_input_precision_takes_32_bf16_or_auto_and_auto_is_bf16_only_where_the_device_computes_it():
    with pytest.raises(ConfigError, match="input_precision"):
        RefinementSettings(input_precision="fp8")
    assert RefinementSettings(input_precision=32).input_precision == "32"
    assert not native_bf16(torch.device("meta"))


def test_a_refinement_in_bf16_brings_the_rebuilt_outputs_close_as_one_in_fp32_does(tmp_path):
    """The refined network's pass under bf16 autocast (the codes, the loss and the optimiser in fp32) moves the
    roundings as the fp32 pass does, by other arithmetic: each cuts the output error of the unrefined codes to
    under a quarter."""
    model = tiny_cnn().eval()
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    def output_error(refinement: dict) -> float:
        compressor = Big2SmallCompressor(target_ratio=16, fit={"steps": 5}, input_shape=[1, 8, 8],
                                         refinement={"inputs": "noise", "steps": 40, "num_inputs": 32,
                                                     "code_lr": 0.05, **refinement})
        compressed = compressor.fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
        rebuilt = rebuild(compressed, copy.deepcopy(model)).eval()
        with torch.no_grad():
            return float((rebuilt(x) - model(x)).pow(2).mean() / model(x).var())

    unrefined = output_error({"enabled": False})
    fp32, bf16 = output_error({"precision": "32"}), output_error({"precision": "bf16"})
    assert fp32 < 0.25 * unrefined and bf16 < 0.25 * unrefined and bf16 != fp32
    with pytest.raises(ConfigError, match="refinement.precision"):
        RefinementSettings(precision="fp8")
    assert RefinementSettings(precision=32).precision == "32"


def test_relative_mse_divides_by_the_batch_variance_its_row_sums_give():
    from big2small.methods.big2small.matching import batch_variances, input_sums, relative_mse

    torch.manual_seed(0)
    wanted = [3.0 + 0.5 * torch.randn(6, 4, 5, 5), torch.randn(6, 10)]  # a mean far from 0 must not cancel away
    sums = torch.stack([input_sums(outputs) for outputs in wanted])
    variances = batch_variances(sums, [100, 10])
    torch.testing.assert_close(variances, torch.stack([outputs.var() for outputs in wanted]), rtol=1e-6, atol=0)
    got = wanted[0] + 0.1 * torch.randn(6, 4, 5, 5)
    expected = ((got - wanted[0]) ** 2).reshape(6, -1).mean(dim=1) / wanted[0].var()
    torch.testing.assert_close(relative_mse(got, wanted[0], variances[0]), expected, rtol=1e-5, atol=0)
    # Kept rows gathered later give the same variances as the rows computed on their own.
    rows = torch.tensor([4, 1, 1])
    torch.testing.assert_close(batch_variances(sums[:, rows], [100, 10]),
                               torch.stack([outputs[rows].var() for outputs in wanted]), rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", [(6, 3, 5, 4), (7, 5), (4, 2, 3, 3, 3)])
def test_channel_moments_are_the_batch_mean_and_biased_variance_per_channel(shape):
    from big2small.methods.big2small.synthesis import channel_moments

    x = 2.0 + 3.0 * torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, var = channel_moments(x)
    dims = [0, *range(2, len(shape))]
    want_var, want_mean = torch.var_mean(x, dim=dims, unbiased=False)
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(var, want_var)


@pytest.mark.parametrize("bits", [1, 9, 6.5, True])
def test_affine_bits_is_2_to_8_or_null(bits):
    with pytest.raises(ConfigError, match="affine_bits"):
        RefinementSettings(affine_bits=bits)
    assert RefinementSettings(affine_bits=None).affine_bits is None


def test_compressing_leaves_no_trainer_or_module_alive_for_the_collector_to_find(tmp_path):
    """Lightning's trainers and modules hold each other in cycles, with the teacher's outputs and the inputs; each
    phase that runs trainers frees the earlier ones, and compress the last (process_memory.release_garbage)."""
    compressor = Big2SmallCompressor(target_ratio=4.0, fit={"steps": 5}, input_shape=[1, 8, 8],
                                     refinement={"steps": 3, "input_steps": 3, "num_inputs": 8, "batch_size": 4})
    gc.collect()
    gc.disable()  # as while the collector's thresholds are not reached
    try:
        compressed = compressor.compress(tiny_cnn().eval(), trainer_factory=trainer_factory(tmp_path))
        alive = [type(o).__name__ for o in gc.get_objects() if isinstance(o, (L.Trainer, L.LightningModule))]
    finally:
        gc.enable()
    assert {"input_synthesis", "refinement"} <= set(compressed.phase_seconds)
    assert alive == []
