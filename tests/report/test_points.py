"""Jobs -> curve points: seeds averaged, curves split by compressor and non-ratio settings, Pareto front."""

import pytest

from big2small.report.points import build_panels, series_of
from big2small.report.results import load_sweep
from tests.report.fake_sweep import rate_sweep, write_job


def test_seeds_become_one_point_with_mean_and_spread(tmp_path):
    (panel,) = build_panels(load_sweep(rate_sweep(tmp_path)).jobs)
    curves = series_of(panel)
    assert list(curves) == ["magnitude", "quant"]
    quant_8x = curves["quant"][1]
    assert quant_8x.seeds == 2 and quant_8x.ratio == pytest.approx(8.0)
    assert quant_8x.metric == pytest.approx(0.75) and quant_8x.metric_std == pytest.approx(0.01414, abs=1e-4)
    assert quant_8x.drop == pytest.approx(0.05)
    assert panel.base_metric == pytest.approx(0.80) and panel.base_metric_std == 0.0


def test_pareto_front_keeps_only_undominated_points(tmp_path):
    (panel,) = build_panels(load_sweep(rate_sweep(tmp_path)).jobs)
    front = sorted((p.series, round(p.ratio, 1)) for p in panel.points if p.pareto)
    # magnitude at 1.9x (79.3 %) and 3x (42.5 %) are beaten by quant at 4.1x (79.4 %) on both axes.
    assert front == [("quant", 4.1), ("quant", 8.0)]


def test_ratios_within_the_target_tolerance_count_as_equal_for_the_front(tmp_path):
    write_job(tmp_path, "big2small", compressor="big2small", ratio=8.1, metric=0.13, target_ratio=8.0)
    write_job(tmp_path, "quant", compressor="quant", ratio=8.0, metric=0.78, target_ratio=8.0)
    write_job(tmp_path, "kmeans", compressor="kmeans", ratio=8.6, metric=0.70, target_ratio=8.0)
    (panel,) = build_panels(load_sweep(tmp_path).jobs)
    front = sorted(p.compressor for p in panel.points if p.pareto)
    # 8.1x is within 5 % of 8.0x, so quant's higher metric dominates; 8.6x is more than 5 % above 8.0x.
    assert front == ["kmeans", "quant"]


def test_ratio_axis_can_be_the_whole_model_ratio(tmp_path):
    (panel,) = build_panels(load_sweep(rate_sweep(tmp_path)).jobs, ratio_key="model_compression_ratio")
    assert max(p.ratio for p in panel.points) == pytest.approx(8.0 * 0.95)


def test_a_varying_component_switch_splits_curves_but_a_constant_override_does_not(tmp_path):
    for outliers, metric in (("true", 0.7), ("false", 0.2)):
        for target in (4, 8):
            write_job(tmp_path, f"b/{outliers}/{target}", compressor="big2small", ratio=target, metric=metric,
                      target_ratio=float(target), overrides=[
                          "compressor=big2small", f"compressor.outliers={outliers}",
                          f"compressor.target_ratio={target}", "compressor.steps=50", "seed=0"])
    (panel,) = build_panels(load_sweep(tmp_path).jobs)
    curves = series_of(panel)
    assert list(curves) == ["big2small (outliers=false)", "big2small (outliers=true)"]
    assert [p.settings for p in curves["big2small (outliers=true)"]] == ["target_ratio=4", "target_ratio=8"]


def test_models_get_separate_panels(tmp_path):
    write_job(tmp_path, "a", compressor="quant", ratio=4, metric=0.8, model="cifar_resnet20", target_ratio=4.0)
    write_job(tmp_path, "b", compressor="quant", ratio=4, metric=0.8, model="cifar_resnet32", target_ratio=4.0)
    panels = build_panels(load_sweep(tmp_path).jobs)
    assert [p.name for p in panels] == ["cifar_resnet20 on cifar10 (classification)",
                                       "cifar_resnet32 on cifar10 (classification)"]


@pytest.mark.parametrize(("override", "label"), [
    ("compressor.fit.steps=300", "big2small (fit.steps=300)"),  # labels its own compressor's curve, not the others
    ("paths.output_root=/elsewhere", "big2small"),               # where a job wrote labels no curve
])
def test_an_override_of_one_compressor_labels_only_its_curve_and_only_if_it_is_a_setting(tmp_path, override, label):
    rate_sweep(tmp_path)
    for target in (4, 8):
        write_job(tmp_path, f"big2small/{target}", compressor="big2small", ratio=target, metric=0.1,
                  target_ratio=float(target), overrides=["compressor=big2small", override,
                                                         f"compressor.target_ratio={target}", "seed=0"])
    (panel,) = build_panels(load_sweep(tmp_path).jobs)
    assert list(series_of(panel)) == [label, "magnitude", "quant"]


def test_two_configs_of_one_compressor_class_are_two_curves(tmp_path):
    for config in ("big2small", "big2small_paper"):
        for target, metric in ((4, 0.8), (8, 0.7 if config == "big2small" else 0.3)):
            write_job(tmp_path, f"{config}/{target}", compressor="big2small", ratio=target, metric=metric,
                      target_ratio=float(target), overrides=[f"compressor={config}",
                                                             f"compressor.target_ratio={target}", "seed=0"])
    (panel,) = build_panels(load_sweep(tmp_path).jobs)
    curves = series_of(panel)
    assert list(curves) == ["big2small", "big2small_paper"]
    assert [p.metric for p in curves["big2small_paper"]] == [0.8, 0.3]
