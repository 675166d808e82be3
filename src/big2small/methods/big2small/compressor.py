"""`big2small`: every weight tensor becomes a small INR (coordinate -> value MLP) fitted to it, data-free.

The steps, each an option group of settings.py (the modules of this package hold the details):
1. permutation (optional): reorder channels without changing the function, so neighbouring kernels are similar;
2. outliers: per layer, weights beyond k sigma are stored exactly, the rest clipped and standardised;
3. inr + budget: coordinates per unit/scope, the width of each INR chosen so the whole artifact meets
   `target_ratio` (measured on the real serialised size);
4. loss + fit: all INRs fitted at once (same-shaped ones as one batched computation) by a Lightning Trainer, on
   one or several ranks, with the Frequency-Aware Loss; 8-bit storage ends with quantisation-aware steps;
5. refinement (optional): the INRs tuned so the rebuilt network matches the original on synthetic inputs.

What each weight becomes is one `Big2SmallPlan` (plan.py); the artifact layout and the rebuild are artifact.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.errors import ConfigError
from big2small.graph.weights import frozen_copy, set_parameter
from big2small.methods.base import Compressor
from big2small.methods.big2small import artifact, tuned_values
from big2small.methods.big2small.allocation import CODES, bit_candidates, choose_widths
from big2small.methods.big2small.code_rate import CodeRate, hold_to_bytes, hold_within
from big2small.methods.big2small.codec_choice import (
    FP16,
    ErrorMeasure,
    InrErrors,
    Options,
    choose_codecs,
    fixed_options,
    inr_errors,
    kept_groups,
    stored_options,
)
from big2small.methods.big2small.compensation import compensated_codes
from big2small.methods.big2small.fit_checkpoints import LastCheckpoint, resumable_checkpoint
from big2small.methods.big2small.fitting import INRFitModule, INRGroup
from big2small.methods.big2small.inr_prediction import predicted_inr_targets
from big2small.methods.big2small.layer_codes import MAX_CODE_BITS, TERNARY, context_share
from big2small.methods.big2small.networks import build_network
from big2small.methods.big2small.plan import Big2SmallPlan, stacks_of
from big2small.methods.big2small.refinement import RefineModule
from big2small.methods.big2small.rounding_offsets import RoundingOffsets
from big2small.methods.big2small.screening import ERROR_FALL_BOUND, ScreenINRs
from big2small.methods.big2small.seeds import input_seed, inr_seed
from big2small.methods.big2small.sensitivity import output_sensitivity
from big2small.methods.big2small.settings import (
    RESUME_FIELDS,
    FitSettings,
    INRSettings,
    LossSettings,
    OutlierSettings,
    PermutationSettings,
    RefinementSettings,
    StorageSettings,
    from_config,
    input_shape_setting,
)
from big2small.methods.big2small.synthesis import synthetic_inputs
from big2small.methods.budget import original_bytes, report_landing
from big2small.methods.registry import register
from big2small.process_memory import release_garbage

log = logging.getLogger(__name__)
# How a refined artifact over its budget lands (_refine_on_target): chosen again once for the growth its codes took,
# then, if still over, chosen within the budget again and refined with the zeros of mostly-zero layers kept.
LAST_ROUND_KEEP_ZEROS_ABOVE = 0.5
# The share of target_ratio's bytes a rate-aware refinement (refinement.rate_aware) lets the artifact reach: the rest
# is room for the coder's tables and stream padding beyond the codes' entropy, which the refinement measures.
RATE_AWARE_AIM = 0.995
# Started codes (refinement.start) that take less than this share of the bytes of the nearest codes the codec choice
# counted have their plan chosen again within the bytes they freed (_spend_freed_bytes). Codes that take more are
# held to the target by the rate-aware refinement, not by choosing again (docs/decisions.md).
SPEND_FREED_BELOW = 0.98


def coded_bytes(plan: Big2SmallPlan) -> int:
    """Bytes of the plan's coded layers' codes as stored (scales not included)."""
    return sum(plan.stored_codes_size(segment.name, plan.code_option(target.key))[1]
               for target in plan.targets if plan.widths[target.key] == CODES for segment in target.segments)


class PhaseClock:
    """Wall seconds per named phase: `with clock("refinement"): ...` adds that block's time to phases[name]. A phase
    that runs Lightning trainers starts by freeing what earlier trainers left in reference cycles
    (process_memory.release_garbage), in its time, so that it does not allocate on top of them; the other phases
    make no trainers and skip it, and Compressor.compress frees the last ones."""

    TRAINER_PHASES = frozenset({"weight_fitting", "input_synthesis", "refinement"})

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        if name in self.TRAINER_PHASES:
            release_garbage()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started


@register
class Big2SmallCompressor(Compressor):
    """Small INRs fitted to the weights, data-free; every part is an option so ablations can switch it off.

    target_ratio: INR widths are chosen so that the whole artifact meets it (None: inr.width is used). The option
    groups inr, outliers, loss, storage, fit, permutation and refinement are the dataclasses of settings.py.
    input_shape: the model's input without the batch dim, e.g. [3, 32, 32] (for the permutation check and the
    refinement inputs); None: the data module's shape, else the first conv's channels at 32x32.
    Why each default is what it is, with the measurements: docs/decisions.md.
    """

    name = "big2small"
    ARTIFACT_TENSORS = {"inr_fp16": torch.float16, "inr_int8": torch.int8, "inr_packed": torch.uint8,
                        "raw": torch.float16, "layer_codes": torch.uint8, "layer_scales": torch.float16,
                        "layer_int8": torch.int8,  # the layer codes of artifacts written before they were packed
                        "stats": torch.float32, "outlier_values": torch.float16, "outlier_index": torch.uint8,
                        "permutation": torch.uint8, "tuned": torch.float16,
                        artifact.SCALE_STEPS: torch.uint8, artifact.SCALE_TOPS: torch.int16,
                        tuned_values.LEVELS_TENSOR: torch.uint8, tuned_values.SCALES_TENSOR: torch.float16}
    # The option groups: constructor argument -> its settings class (settings.py, one dataclass each).
    SETTINGS_GROUPS: ClassVar[dict[str, type]] = {
        "inr": INRSettings, "outliers": OutlierSettings, "loss": LossSettings, "storage": StorageSettings,
        "fit": FitSettings, "permutation": PermutationSettings, "refinement": RefinementSettings,
    }

    def __init__(self, target_ratio: float | None = 8.0, inr=None, outliers=None, loss=None, storage=None,
                 fit=None, permutation=None, refinement=None, input_shape=None, seed: int = 0,
                 layer_types=("conv", "linear"), min_params: int = 0) -> None:
        super().__init__(target_ratio, layer_types, min_params)
        self.inr = from_config(INRSettings, inr, "inr")
        self.outliers = from_config(OutlierSettings, outliers, "outliers")
        self.loss = from_config(LossSettings, loss, "loss")
        self.storage = from_config(StorageSettings, storage, "storage")
        self.fit_settings = from_config(FitSettings, fit, "fit")
        self.permutation = from_config(PermutationSettings, permutation, "permutation")
        self.refinement = from_config(RefinementSettings, refinement, "refinement")
        self.input_shape = input_shape_setting(input_shape)
        self.seed = int(seed)
        # Data-free unless refinement is asked to use real training images (a diagnostic of synthetic inputs).
        self.uses_data = self.refinement.enabled and self.refinement.inputs == "data"
        if (self.inr.width is None) == (target_ratio is None):
            raise ConfigError("big2small: set exactly one of target_ratio and inr.width (the other null)")
        if self.fit_settings.batch_size is not None and self.loss.frequency_weight > 0 and self.inr.scope == "model":
            raise ConfigError("big2small: fit.batch_size with the frequency loss samples bands of one layer's rows; "
                              "use inr.scope=layer, fit.batch_size=null or loss.frequency_weight=0")

    @property
    def tunes_affine(self) -> bool:
        """Whether the refinement tunes (and the artifact stores) the model's 1-D parameters (refinement.affine_lr):
        not with a channel permutation, whose orders the stored values would have to follow."""
        return self.refinement.enabled and self.refinement.affine_lr > 0 and not self.permutation.enabled

    def settings(self) -> dict:
        groups = {"inr": self.inr, "outliers": self.outliers, "loss": self.loss, "storage": self.storage,
                  "fit": self.fit_settings, "permutation": self.permutation, "refinement": self.refinement}
        stored = {k: dict(vars(v)) for k, v in groups.items()}
        stored["fit"] = {k: v for k, v in stored["fit"].items() if k not in RESUME_FIELDS}
        return {**super().settings(), **stored, "input_shape": self.input_shape, "seed": self.seed}

    # ---------------------------------------------------------------- fitting
    def fit(self, model, *, data=None, trainer_factory=None) -> Compressed:
        if trainer_factory is None:
            raise ValueError("big2small: fit needs a trainer_factory (Lightning runs the fitting loop)")
        if self.uses_data and data is None:
            raise ConfigError("big2small: refinement.inputs=data needs a data module with calibration_images(n)")
        model = model.eval()
        orders: list[tuple] = []
        if self.permutation.enabled:
            from big2small.methods.big2small.permutation import check_same_function, permute_model

            permuted, orders = permute_model(model)
            example = torch.randn(8, *self.model_input_shape(model), generator=torch.Generator().manual_seed(0))
            check_same_function(model, permuted, example, self.permutation.tolerance)
            model = permuted
        weights = self.select(model)
        seconds = PhaseClock()
        inputs, sensitivity = None, None
        if self.storage.choice_error == "output":  # the synthetic inputs come first: the choice weighs by them
            inputs = self._inputs(model, data, trainer_factory, seconds, self.refinement)
            with seconds("sensitivity"):
                sensitivity = output_sensitivity(model, inputs, list(weights), self.refinement.batch_size, self.seed)
        self._weight_error = ErrorMeasure(self.storage.choice_error, sensitivity)
        # Targets stored as codes are sized at their fewest bits when the codec choice will give them their bits.
        sizing_bits = TERNARY if self.storage.layer_choice == "lower_error" else MAX_CODE_BITS
        top_bits = self.storage.bit_choices[0]  # the widths are sized at it; lower bits get wider INRs
        with seconds("allocation"):
            plan = Big2SmallPlan.prepare(weights, orders, self.inr, self.outliers, self.storage.codes_below,
                                         self.storage.entropy_coding, self.storage.dead_zone,
                                         self.storage.log_scales, self.storage.context_coding,
                                         self.storage.context_budget)
            if self.tunes_affine:  # counted from the start, so the budget leaves them their bytes
                plan = plan.with_tuned({name: model.get_parameter(name).detach().clone()
                                        for name in artifact.tuned_names(model, weights)})
            widths = choose_widths(plan.targets, self.inr, top_bits, self.target_ratio,
                                   lambda w: len(self._pack(plan.with_widths(w, default_bits=sizing_bits,
                                                                             inr_bits=top_bits), [],
                                                            sizing_only=True).to_bytes()),
                                   self.storage.codes_below,
                                   codes_when_out_of_reach=self.storage.layer_choice == "lower_error")
            plan = plan.with_widths(widths, default_bits=sizing_bits, inr_bits=top_bits)
            candidates = bit_candidates(plan.targets, self.inr, widths, self.storage.bit_choices)
        stored = StoredOptions(plan, self._weight_error, self.storage.rate_levels)
        predicted = None
        if self.storage.layer_choice == "lower_error" and self.fit_settings.inrs == "predicted" and candidates:
            with seconds("inr_prediction"):
                predicted = predicted_inr_targets(
                    plan, candidates, self.inr, self._weight_error,
                    lambda p, errors: self._choose_codecs(p, errors, candidates, stored()))
            plan, candidates = without_inrs(plan, candidates, predicted, sizing_bits)
        groups = self._groups(plan, candidates)
        if groups:
            with seconds("weight_fitting"):
                self._fit_weights(groups, plan, candidates, trainer_factory, stored)
        choose = self.storage.layer_choice == "lower_error" or len(self.storage.bit_choices) > 1
        fitted_plan, fitted_groups = plan, copy.deepcopy(groups)  # refinement trains INRs in place
        if choose:
            with seconds("codec_choice"):  # with layer_choice=inr, among each target's INRs only
                others = stored() if self.storage.layer_choice == "lower_error" else fixed_options(plan)
                inr_error = self._inr_errors(plan, groups)
                plan = self._choose_codecs(plan, inr_error, candidates, others)
            self._check_reached(plan, others)
            groups = kept_groups(groups, plan)
        plan = plan.with_nearest_codes()
        if self.refinement.enabled and (plan.coded or any(plan.widths.values())):
            refinement = self._refinement_budget(plan, groups)
            if inputs is None:
                inputs = self._inputs(model, data, trainer_factory, seconds, refinement)
            started = self._start_codes(model, plan, inputs, refinement, seconds)
            if choose and plan.entropy_coding and self.target_ratio is not None:
                again = (fitted_plan, fitted_groups, inr_error, candidates, others)
                started, groups = self._spend_freed_bytes(model, plan, started, groups, again, inputs, refinement,
                                                          seconds)
                plan, groups = self._refine_on_target(model, groups, started, again, trainer_factory, inputs,
                                                      seconds, refinement)
            else:
                plan = self._refine(model, groups, started, trainer_factory, inputs, seconds, refinement)
        compressed = self._pack(plan, groups)
        ratio = original_bytes(plan.weights) / len(compressed.to_bytes())
        if self.target_ratio is not None:
            report_landing(self.name, ratio, self.target_ratio, self._landing_reason(ratio, plan))
        compressed.layer_stats = plan.layer_stats(self.inr, predicted)
        compressed.phase_seconds = seconds.phases
        return compressed

    def _landing_reason(self, ratio: float, plan: Big2SmallPlan) -> str:
        """Why a run may land away from target_ratio (budget.report_landing says it when it is more than 5 % away)."""
        if ratio <= self.target_ratio:
            return ("the refined codes take more coded bytes than the codec choice counted (lower "
                    "refinement.keep_zeros_above, or refinement.enabled=false)")
        if self.refinement.enabled and plan.entropy_coding and any(
                codes.bits < MAX_CODE_BITS for codes in plan.coded.values()):
            return (f"the refinement moved fewer codes than the {self.refinement.code_reserve:g} of the bytes the "
                    "codec choice left it (refinement.code_reserve) would have paid for")
        return ("its most precise storage is 8-bit codes or INRs of inr.max_width, smaller than the target allows, "
                "and it never stores more than it needs")

    def _check_reached(self, plan: Big2SmallPlan, others: Options) -> None:
        """ConfigError, before any refinement, when the chosen plan is over target_ratio's bytes: neither INRs (the
        allocation) nor any set of the `others` options (the choice) reach it."""
        if self.target_ratio is None:
            return
        original = original_bytes(plan.weights)
        if original / len(self._pack(plan, [], sizing_only=True).to_bytes()) >= self.target_ratio:
            return
        smallest = {key: min(choices, key=lambda option: choices[option][0]) for key, choices in others.items()}
        fewest = plan.with_widths({key: None if option == FP16 else CODES for key, option in smallest.items()},
                                  {key: option for key, option in smallest.items() if option != FP16})
        best = original / len(self._pack(fewest, [], sizing_only=True).to_bytes())
        if best >= self.target_ratio:  # reached, but not within the share the choice leaves after the reserve
            raise ConfigError(f"big2small: target_ratio {self.target_ratio:g} leaves no room for the refinement: every "
                              f"layer at its fewest-byte codes gives {best:.2f}x, and the codec choice keeps "
                              f"{self._reserve():g} of the bytes free for the refined codes; lower target_ratio or "
                              "refinement.code_reserve")
        raise ConfigError(f"big2small: target_ratio {self.target_ratio:g} is out of reach for this model: no INR "
                          f"fits, and every layer at its fewest-byte codes gives {best:.2f}x; lower target_ratio")

    def _spend_freed_bytes(self, model, nearest: Big2SmallPlan, started: Big2SmallPlan, groups: list[INRGroup],
                           again: tuple, inputs: torch.Tensor, refinement: RefinementSettings,
                           seconds: PhaseClock) -> tuple[Big2SmallPlan, list[INRGroup]]:
        """The plan the refinement starts from. When the started codes (refinement.start) take less than
        SPEND_FREED_BELOW of the bytes of the `nearest` codes the choice counted, chooses again (`again`: as for
        _refine_on_target) within the bytes that codes shrunk as these shrank leave the choice's budget, and starts
        that choice's codes where they leave half the reserve free, else the first choice's started codes."""
        fitted_plan, fitted_groups, inr_error, candidates, others = again
        counted, got = coded_bytes(nearest), coded_bytes(started)
        if not counted or not got or got >= SPEND_FREED_BELOW * counted:
            return started, groups
        target_bytes = original_bytes(nearest.weights) / self.target_ratio
        aim = target_bytes * (1 - self._reserve())
        fits_in = target_bytes * (1 - self._reserve() / 2)
        rest = len(self._pack(nearest, groups, sizing_only=True).to_bytes()) - counted
        share = (rest + (aim - rest) * counted / got) / aim
        log.info("big2small: started codes take %.1f%% fewer bytes than chosen; choosing again within %.1f%% of the "
                 "bytes", 100 * (1 - got / counted), 100 * share)
        with seconds("codec_choice"):
            rechosen = self._choose_codecs(fitted_plan, inr_error, candidates, others, share)
        if rechosen is fitted_plan:  # no choice fits those bytes
            return started, groups
        rechosen_groups = kept_groups(copy.deepcopy(fitted_groups), rechosen)
        restarted = self._start_codes(model, rechosen.with_nearest_codes(), inputs, refinement, seconds)
        if len(self._pack(restarted, rechosen_groups, sizing_only=True).to_bytes()) <= fits_in:
            return restarted, rechosen_groups
        log.info("big2small: that choice's started codes leave less than half the reserve; keeping the first choice")
        return started, groups

    def _refine_on_target(self, model, groups: list[INRGroup], plan: Big2SmallPlan, again: tuple, trainer_factory,
                          inputs: torch.Tensor, seconds: PhaseClock,
                          refinement: RefinementSettings) -> tuple[Big2SmallPlan, list[INRGroup]]:
        """Refines the chosen plan. When the refined codes take the artifact over target_ratio's bytes, chooses again
        (`again`: the fitted plan and INRs, their errors, the INR candidates and the other options) so that codes
        grown as these grew fit beside the rest of the artifact, and refines that choice from the start; when that
        is over too, chooses within the budget once more and refines keeping the zeros of layers whose codes are
        mostly zeros (a zero moved to +-1 is what costs most bits there)."""
        fitted_plan, fitted_groups, inr_error, candidates, others = again
        target_bytes = original_bytes(plan.weights) / self.target_ratio
        aim = target_bytes * (1 - self._reserve())  # the choice's budget

        def rest_of(plan: Big2SmallPlan, groups: list[INRGroup]) -> int:  # the artifact's bytes other than codes
            return len(self._pack(plan, groups, sizing_only=True).to_bytes()) - coded_bytes(plan)

        def code_budget(plan: Big2SmallPlan, groups: list[INRGroup]) -> tuple[int, int] | None:
            """The bytes the refined codes aim at, beside the rest of the artifact, and the artifact's limit."""
            if not self.refinement.rate_aware or not coded_bytes(plan):
                return None
            return int(RATE_AWARE_AIM * target_bytes - rest_of(plan, groups)), int(target_bytes)

        refined = self._refine(model, groups, plan, trainer_factory, inputs, seconds, refinement,
                               code_bytes=code_budget(plan, groups))
        for last in (False, True):
            chosen_codes = coded_bytes(plan)
            if self._stored_bytes(refined, groups) <= target_bytes or not chosen_codes:
                break
            growth = coded_bytes(refined) / chosen_codes
            rest = rest_of(plan, groups)
            share = 1.0 if last else (rest + (aim - rest) / growth) / aim
            log.info("big2small: refined codes took %.1f%% more bytes than chosen; choosing again within %.1f%% of "
                     "the bytes%s", 100 * (growth - 1), 100 * share, ", keeping mostly-zero layers' zeros" * last)
            with seconds("codec_choice"):
                rechosen = self._choose_codecs(fitted_plan, inr_error, candidates, others, share)
            if rechosen is fitted_plan:  # no choice fits those bytes
                continue
            groups = kept_groups(copy.deepcopy(fitted_groups), rechosen)
            plan = self._start_codes(model, rechosen.with_nearest_codes(), inputs, refinement, seconds)
            keep = min(self.refinement.keep_zeros_above, LAST_ROUND_KEEP_ZEROS_ABOVE) if last else None
            refined = self._refine(model, groups, plan, trainer_factory, inputs, seconds, refinement, keep,
                                   code_budget(plan, groups))
        return refined, groups

    def _groups(self, plan: Big2SmallPlan, candidates: dict[str, dict[int, int]]) -> list[INRGroup]:
        """One group per stack of the INRs to fit (`candidates`: {target key: {bits: width}})."""
        return [INRGroup(members, build_network(self.inr, dims, outputs, width,
                                                [inr_seed(self.seed, t.ordinal) for t in members]), bits)
                for (dims, outputs, width, _, bits), members in stacks_of(plan.targets, candidates).items()]

    def _inr_errors(self, plan: Big2SmallPlan, groups: list[INRGroup]) -> InrErrors:
        return inr_errors(plan, groups, self._weight_error)

    def _reserve(self) -> float:
        """The share of the target's bytes the codec choice leaves free for the refined codes' growth."""
        return max(self.refinement.code_reserve, 1 - RATE_AWARE_AIM if self.refinement.rate_aware else 0.0)

    def _choose_codecs(self, plan: Big2SmallPlan, inr_error: InrErrors, candidates: dict[str, dict[int, int]],
                       stored: Options, share: float = 1.0) -> Big2SmallPlan:
        """Within `share` of the bytes target_ratio allows (with inr.width set instead: the fitted plan's)."""
        limit = None if self.target_ratio is None else int(share * original_bytes(plan.weights) / self.target_ratio)
        if limit is not None and plan.entropy_coding and self.refinement.enabled:
            # The tuned 1-D parameters take their bytes out of the reserve, as far as it holds them: like moved
            # codes, they are what the refinement adds, and the rate-aware refinement keeps both within the target.
            limit = min(limit, int(limit * (1 - self._reserve())) + tuned_values.stored_bytes(
                [value.numel() for value in plan.tuned.values()], self.refinement.affine_bits))
        return choose_codecs(plan, inr_error, candidates, stored, self.inr,
                             lambda p: len(self._pack(p, [], sizing_only=True).to_bytes()), limit)

    def _fit_weights(self, groups: list[INRGroup], plan: Big2SmallPlan, candidates: dict[str, dict[int, int]],
                     trainer_factory, stored: StoredOptions) -> None:
        """`stored`: the codec choice's options other than the INRs, for the screening."""
        settings = self.fit_settings
        module = INRFitModule(groups, settings, self.loss, self.storage, self.seed)
        callbacks, resume_from = [], None
        if self.storage.layer_choice == "lower_error" and settings.screen_at > 0:
            callbacks.append(ScreenINRs(max(1, round(settings.screen_at * settings.steps)),
                                        KeptAtHopedErrors(self, plan, candidates, stored)))
        if settings.resume:  # only a fit that may be resumed writes checkpoints
            folder = Path(settings.checkpoint_dir) / self._fit_key(plan.weights, plan.widths)
            resume_from = resumable_checkpoint(folder)
            callbacks.append(LastCheckpoint(folder, settings.checkpoint_every))
        trainer = trainer_factory(max_steps=settings.steps, max_epochs=-1, use_distributed_sampler=False,
                                  enable_checkpointing=settings.resume, callbacks=callbacks)
        trainer.fit(module, ckpt_path=resume_from)

    def _fit_key(self, weights, widths) -> str:
        """Checkpoints of a fit are found again only by a fit of the same weights with the same settings."""
        digest = hashlib.sha256(json.dumps([self.settings(), widths], sort_keys=True, default=str).encode())
        for name, weight in weights.items():
            digest.update(name.encode())
            digest.update(weight.numpy().tobytes())
        return digest.hexdigest()[:16]

    def _refinement_budget(self, plan: Big2SmallPlan, groups: list[INRGroup]) -> RefinementSettings:
        """The refinement settings with the budget the chosen plan's bits per weight call for (light_above_bits,
        heavy_below_bits, mix_below_bits, adversarial_below_bits)."""
        weights = sum(weight.numel() for weight in plan.weights.values())
        bits = 8 * len(self._pack(plan, groups, sizing_only=True).to_bytes()) / weights
        refinement = self.refinement.for_bits_per_weight(bits)
        if refinement.start != self.refinement.start:
            log.info("big2small: the chosen plan takes %.2f bits per weight (< refinement.compensate_above_bits %g): "
                     "its codes start from their nearest codes", bits, self.refinement.compensate_above_bits)
        if self.refinement.light_above_bits is not None and bits >= self.refinement.light_above_bits:
            log.info("big2small: the chosen plan takes %.2f bits per weight (>= refinement.light_above_bits %g): "
                     "refining on %d inputs, %d input steps (%s from lr %g) and %d steps", bits,
                     self.refinement.light_above_bits, refinement.num_inputs, refinement.input_steps,
                     refinement.input_schedule, refinement.input_lr, refinement.steps)
        if self.refinement.heavy_below_bits is not None and bits < self.refinement.heavy_below_bits:
            log.info("big2small: the chosen plan takes %.2f bits per weight (< refinement.heavy_below_bits %g): "
                     "refining for %d steps, layer outputs weighted %g", bits, self.refinement.heavy_below_bits,
                     refinement.steps, refinement.feature_weight)
        if refinement.views != self.refinement.views:
            log.info("big2small: the chosen plan takes %.2f bits per weight (< refinement.mix_below_bits %g): its "
                     "inputs are seen as %s (refinement.mixed_views)", bits, self.refinement.mix_below_bits,
                     refinement.views)
        if refinement.adversarial_step > 0:  # only a plan under adversarial_below_bits keeps its step
            log.info("big2small: the chosen plan takes %.2f bits per weight (< refinement.adversarial_below_bits %g): "
                     "each batch is first moved by %g towards a worse match (refinement.adversarial_step)", bits,
                     self.refinement.adversarial_below_bits, refinement.adversarial_step)
        return refinement

    def _inputs(self, model, data, trainer_factory, seconds: PhaseClock, refinement: RefinementSettings
                ) -> torch.Tensor:
        """The refinement's inputs, its `refresh` pools one after the other: synthetic, or (refinement.inputs=data)
        real training images."""
        with seconds("input_synthesis"):
            if self.uses_data:
                return data.calibration_images(refinement.refresh * refinement.num_inputs).float()
            return torch.cat([synthetic_inputs(frozen_copy(model), self.model_input_shape(model), refinement,
                                               input_seed(self.seed, pool), trainer_factory)
                              for pool in range(refinement.refresh)])

    def _start_codes(self, model, plan: Big2SmallPlan, inputs: torch.Tensor, refinement: RefinementSettings,
                     seconds: PhaseClock) -> Big2SmallPlan:
        """The plan with the codes the refinement starts from (refinement.start): its nearest codes as they are, or
        those codes error-compensated on the refinement's inputs."""
        if refinement.start == "nearest" or not plan.coded:
            return plan
        with seconds("compensation"):
            coded = compensated_codes(frozen_copy(model), plan.coded, plan.weights, inputs, refinement.batch_size,
                                      plan.entropy_coding, sequential=refinement.start == "sequential")
        log.info("big2small: %d of %d coded layers start from error-compensated codes (refinement.start)",
                 sum(coded[name] is not codes for name, codes in plan.coded.items()), len(coded))
        return plan.with_codes(coded)

    def _refine(self, model, groups: list[INRGroup], plan: Big2SmallPlan, trainer_factory, inputs: torch.Tensor,
                seconds: PhaseClock, refinement: RefinementSettings, keep_zeros_above: float | None = None,
                code_bytes: tuple[int, int] | None = None) -> Big2SmallPlan:
        """Refines the INRs in place; returns the plan with its coded layers' refined codes (`refinement`: the
        settings with the run's budget; `keep_zeros_above`: theirs unless given; `code_bytes`: the bytes the codes
        as stored aim at and the artifact's limit: their entropy bits are held within aim / the stored codes' bytes
        x the stored codes' bits, and after the refinement, where the artifact takes more than its limit, held
        until it fits, code_rate.py; where the context's bytes are spent, storage.context_budget or
        context_refinement, the bit limit follows the share the context saves on the codes as they stand, and the
        limit is the artifact's as stored)."""
        if keep_zeros_above is None:
            keep_zeros_above = refinement.keep_zeros_above
        inr_layers = {s.name for t in plan.targets if plan.widths[t.key] for s in t.segments}
        # The student's coded and INR layers take the refined weights at every step: they share the model's
        # tensors, as the frozen teacher's do, rather than holding copies (3 x the weights over a ResNet-50).
        student = frozen_copy(model, inr_layers | set(plan.coded))
        for target in plan.targets:  # layers stored in fp16 take their stored values during refinement too
            if plan.widths[target.key] is None:
                for segment in target.segments:
                    set_parameter(student, segment.name, plan.weights[segment.name].half().float())
        teacher = frozen_copy(model)  # the frozen reference
        with seconds("refinement"):
            rounding = RoundingOffsets(plan.weights, plan.coded, learn_scales=refinement.scale_lr > 0,
                                       keep_zeros_above=keep_zeros_above)
            rate = None if code_bytes is None else CodeRate(plan.coded)
            bit_limit = 0.0 if rate is None else (code_bytes[0] / coded_bytes(plan)
                                                  * rate.bits([c.codes for c in plan.coded.values()]))
            spends_context = rate is not None and self._spends_context(plan)
            # A limit from context-coded sizes already counts the stored codes' share.
            first_share = context_share(plan.coded.values()) if spends_context and plan.budgets_context else 1.0

            def bit_scale() -> float:  # the share the context saves on the codes as they stand, over the first
                return context_share(rounding.codes(plan.coded).values()) / first_share

            module = RefineModule(groups, plan.layer_codes(), student, teacher, inputs, refinement,
                                  inr_layers=inr_layers, rounding=rounding, seed=self.seed, rate=rate,
                                  bit_limit=bit_limit, tuned=list(plan.tuned),
                                  bit_scale=bit_scale if spends_context else None)
            trainer = trainer_factory(max_steps=refinement.steps, max_epochs=-1, use_distributed_sampler=False,
                                      enable_checkpointing=False)
            trainer.fit(module)
            bit_limit = module.bit_limit
            if rate is not None and (held := hold_within(rounding, rate, bit_limit)):
                log.info("big2small: %d refined codes held at their stored codes to keep the codes' bits within "
                         "the target's", held)
        tuned = {name: student.get_parameter(name).detach().cpu().clone() for name in plan.tuned}

        def artifact_bytes() -> int:  # of the refined plan as it now stands, as stored
            return self._stored_bytes(plan.with_codes(rounding.codes(plan.coded)).with_tuned(tuned), groups)

        if spends_context and (
                held := hold_to_bytes(rounding, rate, artifact_bytes, code_bytes[1])):
            log.info("big2small: %d more refined codes held at their stored codes to keep the artifact's bytes "
                     "within the target's", held)
        return plan.with_codes(rounding.codes(plan.coded)).with_tuned(tuned)

    def _spends_context(self, plan: Big2SmallPlan) -> bool:
        """Whether the bytes the context-coded streams save are spent: on codes (storage.context_budget) or on
        refined moves (storage.context_refinement)."""
        return plan.entropy_coding and (plan.budgets_context or (self.storage.context_refinement
                                                                 and plan.context_coding))

    def _stored_bytes(self, plan: Big2SmallPlan, groups: list[INRGroup]) -> int:
        """The artifact's bytes as the budget counts them; with storage.context_refinement, as stored (context-coded
        streams where smaller, where the budget counts the static streams)."""
        if plan.budgets_context or not self._spends_context(plan):
            return len(self._pack(plan, groups, sizing_only=True).to_bytes())
        return len(self._pack(plan, groups).to_bytes())

    def accept_input_shape(self, shape: list[int] | None) -> None:
        if self.input_shape is None and shape is not None:
            self.input_shape = input_shape_setting(shape)

    def model_input_shape(self, model: nn.Module) -> list[int]:
        """input_shape (set, or accepted from the data), else inferred: the first conv's channels at 32 per side."""
        if self.input_shape is not None:
            return self.input_shape
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                return [module.in_channels] + [32] * (module.weight.dim() - 2)
            if isinstance(module, nn.Linear):
                return [module.in_features]
        raise ConfigError("big2small: cannot infer the model's input shape; set compressor.input_shape")

    # ---------------------------------------------------------------- storage
    def _pack(self, plan: Big2SmallPlan, groups: list[INRGroup], sizing_only: bool = False) -> Compressed:
        return artifact.pack(plan, self.inr, self.storage.bit_choices[0], groups, self.settings(), sizing_only,
                             self.refinement.affine_bits)

    @classmethod
    def check_artifact(cls, compressed: Compressed, model: nn.Module) -> None:
        super().check_artifact(compressed, model)
        artifact.check_meta(compressed.meta, model)

    @classmethod
    def check_values(cls, tensors: dict[str, torch.Tensor]) -> None:
        artifact.check_values(tensors)

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        return artifact.rebuild(compressed, model)


def without_inrs(plan: Big2SmallPlan, candidates: dict[str, dict[int, int]], kept: set[str],
                 code_bits: int) -> tuple[Big2SmallPlan, dict[str, dict[int, int]]]:
    """The plan and INR candidates with only the targets in `kept` as INRs, every other INR target stored as codes
    at `code_bits` until the codec choice gives it its own."""
    widths = {key: CODES if width and key not in kept else width for key, width in plan.widths.items()}
    codes = {key: plan.code_option(key) for key, width in plan.widths.items() if width == CODES}
    return (plan.with_widths(widths, codes, default_bits=code_bits),
            {key: widths_by_bits for key, widths_by_bits in candidates.items() if key in kept})


class StoredOptions:
    """The codec choice's options other than the INRs (codes, fp16), made once on first use: by the screening, or
    by the choice after the fit."""

    def __init__(self, plan: Big2SmallPlan, measure: ErrorMeasure, rate_levels: int) -> None:
        self.plan, self.measure, self.rate_levels, self.options = plan, measure, rate_levels, None

    def __call__(self) -> Options:
        if self.options is None:
            self.options = stored_options(self.plan, self.measure, self.rate_levels)
        return self.options


class KeptAtHopedErrors:
    """The screening's test on the INRs being fitted (`groups`): the targets whose INR the codec choice keeps if
    every INR's error fell by ERROR_FALL_BOUND. Objects rather than closures, so spawned processes (ddp_spawn) can
    receive them."""

    def __init__(self, compressor: Big2SmallCompressor, plan: Big2SmallPlan, candidates: dict[str, dict[int, int]],
                 stored: StoredOptions) -> None:
        self.compressor, self.plan, self.candidates, self.stored = compressor, plan, candidates, stored

    def __call__(self, groups: list[INRGroup]) -> set[str]:
        hoped = {key: {bits: error / ERROR_FALL_BOUND for bits, error in errors.items()}
                 for key, errors in self.compressor._inr_errors(self.plan, groups).items()}
        chosen = self.compressor._choose_codecs(self.plan, hoped, self.candidates, self.stored())
        return {key for key, width in chosen.widths.items() if width and key in self.candidates}
