"""The big2small compressor through its public interface: config checks, artifact round trip, every option."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch import nn

from big2small.codec import Compressed
from big2small.errors import ArtifactError, ConfigError
from big2small.methods.big2small.artifact import SCALE_STEPS, SCALE_TOPS
from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.big2small.layer_codes import CODE_CHOICES, TERNARY, weight_codes
from big2small.methods.registry import rebuild
from big2small.rebuilding import rebuild_model
from tests.conftest import tiny_cnn

# Tests of the weight fit switch the (default) refinement off; those of the default keep it, short.
NO_REFINEMENT = {"enabled": False}
# The refinement tests use beyond this file: the whole budget at any rate, the model's own 1-D parameters (tuning them
# is tested on its own in test_refinement.py)
SHORT_REFINEMENT = {"steps": 3, "input_steps": 3, "num_inputs": 8, "batch_size": 4, "light_above_bits": None,
                    "affine_lr": 0}


def trainer_factory(root, **fixed):
    def make(**overrides):
        settings = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, deterministic=True, default_root_dir=str(root))
        settings.update(overrides)
        settings.update(fixed)
        return L.Trainer(**settings)
    return make


def _round_trip(compressor, model, root):
    compressed = compressor.fit(copy.deepcopy(model), trainer_factory=trainer_factory(root))
    data = compressed.to_bytes()
    rebuilt = rebuild(Compressed.from_bytes(data), copy.deepcopy(model))
    original_bytes = 4 * sum(model.get_parameter(n).numel() for n in compressed.meta["replaced"])
    errors = {n: float((rebuilt.get_parameter(n).detach() - model.get_parameter(n)).norm() / model.get_parameter(n).norm())
              for n in compressed.meta["replaced"]}
    return compressed, original_bytes / len(data), errors, rebuilt


@pytest.mark.parametrize(("settings", "message"), [
    (dict(inr={"wdith": 3}), "unknown key"),
    (dict(inr={"kind": "mlp"}), "inr.kind"),
    (dict(inr={"depth": 0}), "inr.depth"),
    (dict(inr={"omega0": True}), "inr.omega0"),    # float() would take a bool or a numeric string
    (dict(inr={"omega0": "30"}), "inr.omega0"),
    (dict(outliers={"k": -1}), "outliers.k"),
    (dict(outliers={"rule": "fraction", "fraction": 1.5}), "outliers.fraction"),
    (dict(loss={"frequency_weight": -0.1}), "frequency_weight"),
    (dict(storage={"bits": 5}), "storage.bits"),
    (dict(storage={"bits": [8, 5]}), "storage.bits"),
    (dict(storage={"bits": []}), "storage.bits"),
    (dict(storage={"bits": [8, 8]}), "storage.bits"),
    (dict(storage={"bits": True}), "storage.bits"),
    (dict(fit={"steps": 0}), "fit.steps"),
    (dict(fit={"compile": "yes"}), "fit.compile"),
    (dict(fit={"resume": True}), "checkpoint_dir"),
    (dict(fit={"batch_size": 64}, inr={"scope": "model"}), "bands of one layer"),
    (dict(target_ratio=None), "exactly one"),
    (dict(inr={"width": 8}), "exactly one"),
    (dict(input_shape=[3, 0, 32]), "input_shape"),
    (dict(refinement={"inputs": "photos"}), "refinement.inputs"),
    (dict(refinement={"feature_weight": -1}), "refinement.feature_weight"),
    (dict(refinement={"class_weight": -1}), "refinement.class_weight"),
    (dict(storage={"codes_below": -1}), "storage.codes_below"),
    (dict(storage={"layer_choice": "best"}), "storage.layer_choice"),
    (dict(refinement={"code_lr": 0}), "refinement.code_lr"),
    (dict(fit={"screen_at": 1.0}), "fit.screen_at"),
    (dict(storage={"choice_error": "fisher"}), "storage.choice_error"),
    (dict(fit={"screen_at": -0.1}), "fit.screen_at"),
    (dict(refinement={"views": "crop"}), "refinement.views"),
    (dict(refinement={"mixed_views": "blend"}), "refinement.mixed_views"),
    (dict(refinement={"mix_below_bits": -1}), "refinement.mix_below_bits"),
    (dict(refinement={"match": "stages"}), "refinement.match"),
    (dict(refinement={"refresh": 0}), "refinement.refresh"),
    (dict(refinement={"hard_weight": -1}), "refinement.hard_weight"),
    (dict(refinement={"scale_lr": -1e-3}), "refinement.scale_lr"),
    (dict(refinement={"rate_aware": "yes"}), "refinement.rate_aware"),
    (dict(refinement={"code_reserve": 0.5}), "refinement.code_reserve"),
    (dict(refinement={"code_reserve": -0.1}), "refinement.code_reserve"),
    (dict(refinement={"light_above_bits": 0}), "refinement.light_above_bits"),
    (dict(refinement={"heavy_below_bits": 0}), "refinement.heavy_below_bits"),
    (dict(refinement={"affine_lr": -0.1}), "refinement.affine_lr"),
    (dict(refinement={"light_above_bits": "3"}), "refinement.light_above_bits"),
    (dict(refinement={"hard_weight": "abc"}), "refinement.hard_weight must be a non-negative number .got 'abc'"),
])
def test_bad_settings_fail_at_construction(settings, message):
    with pytest.raises(ConfigError, match=message):
        Big2SmallCompressor(**settings)


def test_default_fit_meets_the_ratio_and_reports_per_layer_results(tmp_path):
    model = tiny_cnn()
    compressed, ratio, errors, _ = _round_trip(
        Big2SmallCompressor(target_ratio=4, fit={"steps": 10}, refinement=SHORT_REFINEMENT), model, tmp_path)
    assert compressed.phase_seconds.keys() >= {"inr_prediction", "refinement"}  # refinement is on by default
    assert 4 <= ratio < 4.6
    assert set(compressed.layer_stats) == set(errors)
    row = compressed.layer_stats["features.7.weight"]
    assert row.keys() >= {"stored_as", "predicted_as", "inr_width", "inr_bytes", "code_bits", "outliers"}
    if row["stored_as"] == "inr":  # an INR unless its weights' own codes at no more bytes have the lower error
        assert row["inr_width"] >= 4 and row["inr_bytes"] > 0 and row["code_bits"] == 0
    else:
        assert row["stored_as"] == "codes" and 1 <= row["code_bits"] <= 8 and row["inr_width"] == 0  # 1: ternary


@pytest.mark.parametrize("options", [
    dict(inr={"unit": "weight"}),
    dict(inr={"scope": "model"}),
    dict(inr={"kind": "siren"}),
    dict(inr={"activation": "gelu"}, loss={"frequency_weight": 0}, fit={"batch_size": 64, "steps": 10}),
    dict(storage={"bits": 8, "qat_steps": 5}),
    dict(storage={"bits": 4, "qat_steps": 10}),
    dict(storage={"bits": [16, 8, 6, 4]}),
    dict(outliers={"enabled": False}),
    dict(permutation={"enabled": True}, input_shape=[1, 8, 8]),
    dict(refinement={"enabled": True, "steps": 3, "input_steps": 3, "num_inputs": 8, "batch_size": 4},
         input_shape=[1, 8, 8]),
    dict(refinement={"enabled": True, "steps": 3, "input_steps": 3, "num_inputs": 8, "batch_size": 4,
                     "views": "flip_shift", "hard_weight": 1.0}, input_shape=[1, 8, 8]),
    dict(refinement={"enabled": True, "steps": 3, "input_steps": 3, "num_inputs": 8, "batch_size": 4,
                     "views": "mixup"}, input_shape=[1, 8, 8]),
    dict(refinement={"enabled": True, "steps": 3, "input_steps": 3, "num_inputs": 8, "batch_size": 4,
                     "views": "cutmix"}, input_shape=[1, 8, 8]),
])
def test_every_option_fits_and_round_trips(tmp_path, options):
    options = {"fit": {"steps": 10}, "refinement": NO_REFINEMENT, **options}
    _, ratio, errors, rebuilt = _round_trip(Big2SmallCompressor(target_ratio=4, **options), tiny_cnn(), tmp_path)
    assert ratio >= 4
    assert all(e == e and e < 2 for e in errors.values())  # finite, and not wildly off after 10 steps
    assert torch.isfinite(rebuilt(torch.randn(2, 1, 8, 8))).all()


def _smooth_linear():
    model = nn.Sequential(nn.Linear(48, 64))
    o, i = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 48), indexing="ij")
    with torch.no_grad():
        model[0].weight.copy_(torch.sin(3 * o) * torch.cos(2 * i) + 0.5 * o)
        model[0].weight[5, 7] = 9.0  # one outlier
    return model


@pytest.mark.parametrize("kind", ["fourier", "siren"])
def test_a_smooth_weight_is_fitted_closely_and_outliers_come_back_exactly(tmp_path, kind):
    model = _smooth_linear()
    # A fixed width, so that the INR does not change with the size of the artifact's header (its settings), and
    # the INR kept (layer_choice inr) where the codec choice would prefer codes
    compressor = Big2SmallCompressor(target_ratio=None, inr={"kind": kind, "width": 16}, storage={"layer_choice": "inr"},
                                     fit={"steps": 300, "lr": 3e-3}, outliers={"k": 4}, refinement=NO_REFINEMENT)
    compressed, ratio, errors, rebuilt = _round_trip(compressor, model, tmp_path)
    assert ratio >= 3
    assert compressed.layer_stats["0.weight"]["stored_as"] == "inr"
    assert errors["0.weight"] < 0.1
    assert float(rebuilt[0].weight[5, 7]) == 9.0
    assert compressed.layer_stats["0.weight"]["outliers"] == 1


def test_resume_continues_an_interrupted_fit(tmp_path, caplog):
    model = tiny_cnn()
    settings = dict(target_ratio=4, fit={"steps": 20, "checkpoint_dir": str(tmp_path / "ckpt"),
                                         "checkpoint_every": 10, "resume": True}, refinement=NO_REFINEMENT,
                    storage={"layer_choice": "inr"})  # every layer keeps its fitted INR
    straight = Big2SmallCompressor(**settings).fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
    # An "interrupted" fit: the trainer stops after 10 of 20 steps, with its checkpoint saved in a fresh folder.
    interrupted = dict(settings, fit={**settings["fit"], "checkpoint_dir": str(tmp_path / "ckpt2")})
    halfway = Big2SmallCompressor(**interrupted).fit(copy.deepcopy(model),
                                                     trainer_factory=trainer_factory(tmp_path, max_steps=10))
    assert [p.name for p in (tmp_path / "ckpt2").rglob("*") if p.is_file()] == ["last.ckpt"]
    with caplog.at_level("INFO", logger="big2small.methods.big2small.fit_checkpoints"):
        resumed = Big2SmallCompressor(**interrupted).fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
    assert "resuming the fit from" in caplog.text
    for name in straight.tensors:
        assert torch.allclose(straight.tensors[name].float(), resumed.tensors[name].float(), atol=1e-3), name
    assert not torch.allclose(halfway.tensors["inr_fp16"].float(), resumed.tensors["inr_fp16"].float())
    # Identical re-runs replace the one checkpoint instead of adding last-v1.ckpt, last-v2.ckpt, ...
    assert [p.name for p in (tmp_path / "ckpt2").rglob("*") if p.is_file()] == ["last.ckpt"]


def test_the_artifact_is_the_same_wherever_the_fits_keep_their_checkpoints(tmp_path):
    # Where (and whether) a fit keeps checkpoints is no setting of the result: the stored header must not hold the
    # folder, or the budget left to the codes, and so the codes, would follow the length of a path.
    model = tiny_cnn()
    artifacts = []
    for folder in ("c", "a_much_longer_folder_name_that_a_user_might_have_chosen/for/their/fits"):
        settings = dict(target_ratio=8, fit={"steps": 5, "checkpoint_dir": str(tmp_path / folder)},
                        refinement=SHORT_REFINEMENT)
        compressed = Big2SmallCompressor(**settings).compress(copy.deepcopy(model),
                                                              trainer_factory=trainer_factory(tmp_path))
        assert "checkpoint_dir" not in compressed.config["fit"]
        artifacts.append(compressed.to_bytes())
    assert artifacts[0] == artifacts[1]
    assert "checkpoint_dir" not in Compressed.from_bytes(artifacts[1]).config["fit"]  # the header as stored


def test_without_resume_a_fit_writes_no_checkpoint(tmp_path):
    settings = dict(target_ratio=4, fit={"steps": 5, "checkpoint_dir": str(tmp_path / "ckpt"), "checkpoint_every": 2},
                    refinement=NO_REFINEMENT)  # the default codec choice, with its screening callback
    Big2SmallCompressor(**settings).fit(tiny_cnn(), trainer_factory=trainer_factory(tmp_path))
    assert not list(tmp_path.rglob("*.ckpt"))  # neither in checkpoint_dir nor in the trainer's root


def test_a_damaged_checkpoint_is_named_removed_and_the_fit_starts_again(tmp_path, caplog):
    model = tiny_cnn()
    settings = dict(target_ratio=4, fit={"steps": 6, "checkpoint_dir": str(tmp_path / "ckpt"), "inrs": "all",
                                         "checkpoint_every": 3, "resume": True}, refinement=NO_REFINEMENT)
    fresh = Big2SmallCompressor(**settings).fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
    (last,) = (tmp_path / "ckpt").rglob("last.ckpt")
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a fit killed while writing, before atomicity
    with caplog.at_level("WARNING", logger="big2small.methods.big2small.fit_checkpoints"):
        again = Big2SmallCompressor(**settings).fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
    assert f"the fit checkpoint {last} is damaged" in caplog.text
    assert again.to_bytes() == fresh.to_bytes()
    assert last.is_file(), "the restarted fit writes a good checkpoint again"


def test_a_batch_as_large_as_every_grid_fits_exactly_as_the_whole_grid(tmp_path):
    # fit.batch_size only changes grids with more rows than the batch; tiny_cnn's largest grid has 512 rows. Every
    # INR is kept (layer_choice inr), so the fitted INRs themselves are compared, not a codec choice between them.
    model = tiny_cnn()
    keep = {"layer_choice": "inr"}
    whole_fit, *_, whole = _round_trip(Big2SmallCompressor(target_ratio=4, fit={"steps": 5}, storage=keep,
                                                           refinement=NO_REFINEMENT), model, tmp_path / "a")
    batched_fit, *_, batched = _round_trip(Big2SmallCompressor(target_ratio=4, fit={"steps": 5, "batch_size": 4096},
                                                               storage=keep, refinement=NO_REFINEMENT),
                                           model, tmp_path / "b")
    assert any(whole_fit.meta["widths"].values()) and whole_fit.meta["widths"] == batched_fit.meta["widths"]
    for name, value in whole.state_dict().items():
        assert torch.equal(value, batched.state_dict()[name]), name


def test_bands_of_output_channels_fit_a_layer_with_the_frequency_loss(tmp_path):
    # 64 output channels of 48 rows each (unit=weight): batches of 16 channels, so the FFT sees 16 x 48 matrices.
    # The INR is kept (layer_choice inr), so its fit is what is measured, not the codes the choice would prefer.
    model = _smooth_linear()
    compressor = Big2SmallCompressor(target_ratio=4, inr={"unit": "weight"}, outliers={"k": 4},
                                     storage={"layer_choice": "inr"},
                                     fit={"steps": 300, "lr": 3e-3, "batch_size": 16 * 48},
                                     refinement={"affine_lr": 0})  # the weight's own error: the bias stays as it is
    compressed, ratio, errors, rebuilt = _round_trip(compressor, model, tmp_path)
    assert ratio >= 4
    assert errors["0.weight"] < 0.15
    assert float(rebuilt[0].weight[5, 7]) == 9.0



def test_a_compiled_fit_matches_the_eager_fit(tmp_path, monkeypatch):
    import functools

    # The graphs are captured as in a real run; aot_eager skips inductor's C++ code generation (40 s on 2 cores).
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    model = _smooth_linear()
    settings = dict(target_ratio=3, inr={"unit": "weight"}, fit={"steps": 20, "inrs": "all"})
    *_, eager = _round_trip(Big2SmallCompressor(**settings), model, tmp_path / "eager")
    settings["fit"] = {"steps": 20, "inrs": "all", "compile": True}
    from torch._dynamo.utils import counters

    counters.clear()
    *_, compiled = _round_trip(Big2SmallCompressor(**settings), model, tmp_path / "compiled")
    assert counters["stats"]["unique_graphs"] >= 1  # the INR stack went through torch.compile
    torch.testing.assert_close(compiled[0].weight, eager[0].weight, atol=1e-3, rtol=1e-3)


def test_targets_with_fewer_weights_than_codes_below_are_stored_as_their_own_8_bit_codes(tmp_path):
    model = tiny_cnn()  # weights: features.0 72, features.4 1152, features.7 4608, classifier 320
    compressor = Big2SmallCompressor(target_ratio=4, fit={"steps": 5},
                                     storage={"codes_below": 1000, "layer_choice": "inr"}, refinement=NO_REFINEMENT)
    compressed, ratio, errors, _ = _round_trip(compressor, model, tmp_path)
    assert ratio >= 4
    assert {name: (row["stored_as"], row["code_bits"]) for name, row in compressed.layer_stats.items()} == {
        "features.0.weight": ("codes", 8), "features.4.weight": ("inr", 0), "features.7.weight": ("inr", 0),
        "classifier.weight": ("codes", 8)}
    assert compressed.tensors["layer_codes"].numel() == 72 + 320  # 8 bits: one byte per weight
    assert compressed.tensors[SCALE_STEPS].numel() == 8 + 10  # one per output channel
    assert compressed.tensors[SCALE_TOPS].numel() == 2  # one per coded layer
    assert errors["features.0.weight"] < 0.01 and errors["classifier.weight"] < 0.01
    assert errors["features.7.weight"] > 0.01  # the INR-fitted layers are approximations

    truncated = Compressed.from_bytes(compressed.to_bytes())
    truncated.tensors["layer_codes"] = truncated.tensors["layer_codes"][:-1]
    with pytest.raises(ValueError, match="payload size"):
        rebuild(truncated, copy.deepcopy(model))
    forged = Compressed.from_bytes(compressed.to_bytes())
    forged.tensors[SCALE_TOPS] = torch.full_like(forged.tensors[SCALE_TOPS], 2**15 - 1)  # scales of 2^1024
    with pytest.raises(ArtifactError, match="scale grid top of 32767 is outside"):
        rebuild_model(forged, model)


def test_fp16_scales_store_two_bytes_per_channel_and_a_zero_is_refused(tmp_path):
    model = tiny_cnn()
    compressor = Big2SmallCompressor(target_ratio=4, fit={"steps": 5}, refinement=NO_REFINEMENT,
                                     storage={"codes_below": 1000, "layer_choice": "inr", "log_scales": False})
    compressed, ratio, errors, _ = _round_trip(compressor, model, tmp_path)
    assert ratio >= 4 and "log_scales" not in compressed.meta and SCALE_STEPS not in compressed.tensors
    assert compressed.tensors["layer_scales"].numel() == 8 + 10  # one per output channel
    assert errors["features.0.weight"] < 0.01 and errors["classifier.weight"] < 0.01
    unscaled = Compressed.from_bytes(compressed.to_bytes())
    unscaled.tensors["layer_scales"] = torch.zeros_like(unscaled.tensors["layer_scales"])
    with pytest.raises(ArtifactError, match="tensor 'layer_scales' holds 0, its values must be > 0"):
        rebuild_model(unscaled, model)


def test_an_artifact_with_the_earlier_unpacked_8_bit_layer_codes_still_rebuilds(tmp_path):
    model = tiny_cnn()
    compressor = Big2SmallCompressor(target_ratio=4, fit={"steps": 3},
                                     storage={"codes_below": 1000, "layer_choice": "inr"}, refinement=NO_REFINEMENT)
    compressed, _, _, rebuilt = _round_trip(compressor, model, tmp_path)
    earlier = Compressed.from_bytes(compressed.to_bytes())
    del earlier.meta["code_bits"]
    earlier.tensors["layer_int8"] = (earlier.tensors.pop("layer_codes").to(torch.int16) - 127).to(torch.int8)
    again = rebuild(Compressed.from_bytes(earlier.to_bytes()), copy.deepcopy(model))
    for name in compressed.meta["replaced"]:
        assert torch.equal(again.get_parameter(name), rebuilt.get_parameter(name))


def _smooth_and_noisy_mlp() -> nn.Module:
    """A 128 x 128 layer that is a smooth function of (row, column), which an INR holds in a few numbers, and a
    64 x 128 one of Gaussian noise, which no INR holds better than codes."""
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    grid = torch.arange(128.0)
    with torch.no_grad():
        model[0].weight.copy_(0.1 * torch.sin(grid[:, None] / 18) * torch.cos(grid[None, :] / 14))
        model[2].weight.copy_(0.03 * torch.randn(64, 128, generator=torch.Generator().manual_seed(0)))
    return model


def test_lower_error_choice_keeps_the_inr_of_a_smooth_weight_and_codes_a_noisy_one(tmp_path):
    model = _smooth_and_noisy_mlp()
    # The smooth layer's INR is capped below its byte share, so the bytes it leaves let the noisy layer's codes
    # beside it take a few bits; at its full share the choice would turn on a few header bytes.
    settings = dict(target_ratio=8, fit={"steps": 200}, loss={"frequency_weight": 0}, outliers={"enabled": False},
                    inr={"unit": "weight", "max_width": 64}, refinement=NO_REFINEMENT, input_shape=[128])
    runs = {choice: _round_trip(Big2SmallCompressor(**settings, storage={"codes_below": 0, "layer_choice": choice}),
                                model, tmp_path / choice) for choice in ("inr", "lower_error")}
    chosen, ratio, errors, _ = runs["lower_error"]
    assert ratio >= 8
    stored = {name: row["stored_as"] for name, row in chosen.layer_stats.items()}
    assert stored == {"0.weight": "inr", "2.weight": "codes"}
    assert chosen.layer_stats["2.weight"]["code_bits"] in CODE_CHOICES
    def squared_error(rebuilt):
        return sum(float((rebuilt.get_parameter(n) - model.get_parameter(n)).pow(2).sum()) for n in errors)

    # the choice may trade error between layers, never to more in total, both within the target's bytes
    assert squared_error(runs["lower_error"][3]) < squared_error(runs["inr"][3])
    assert runs["inr"][1] >= 8


def test_a_fit_whose_inrs_cannot_be_kept_stops_at_screen_at_with_the_same_weights(tmp_path):
    model = nn.Sequential(nn.Linear(160, 160))
    with torch.no_grad():  # Gaussian noise: no INR holds it better than codes
        model[0].weight.copy_(0.03 * torch.randn(160, 160, generator=torch.Generator().manual_seed(0)))
    weights, steps_run = {}, {}
    for screen_at in (0.25, 0.0):
        trainers, factory = [], trainer_factory(tmp_path / str(screen_at))
        def make(trainers=trainers, factory=factory, **overrides):
            trainers.append(factory(**overrides))
            return trainers[-1]
        compressor = Big2SmallCompressor(target_ratio=8, fit={"steps": 40, "screen_at": screen_at, "inrs": "all"},
                                         storage={"codes_below": 0}, inr={"unit": "weight"},
                                         refinement=NO_REFINEMENT, input_shape=[160])
        compressed = compressor.fit(copy.deepcopy(model), trainer_factory=make)
        assert compressed.layer_stats["0.weight"]["stored_as"] == "codes"
        rebuilt = rebuild(Compressed.from_bytes(compressed.to_bytes()), copy.deepcopy(model))
        weights[screen_at], steps_run[screen_at] = rebuilt[0].weight.detach(), trainers[0].global_step
    assert steps_run == {0.25: 11, 0.0: 40}  # the screening step itself still runs
    assert torch.equal(weights[0.25], weights[0.0])


def test_refined_codes_stay_within_one_level_of_the_nearest_code(tmp_path):
    model = tiny_cnn()
    compressor = Big2SmallCompressor(target_ratio=4, fit={"steps": 3}, input_shape=[1, 8, 8],
                                     storage={"codes_below": 1000, "dead_zone": False},  # codes rounded to nearest
                                     refinement={**SHORT_REFINEMENT, "code_lr": 1.0, "start": "nearest"})
    compressed, _, _, rebuilt = _round_trip(compressor, model, tmp_path)
    coded = [name for name, row in compressed.layer_stats.items() if row["stored_as"] == "codes"]
    assert coded
    moved = 0
    for name in coded:
        weight, stored = model.get_parameter(name).detach(), rebuilt.get_parameter(name).detach()
        row = compressed.layer_stats[name]
        nearest = weight_codes(weight, row["code_bits"], row["code_rate"], log_scales=compressor.storage.log_scales)
        scale = nearest.scale.float().reshape(-1, *[1] * (weight.dim() - 1))
        assert ((stored - nearest.values()).abs() <= 1.01 * scale).all()  # at most one level from the nearest code
        moved += int(((stored - nearest.values()).abs() > 0.01 * scale).sum())  # not the nearest code
    assert moved > 0  # a large code_lr moves some roundings away from the nearest code


def test_learned_scales_move_the_coded_weights_off_the_least_error_grid(tmp_path):
    model = tiny_cnn()
    compressor = Big2SmallCompressor(target_ratio=4, fit={"steps": 3}, input_shape=[1, 8, 8],
                                     storage={"codes_below": 1000}, refinement={**SHORT_REFINEMENT, "scale_lr": 0.1})
    compressed, _, _, rebuilt = _round_trip(compressor, model, tmp_path)
    off_grid = 0
    for name, row in compressed.layer_stats.items():
        if row["stored_as"] != "codes":
            continue
        weight, stored = model.get_parameter(name).detach(), rebuilt.get_parameter(name).detach()
        scale = weight_codes(weight, row["code_bits"]).scale.float().reshape(-1, *[1] * (weight.dim() - 1))
        in_levels = stored / scale
        off_grid += int(((in_levels - in_levels.round()).abs() > 0.01).sum())
    assert off_grid > 0  # trained scales: the stored weights are no longer multiples of the least-error scales


@pytest.mark.parametrize("choice_error", ["squared", "layer_relative", "channel_relative"])
def test_choice_error_decides_whether_a_layer_of_small_weights_gets_fewer_bits(tmp_path, choice_error):
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))
    noise = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the same weights, one layer at a thousandth of the scale
        model[0].weight.copy_(noise)
        model[1].weight.copy_(noise * 1e-3)
    compressor = Big2SmallCompressor(target_ratio=8, storage={"codes_below": 10**6, "choice_error": choice_error},
                                     refinement=NO_REFINEMENT, input_shape=[256])
    compressed, ratio, _, _ = _round_trip(compressor, model, tmp_path)
    bits = {name: row["code_bits"] for name, row in compressed.layer_stats.items()}
    assert ratio >= 7.6
    if choice_error == "squared":  # the small layer's squared error is a millionth: it gets the fewest bits
        assert bits["1.weight"] == min(bits.values()) < bits["0.weight"]
    else:  # relative to their own energy the two layers are alike: neither is starved
        assert abs(bits["0.weight"] - bits["1.weight"]) <= 1 and min(bits.values()) >= 3


def test_a_small_layer_keeps_four_bits_even_where_its_squared_error_would_give_them_away(tmp_path):
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 3))  # a classifier of 768 weights
    noise = torch.randn(3, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # at a thousandth of the scale its squared error is negligible at any bits
        model[1].weight.copy_(noise * 1e-3)
    compressor = Big2SmallCompressor(target_ratio=8, storage={"codes_below": 10**6}, refinement=NO_REFINEMENT,
                                     input_shape=[256])
    compressed, ratio, _, _ = _round_trip(compressor, model, tmp_path)
    assert ratio >= 7.6
    assert compressed.layer_stats["1.weight"]["code_bits"] >= 4


def test_where_four_bits_for_every_small_layer_do_not_fit_the_fewest_layers_go_below(tmp_path):
    model = nn.Sequential(*[nn.Linear(31, 31) for _ in range(6)])  # six layers of 961 weights: all small
    compressor = Big2SmallCompressor(target_ratio=10, storage={"codes_below": 10**6}, refinement=NO_REFINEMENT,
                                     input_shape=[31])
    compressed, ratio, _, _ = _round_trip(compressor, model, tmp_path)
    bits = [row["code_bits"] for row in compressed.layer_stats.values()]
    assert ratio >= 10  # 4 bits everywhere would land near 8x
    assert sum(b >= 4 for b in bits) == 5


def test_a_low_target_ratio_is_met_with_layers_in_fp16(tmp_path):
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))
    compressor = Big2SmallCompressor(target_ratio=2.5, storage={"codes_below": 10**6}, refinement=NO_REFINEMENT,
                                     input_shape=[256])
    compressed, ratio, errors, _ = _round_trip(compressor, model, tmp_path)
    stored = sorted(row["stored_as"] for row in compressed.layer_stats.values())
    assert 2.5 <= ratio < 2.7  # 8-bit codes alone would land at 4x; the next step up, both in fp16, at 2x
    assert stored == ["codes", "fp16"]
    assert max(errors.values()) < 0.01


class _TwoBranches(nn.Module):
    """Two layers with the same weights; the second branch reaches the output at a thousandth of the first."""

    def __init__(self) -> None:
        super().__init__()
        self.loud, self.quiet = nn.Linear(256, 256), nn.Linear(256, 256)
        noise = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            self.loud.weight.copy_(noise)
            self.quiet.weight.copy_(noise)

    def forward(self, x):
        return self.loud(x) + 1e-3 * self.quiet(x)


def test_output_choice_error_gives_the_bits_to_the_layer_the_output_depends_on(tmp_path):
    model = _TwoBranches()
    bits = {}
    for choice_error in ("squared", "output"):
        compressor = Big2SmallCompressor(target_ratio=8, storage={"codes_below": 10**6, "choice_error": choice_error},
                                         refinement={"enabled": False, "inputs": "noise", "num_inputs": 32},
                                         input_shape=[256])
        compressed, ratio, _, _ = _round_trip(compressor, model, tmp_path / choice_error)
        assert ratio >= 7.6
        bits[choice_error] = {name: row["code_bits"] for name, row in compressed.layer_stats.items()}
    assert abs(bits["squared"]["loud.weight"] - bits["squared"]["quiet.weight"]) <= 1  # equal weights, alike
    assert bits["output"]["quiet.weight"] == TERNARY < bits["squared"]["quiet.weight"]
    assert bits["output"]["loud.weight"] > bits["squared"]["loud.weight"]


def test_with_several_storage_bits_each_layer_keeps_its_least_error_inr_and_the_artifact_says_which(tmp_path):
    model = tiny_cnn()
    settings = dict(target_ratio=4, fit={"steps": 30, "inrs": "all"}, refinement=NO_REFINEMENT,
                    storage={"layer_choice": "inr", "codes_below": 0})
    eight, ratio8, errors8, _ = _round_trip(Big2SmallCompressor(**settings), model, tmp_path / "a")
    mixed, ratio, errors, rebuilt = _round_trip(
        Big2SmallCompressor(**{**settings, "storage": {**settings["storage"], "bits": [4, 8]}}), model, tmp_path / "b")
    assert ratio >= 4
    chosen = {name: row["inr_bits"] for name, row in mixed.layer_stats.items() if row["stored_as"] == "inr"}
    assert chosen and set(chosen.values()) <= {4, 8}
    assert mixed.meta["bits"] == 8 and mixed.meta.get("inr_bits", {}) == {k: 4 for k, b in chosen.items() if b == 4}
    # The 8-bit candidates are the INRs of the 8-bit-only fit (same seeds, steps and widths): no layer is worse.
    for name in chosen:
        assert errors[name] <= errors8[name] * 1.001 + 1e-6, name
    assert torch.isfinite(rebuilt(torch.randn(2, 1, 8, 8))).all()


@pytest.mark.parametrize(("inr_bits", "message"), [({"features.7.weight": 5}, "inr_bits"),
                                                   ({"nowhere": 4}, "inr_bits"),
                                                   ("4", "inr_bits")])
def test_an_artifact_with_forged_inr_bits_is_refused(tmp_path, inr_bits, message):
    model = tiny_cnn()
    compressed, *_ = _round_trip(Big2SmallCompressor(target_ratio=4, fit={"steps": 3}, refinement=NO_REFINEMENT,
                                                     storage={"layer_choice": "inr", "codes_below": 0}),
                                 model, tmp_path)
    forged = Compressed.from_bytes(compressed.to_bytes())
    forged.meta["inr_bits"] = inr_bits
    with pytest.raises(ValueError, match=message):
        Big2SmallCompressor.check_artifact(forged, copy.deepcopy(model))


def test_an_artifact_whose_inr_bits_do_not_match_its_codes_is_refused(tmp_path):
    model = tiny_cnn()
    compressed, *_ = _round_trip(Big2SmallCompressor(target_ratio=4, fit={"steps": 3}, refinement=NO_REFINEMENT,
                                                     storage={"layer_choice": "inr", "codes_below": 0}),
                                 model, tmp_path)
    forged = Compressed.from_bytes(compressed.to_bytes())
    forged.meta["inr_bits"] = {"features.7.weight": 4}  # its codes are 8-bit rows in inr_int8
    with pytest.raises(ValueError, match="payload size"):
        rebuild(forged, copy.deepcopy(model))


def test_with_one_inr_per_family_the_small_layers_are_still_codes(tmp_path):
    model = tiny_cnn()  # weights: features.0 72, features.4 1152, features.7 4608, classifier 320
    compressor = Big2SmallCompressor(target_ratio=4, fit={"steps": 5}, inr={"scope": "model"},
                                     storage={"codes_below": 1000, "layer_choice": "inr"}, refinement=NO_REFINEMENT)
    compressed, ratio, errors, _ = _round_trip(compressor, model, tmp_path)
    assert ratio >= 4
    assert {name: row["stored_as"] for name, row in compressed.layer_stats.items()} == {
        "features.0.weight": "codes", "features.4.weight": "inr", "features.7.weight": "inr",
        "classifier.weight": "codes"}
    assert sorted(compressed.meta["widths"]) == ["classifier.weight", "features.0.weight", "model/d2k9"]
    assert errors["features.0.weight"] < 0.01 and errors["classifier.weight"] < 0.01


def _noise_and_smooth_layers():
    """A layer of Gaussian noise (no INR holds it better than codes) and a smooth one (an INR holds it in a few
    parameters)."""
    model = nn.Sequential(nn.Linear(160, 160), nn.Linear(160, 160))
    o, i = torch.meshgrid(torch.linspace(0, 1, 160), torch.linspace(0, 1, 160), indexing="ij")
    with torch.no_grad():
        model[0].weight.copy_(0.03 * torch.randn(160, 160, generator=torch.Generator().manual_seed(0)))
        model[1].weight.copy_(0.05 * torch.sin(3 * o + 2 * i))
    return model.eval()


def _recording_factory(tmp_path):
    trainers, factory = [], trainer_factory(tmp_path)

    def make(**overrides):
        trainers.append(factory(**overrides))
        return trainers[-1]
    return trainers, make


def test_inrs_are_fitted_only_for_the_layers_predicted_to_win_and_both_codecs_are_recorded(tmp_path):
    settings = dict(target_ratio=8, storage={"codes_below": 0}, inr={"unit": "weight"}, refinement=NO_REFINEMENT,
                    input_shape=[160])
    trainers, make = _recording_factory(tmp_path / "predicted")
    predicted = Big2SmallCompressor(fit={"steps": 40, "screen_at": 0.0}, **settings).fit(
        _noise_and_smooth_layers(), trainer_factory=make)
    assert {n: row["predicted_as"] for n, row in predicted.layer_stats.items()} == {"0.weight": "codes",
                                                                                    "1.weight": "inr"}
    assert predicted.layer_stats["1.weight"]["stored_as"] == "inr"
    assert predicted.layer_stats["0.weight"]["stored_as"] == "codes"
    fitted = [module.targets for module in trainers[0].lightning_module.groups]
    assert [t.key for targets in fitted for t in targets] == ["1.weight"]  # the noise layer's INR is never fitted

    every = Big2SmallCompressor(fit={"steps": 40, "screen_at": 0.0, "inrs": "all"}, **settings).fit(
        _noise_and_smooth_layers(), trainer_factory=trainer_factory(tmp_path / "all"))
    assert all("predicted_as" not in row for row in every.layer_stats.values())
    assert {n: row["stored_as"] for n, row in every.layer_stats.items()} == {"0.weight": "codes", "1.weight": "inr"}


def test_the_screening_retires_the_inrs_that_cannot_be_kept_and_fits_the_others_to_the_end(tmp_path):
    from big2small.methods.big2small.screening import ScreenINRs

    trainers, make = _recording_factory(tmp_path)
    # Nearest codes: with dead-zone codes beside it, the noise layer's INR is still keepable at step 10 here.
    compressed = Big2SmallCompressor(target_ratio=20, fit={"steps": 40, "screen_at": 0.25, "inrs": "all"},
                                     storage={"codes_below": 0, "dead_zone": False}, inr={"unit": "weight"},
                                     refinement=NO_REFINEMENT,
                                     input_shape=[160]).fit(_noise_and_smooth_layers(), trainer_factory=make)
    trainer = trainers[0]
    screen = next(c for c in trainer.callbacks if isinstance(c, ScreenINRs))
    assert screen.retired == {"0.weight"} and trainer.global_step == 40
    module = trainer.lightning_module
    still_fitted = [group.targets[g].key for group, owned in zip(module.groups, module.owned, strict=True)
                    for g in owned]
    assert still_fitted == ["1.weight"]
    assert compressed.layer_stats["1.weight"]["stored_as"] == "inr"
