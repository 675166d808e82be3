"""The option groups of the big2small compressor, one dataclass per YAML block, validated on construction.

Each group is given as a plain dict by Hydra (`compressor.outliers.enabled=false` ...); `from_config` turns it into
the dataclass and turns any unknown key or invalid value into a one-line ConfigError before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from big2small.errors import ConfigError
from big2small.methods.big2small.layer_codes import RATE_LEVELS
from big2small.methods.big2small.tuned_values import MAX_BITS as TUNED_MAX_BITS
from big2small.methods.big2small.tuned_values import MIN_BITS as TUNED_MIN_BITS
from big2small.methods.big2small.views import KINDS as VIEW_KINDS

STORAGE_BITS = (4, 6, 8, 16)  # what an INR's parameters may be stored as (storage.py)
# The light refinement budget (RefinementSettings.light_above_bits): every input, this share of the input steps on a
# cosine schedule from this many times input_lr, and this share of the refinement steps (on ResNet-20 at 8x: 256
# inputs of 60 input steps from lr 0.3, 500 steps), the rounded codes from the first step (soft_share 0)
LIGHT_INPUT_STEP_SHARE = 0.6
LIGHT_INPUT_LR_FACTOR = 3.0
LIGHT_STEP_SHARE = 5 / 6
# The heavy refinement budget (RefinementSettings.heavy_below_bits): this many times the refinement steps, and the
# layer outputs weighted this many times as much against the logits
HEAVY_STEP_FACTOR = 2.5
HEAVY_FEATURE_FACTOR = 3.0


def from_config(cls, values, group: str):
    """Build settings class `cls` from a dict (or an instance) and name the group in any error."""
    if isinstance(values, cls):
        return values
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"big2small.{group}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


def _integer(group: str, key: str, value, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < low:
        raise ConfigError(f"big2small.{group}.{key} must be an integer >= {low} (got {value})")
    return int(value)


def _positive(group: str, key: str, value, allow_zero: bool = False) -> float:
    try:  # a bool or a string is no number, even where float() would take it (True, "30")
        number = math.nan if isinstance(value, bool | str) else float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ConfigError(f"big2small.{group}.{key} must be a {'non-negative' if allow_zero else 'positive'} "
                          f"number (got {value!r})")
    return number


def _flag(group: str, key: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"big2small.{group}.{key} must be true or false (got {value!r})")
    return value


def _choice(group: str, key: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"big2small.{group}.{key} must be one of {list(choices)} (got {value!r})")
    return value


@dataclass
class INRSettings:
    """The network family: coordinates (unit, scope) and the MLP shape."""

    kind: str = "siren"            # fourier (Fourier features + ReLU/GELU MLP) | siren (sine activations)
    unit: str = "kernel"           # weight: one value per coordinate | kernel: kh*kw values per (layer, o, i)
    scope: str = "layer"           # layer: one INR per weight tensor | model: one INR per family of layers
    width: int | None = None       # fixed hidden width; null = chosen per INR to meet target_ratio
    min_width: int = 4             # narrower than this and a layer is stored as fp16 instead
    max_width: int = 512
    depth: int = 2                 # hidden layers
    frequencies: int = 7           # Fourier features sin/cos(2^k pi x), k < frequencies (fourier only)
    activation: str = "relu"       # relu | gelu (fourier only)
    omega0: float = 30.0           # SIREN frequency scale

    def __post_init__(self) -> None:
        g = "inr"
        self.kind = _choice(g, "kind", self.kind, ("fourier", "siren"))
        self.unit = _choice(g, "unit", self.unit, ("weight", "kernel"))
        self.scope = _choice(g, "scope", self.scope, ("layer", "model"))
        self.activation = _choice(g, "activation", self.activation, ("relu", "gelu"))
        self.width = None if self.width is None else _integer(g, "width", self.width, 1)
        self.min_width = _integer(g, "min_width", self.min_width, 1)
        self.max_width = _integer(g, "max_width", self.max_width, self.min_width)
        self.depth = _integer(g, "depth", self.depth, 1)
        self.frequencies = _integer(g, "frequencies", self.frequencies, 0)
        self.omega0 = _positive(g, "omega0", self.omega0)


@dataclass
class OutlierSettings:
    """Outlier-Aware Preprocessing: which weights are stored exactly instead of being fitted."""

    enabled: bool = True
    rule: str = "sigma"            # sigma: |w - mu| > k sigma | fraction: the top `fraction` by |w - mu|
    k: float = 3.0
    fraction: float = 0.005

    def __post_init__(self) -> None:
        self.enabled = bool(self.enabled)
        self.rule = _choice("outliers", "rule", self.rule, ("sigma", "fraction"))
        self.k = _positive("outliers", "k", self.k)
        self.fraction = float(self.fraction)
        if not 0 < self.fraction < 1:
            raise ConfigError(f"big2small.outliers.fraction must lie in (0, 1) (got {self.fraction})")


@dataclass
class LossSettings:
    """Frequency-Aware Loss: MSE + lam * mean(omega(f) |FFT2 difference|); lam = 0 is plain MSE."""

    frequency_weight: float = 0.1  # lambda
    gamma: float = 1.0             # omega(f) = (1 + |f| / f_max)^gamma

    def __post_init__(self) -> None:
        self.frequency_weight = _positive("loss", "frequency_weight", self.frequency_weight, allow_zero=True)
        self.gamma = _positive("loss", "gamma", self.gamma, allow_zero=True)


@dataclass
class StorageSettings:
    """Precision of the stored INR parameters; codes (bits < 16) add quantisation-aware final fitting steps.
    8-bit codes are the default: at a fixed ratio they buy twice the parameters of fp16 (the paper's storage,
    `compressor=big2small_paper`), which at 8x on ResNet-20 lowers the weight error and lifts accuracy
    (docs/decisions.md)."""

    # 16: fp16 | 8, 6, 4: weight codes with a per-column fp16 scale, fp16 biases | a list of these, e.g. [4, 6, 8]:
    # every INR is fitted once per listed width, each candidate as wide as the bytes of the one at the highest
    # listed bits allow, and the candidate with the least weight error is kept (with layer_choice=lower_error, the
    # one the codec choice picks), so the allocation picks width x bits per target
    bits: int | list[int] = 8
    qat_steps: int = 100           # last steps of fitting that see the coded weights (straight-through); every
                                   # step when fit.steps is no more than this
    # Targets (layers, or families with inr.scope=model) with fewer weights than this are stored as the weights'
    # own 8-bit codes (a scale per output channel) instead of an INR: an INR of a few hundred weights holds
    # little (docs/results.md, "Per layer against quant"); on CIFAR ResNets this takes the stem and the classifier.
    # 0: every target that an INR fits gets one (the paper's method).
    codes_below: int = 1000
    # inr: every other target keeps its INR | lower_error: after fitting, a target whose weights' own codes at no
    # more bytes have a lower error than its INR is stored as codes, and the bytes freed buy coded layers more bits
    # (codec_choice.py)
    layer_choice: str = "lower_error"
    # The weight error that choice minimises: squared | layer_relative | channel_relative (each layer's, or each
    # output channel's, squared error over its own energy: what a BatchNorm after it sees) | output (each weight's
    # squared error times its output sensitivity on the refinement's synthetic inputs, which are then made first)
    choice_error: str = "squared"
    # Layers stored as codes are stored as an rANS stream of their codes wherever that is smaller than the codes
    # packed at a fixed width, and the budget and the codec choice count the stream's bytes; false: always packed
    # (the artifacts and curves of earlier versions)
    entropy_coding: bool = True
    # With entropy coding, a coded layer's codes of up to 4 bits are also stored under an adaptive model whose
    # context is how many of its kernel's earlier codes are nonzero (encodings/context_codes.py) wherever that stream
    # is smaller still; false: one static model per layer (the artifacts of earlier versions)
    context_coding: bool = True
    # With context coding, the codec choice and the refinement's byte limit count the context-coded sizes, so the
    # bytes it saves buy codes (the refinement's bit limit follows the share the context saves on the codes as they
    # stand, measured every refinement.CONTEXT_RECOUNT_STEPS steps); false: they count the static streams, and the
    # bytes it saves lift the ratio above the target. On ResNet-20 counting them lowered the training images' KL at
    # 32x (three seeds) and raised it at 16x (two seeds), so it is off (docs/results.md, "The context's bytes on
    # refined moves")
    context_budget: bool = False
    # With context coding and the static budget, the refinement spends the bytes the context saves on code moves: its
    # bit limit grows by the share the context-coded streams save on the codes as they stand (measured again every
    # refinement.CONTEXT_RECOUNT_STEPS steps), and moves are then held until the artifact as stored fits the target;
    # false: the bytes the context saves lift the ratio above the target. Spending them was worse at 32x on ResNet-20
    # (docs/results.md, "The context's bytes on refined moves")
    context_refinement: bool = False
    # With entropy coding, each code width is also offered at this many rate levels (layer_codes.RATE_PRICES):
    # scales chosen for least error plus a price per coded bit, fewer bytes for more error; 0: least-error scales only
    rate_levels: int = 4
    # At rate levels >= 1, codes of up to 4 bits also round with a dead zone chosen per output channel
    # (layer_codes.dead_zone_round: a wider zero bin, every code pulled towards zero), which reaches rates below
    # 1 bit per weight; false: nearest rounding only (the artifacts of earlier versions)
    dead_zone: bool = True
    # Coded layers' scales on a logarithmic grid (scale_grid.py: 1/32 octave apart, a byte per output channel and two
    # per layer), searched on that grid; false: an fp16 scale per output channel (the artifacts of earlier versions)
    log_scales: bool = True

    def __post_init__(self) -> None:
        choices = list(self.bits) if isinstance(self.bits, (list, tuple)) else [self.bits]
        if not choices or len(set(choices)) != len(choices) or any(
                isinstance(b, bool) or b not in STORAGE_BITS for b in choices):
            raise ConfigError("big2small.storage.bits must be 4, 6, 8 or 16, or a list of distinct ones "
                              f"(got {self.bits!r})")
        self.bits = [int(b) for b in choices] if isinstance(self.bits, (list, tuple)) else int(self.bits)
        self.qat_steps = _integer("storage", "qat_steps", self.qat_steps, 0)
        self.codes_below = _integer("storage", "codes_below", self.codes_below, 0)
        self.layer_choice = _choice("storage", "layer_choice", self.layer_choice, ("inr", "lower_error"))
        self.entropy_coding = _flag("storage", "entropy_coding", self.entropy_coding)
        self.context_coding = _flag("storage", "context_coding", self.context_coding)
        self.context_budget = _flag("storage", "context_budget", self.context_budget)
        self.context_refinement = _flag("storage", "context_refinement", self.context_refinement)
        if self.context_refinement and self.context_budget:
            raise ConfigError("big2small.storage.context_refinement and context_budget both spend the bytes the "
                              "context saves (on code moves, on the codec choice); set one of them")
        self.rate_levels = _integer("storage", "rate_levels", self.rate_levels, 0)
        self.dead_zone = _flag("storage", "dead_zone", self.dead_zone)
        self.log_scales = _flag("storage", "log_scales", self.log_scales)
        if self.rate_levels > RATE_LEVELS:
            raise ConfigError(f"big2small.storage.rate_levels must be at most {RATE_LEVELS} (got {self.rate_levels})")
        self.choice_error = _choice("storage", "choice_error", self.choice_error,
                                    ("squared", "layer_relative", "channel_relative", "output"))

    @property
    def bit_choices(self) -> tuple[int, ...]:
        """The INR storage bits to fit, highest first: the highest sizes every target's bytes."""
        return tuple(sorted(self.bits if isinstance(self.bits, list) else [self.bits], reverse=True))


# The FitSettings fields that say whether and where a fit keeps checkpoints to resume from. They do not change the
# fit, so neither the artifact's stored settings nor a fit's checkpoint key hold them: an artifact's bytes (and so the
# codes its budget leaves room for) must not depend on the folder a run keeps its cache in.
RESUME_FIELDS = ("resume", "checkpoint_dir", "checkpoint_every")


@dataclass
class FitSettings:
    """The weight-space fitting loop (Adam, cosine schedule), run by a Lightning Trainer."""

    steps: int = 1000
    lr: float = 3e-3
    # Rows per INR per step on grids larger than this: uniform draws, or with the frequency loss one band of whole
    # output channels (its FFT then covers the band); null = the whole grid every step.
    batch_size: int | None = None
    resume: bool = False           # keep a checkpoint, and continue from it if an equal fit was interrupted
    checkpoint_dir: str | None = None  # where resumable fits keep their checkpoints
    checkpoint_every: int = 200    # steps between checkpoints
    compile: bool = False          # torch.compile each stack's INR: faster steps after a compilation of seconds
                                   # to minutes (docs/results.md, "Fitting at scale")
    # With storage.layer_choice=lower_error: after this share of the steps, the INRs the choice would not keep even
    # were every INR's error to fall by screening.ERROR_FALL_BOUND by the end are no longer fitted, and the fit stops
    # if that is all of them; 0 = every INR runs every step.
    screen_at: float = 0.2
    # With storage.layer_choice=lower_error, which targets get an INR fitted: predicted (those whose INR the codec
    # choice would keep were its error as low as inr_prediction.optimistic_relative_error; the others are stored
    # without one) | all (every target, the choice made after the fit)
    inrs: str = "predicted"

    def __post_init__(self) -> None:
        self.steps = _integer("fit", "steps", self.steps, 1)
        self.inrs = _choice("fit", "inrs", self.inrs, ("predicted", "all"))
        self.lr = _positive("fit", "lr", self.lr)
        self.batch_size = None if self.batch_size is None else _integer("fit", "batch_size", self.batch_size, 1)
        self.resume = bool(self.resume)
        self.compile = _flag("fit", "compile", self.compile)
        self.checkpoint_every = _integer("fit", "checkpoint_every", self.checkpoint_every, 1)
        self.screen_at = _positive("fit", "screen_at", self.screen_at, allow_zero=True)
        if self.screen_at >= 1:
            raise ConfigError(f"big2small.fit.screen_at must be a share of the steps in [0, 1) (got {self.screen_at})")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("big2small.fit.resume needs fit.checkpoint_dir (where the interrupted fit saved)")


@dataclass
class PermutationSettings:
    """Function-preserving channel permutation before fitting (beyond the paper)."""

    enabled: bool = False
    tolerance: float = 1e-4        # max |output difference| / max |output| allowed after permuting

    def __post_init__(self) -> None:
        self.enabled = bool(self.enabled)
        self.tolerance = _positive("permutation", "tolerance", self.tolerance)


@dataclass
class RefinementSettings:
    """Function-space refinement on synthetic inputs, data-free (beyond the paper, on by default; the paper's
    method, `compressor=big2small_paper`, has none); `inputs: data` uses real training images instead, to measure
    what the synthetic ones cost, and marks the run as using data."""

    enabled: bool = True
    inputs: str = "bn_stats"       # bn_stats: noise optimised to match BN stats | noise | data: training images
    num_inputs: int = 256          # inputs per pool
    # Pools of num_inputs inputs made (each from its own seed; with inputs=data, the next training images):
    # refinement step s draws its batch from pool s * refresh // steps, so the inputs are replaced refresh - 1
    # times during refinement, as in HAST's refreshed synthetic set; 1 = one pool throughout
    refresh: int = 1
    input_steps: int = 100         # optimisation steps of the synthetic inputs (bn_stats)
    input_lr: float = 0.1          # Adam's step on their pixels (unit-variance noise at the start)
    # How that step changes over the input steps: constant, or cosine (decayed to 0 on a half cosine)
    input_schedule: str = "constant"
    # The arithmetic the synthetic inputs are optimised in (synthesis.py): 32 (fp32), bf16 (the model's forward and
    # backward under bf16 autocast, the statistics in fp32), or auto: bf16 on a device that computes it natively (a
    # CUDA GPU that supports it, a CPU with AVX512-BF16 or AMX), else 32.
    input_precision: str = "32"
    # Each input step sees every chunk of inputs rolled by a random whole number of pixels, at most this share of the
    # shorter side (rounded: 0.0625 is 2 pixels of CIFAR's 32), down and across, and half the time mirrored left to
    # right (as DeepInversion jitters its images); images only (inputs of 4 dims). 0 = the inputs as they are, the
    # default at every rate (docs/decisions.md says why)
    input_jitter: float = 0.0
    # bn_stats on a classifier (2-D outputs): weight of the cross-entropy that pulls image i towards class
    # i mod classes, so that every class is represented; 0 = BatchNorm statistics only
    class_weight: float = 0.0
    steps: int = 600
    # Where the codes start: nearest (each weight's code on its channel's grid), compensated (rounded column by
    # column with each column's error spread over the rest through the layer's input moments on the synthetic
    # inputs, as GPTQ rounds; compensation.py) or sequential (compensated layer after layer in the order the model
    # runs them, each for the error the coded layers before it put into its inputs)
    start: str = "compensated"
    # A plan under this many bits per weight before refinement (16x is 1.9, 32x about 1) starts from nearest codes
    # whatever `start` says: there compensated codes take far more bytes than the choice counted, and the refinement
    # that holds them to the target leaves the artifact well under it and less accurate (docs/decisions.md).
    # null = `start` at every rate
    compensate_above_bits: float | None = 1.5
    # A plan whose codes and INRs take at least this many bits per weight before refinement (8 x its bytes / its
    # weights; 8x is 3.6, 16x is 1.9) is refined on the light budget: every input, made in LIGHT_INPUT_STEP_SHARE of
    # input_steps on a cosine schedule from LIGHT_INPUT_LR_FACTOR x input_lr, and LIGHT_STEP_SHARE of steps. On all
    # 10,000 training images that refined 8x codes as well as the whole budget; coarser codes lose by the shorter
    # synthesis (docs/decisions.md). null = the whole budget at every rate. The inputs follow it only where they
    # are made after the codec choice (storage.choice_error=squared).
    light_above_bits: float | None = 3.0
    # A plan under this many bits per weight before refinement (32x is about 1, 16x 1.9) is refined for
    # HEAVY_STEP_FACTOR x steps with HEAVY_FEATURE_FACTOR x feature_weight: there the refinement, not the codes,
    # recovers most of the accuracy, it is still gaining on real images when the whole budget ends, and matching
    # the layer outputs is what carries it (docs/decisions.md). null = the whole budget at every rate
    heavy_below_bits: float | None = 1.3
    # A plan under this many bits per weight before refinement (32x is about 1, 16x 1.9; 8x, 3.6, is not) sees each
    # batch of its inputs as `mixed_views` where `views` is none (views.py): there the refinement fits its few
    # hundred inputs far better than other images, and inputs mixed in pairs cover more of the inputs the network
    # is matched on; the teacher then runs beside the student on every batch (docs/decisions.md). null = `views`
    # at every rate
    mix_below_bits: float | None = 3.0
    mixed_views: str = "mixup"
    # A plan under this many bits per weight before refinement (32x is about 1, 16x 1.9) sees each batch of its
    # inputs first moved by +-adversarial_step per value towards a worse match of the refined network
    # (adversarial.py), the teacher then running beside the student on every batch: there the refinement fits its
    # inputs far better than other images, and inputs moved to where it matches worst teach it more of the network
    # (docs/decisions.md). null = no plan; adversarial_step 0 = never
    adversarial_below_bits: float | None = 1.3
    adversarial_step: float = 0.05
    lr: float = 1e-5               # small: SIREN's omega0 multiplies every parameter change
    # Adam's step on the rounding offsets of layers stored as codes (layer_codes.py; an offset of 1 is one level)
    code_lr: float = 1e-2
    # For this share of the steps the coded layers' weights are blended between their codes before rounding and the
    # rounded codes, the rounded codes' part rising linearly from 0 at the first step to 1 (alpha blending, Liu and
    # Mattina 2019); the steps after it see the rounded codes alone, as stored. The gradient passes straight through
    # the rounding throughout. 0 = the rounded codes from the first step, as on the light budget (light_above_bits):
    # there the codes are fine and the blend was no better (docs/decisions.md)
    soft_share: float = 0.8
    # Adam's step on the log of each coded channel's scale; 0 = the scales stay those of least weight error
    scale_lr: float = 0.0
    # Adam's step on the model's 1-D parameters that are not compressed (BatchNorm scales and shifts, biases), tuned
    # beside the codes; they are then stored in the artifact and counted in its bytes (artifact.tuned_names).
    # 0 = they stay the model's own and cost no byte, as they do with permutation.enabled (the stored values would
    # have to follow its channel orders)
    affine_lr: float = 0.01
    # How the tuned values are stored: each tensor's change from the model's own value at this many bits, on a
    # symmetric grid of one fp16 step per tensor (tuned_values.py), or null: every value in fp16
    affine_bits: int | None = 6
    # In a coded layer where more than this share of the stored codes are 0, those zeros stay 0 (every other code
    # still moves by one level): there a zero that becomes +-1 costs many more coded bits than the codec choice
    # counted. 1 = every code moves (the refined codes' growth is then met by choosing again: compressor.py).
    keep_zeros_above: float = 1.0
    # With entropy coding and a target_ratio: each code move is paid for in the bits it adds under its layer's code
    # histogram (code_rate.py), at a price that rises while the refined codes are over the bytes the target leaves
    # them, so the refined artifact lands on the target; false: codes move for the output alone, and refined codes
    # over the target are met by choosing again (compressor.py)
    rate_aware: bool = True
    # With entropy coding and a target_ratio: the share of the target's bytes the codec choice leaves free for the
    # refined codes (moved codes have another histogram and take other bytes)
    code_reserve: float = 0.1
    batch_size: int = 32
    # The arithmetic of the refined network's pass in each refinement step: 32 (fp32), bf16 (its forward and backward
    # under bf16 autocast; the codes, the loss and the optimiser in fp32), or auto as for input_precision. Lightning's
    # trainer.precision would put the loss, the codes' rounding and the evaluation in bf16 too.
    precision: str = "32"
    feature_weight: float = 1.0    # weight of matching intermediate outputs (see `match`); 0 = logits only
    # Which intermediate outputs are matched: every compressed layer's (layers), or every block's (blocks: the
    # module that holds a compressed layer, where it returns one tensor, as in BRECQ's block reconstruction; else
    # the layer itself), so that the layers of a block may trade errors that cancel at its output
    match: str = "layers"
    # How each batch is seen (views.py): none (as made) | flip_shift (randomly flipped and shifted) | mixup (each
    # input mixed with another of the batch) | cutmix (a random box of each image taken from another)
    views: str = "none"
    # Hard-sample weighting: each input's loss weighted by (its loss / the batch's mean loss)^hard_weight, so the
    # inputs the compressed network gets most wrong count most (as in HAST); 0 = every input alike
    hard_weight: float = 0.0

    def __post_init__(self) -> None:
        g = "refinement"
        self.enabled = bool(self.enabled)
        self.inputs = _choice(g, "inputs", self.inputs, ("bn_stats", "noise", "data"))
        self.views = _choice(g, "views", self.views, VIEW_KINDS)
        self.mixed_views = _choice(g, "mixed_views", self.mixed_views, VIEW_KINDS)
        self.input_precision = _choice(g, "input_precision", str(self.input_precision), ("auto", "32", "bf16"))
        self.precision = _choice(g, "precision", str(self.precision), ("auto", "32", "bf16"))
        self.match = _choice(g, "match", self.match, ("layers", "blocks"))
        self.start = _choice(g, "start", self.start, ("nearest", "compensated", "sequential"))
        self.input_schedule = _choice(g, "input_schedule", self.input_schedule, ("constant", "cosine"))
        self.input_lr = _positive(g, "input_lr", self.input_lr)
        self.hard_weight = _positive(g, "hard_weight", self.hard_weight, allow_zero=True)
        for key in ("num_inputs", "input_steps", "steps", "batch_size", "refresh"):
            setattr(self, key, _integer(g, key, getattr(self, key), 1 if key != "input_steps" else 0))
        self.input_jitter = _positive(g, "input_jitter", self.input_jitter, allow_zero=True)
        if self.input_jitter >= 0.5:
            raise ConfigError(f"big2small.refinement.input_jitter is a share of the image below 0.5 (got "
                              f"{self.input_jitter})")
        self.lr = _positive(g, "lr", self.lr)
        self.code_lr = _positive(g, "code_lr", self.code_lr)
        self.soft_share = _positive(g, "soft_share", self.soft_share, allow_zero=True)
        if self.soft_share > 1:
            raise ConfigError(f"big2small.refinement.soft_share is a share in [0, 1] (got {self.soft_share})")
        self.scale_lr = _positive(g, "scale_lr", self.scale_lr, allow_zero=True)
        self.affine_lr = _positive(g, "affine_lr", self.affine_lr, allow_zero=True)
        if self.affine_bits is not None:
            self.affine_bits = _integer(g, "affine_bits", self.affine_bits, TUNED_MIN_BITS)
            if self.affine_bits > TUNED_MAX_BITS:
                raise ConfigError(f"big2small.refinement.affine_bits is {TUNED_MIN_BITS}..{TUNED_MAX_BITS} or null "
                                  f"(got {self.affine_bits})")
        self.keep_zeros_above = _positive(g, "keep_zeros_above", self.keep_zeros_above, allow_zero=True)
        self.rate_aware = _flag(g, "rate_aware", self.rate_aware)
        self.code_reserve = _positive(g, "code_reserve", self.code_reserve, allow_zero=True)
        if self.code_reserve >= 0.5:
            raise ConfigError(f"big2small.refinement.code_reserve is a share below 0.5 (got {self.code_reserve})")
        if self.keep_zeros_above > 1:
            raise ConfigError(f"big2small.refinement.keep_zeros_above is a share in [0, 1] (got {self.keep_zeros_above})")
        self.feature_weight = _positive(g, "feature_weight", self.feature_weight, allow_zero=True)
        self.class_weight = _positive(g, "class_weight", self.class_weight, allow_zero=True)
        if self.light_above_bits is not None:
            self.light_above_bits = _positive(g, "light_above_bits", self.light_above_bits)
        if self.compensate_above_bits is not None:
            self.compensate_above_bits = _positive(g, "compensate_above_bits", self.compensate_above_bits)
        if self.mix_below_bits is not None:
            self.mix_below_bits = _positive(g, "mix_below_bits", self.mix_below_bits)
        if self.adversarial_below_bits is not None:
            self.adversarial_below_bits = _positive(g, "adversarial_below_bits", self.adversarial_below_bits)
        self.adversarial_step = _positive(g, "adversarial_step", self.adversarial_step, allow_zero=True)
        if self.heavy_below_bits is not None:
            self.heavy_below_bits = _positive(g, "heavy_below_bits", self.heavy_below_bits)
            if self.light_above_bits is not None and self.heavy_below_bits > self.light_above_bits:
                raise ConfigError(f"big2small.refinement.heavy_below_bits ({self.heavy_below_bits}) is above "
                                  f"light_above_bits ({self.light_above_bits}): a plan cannot take both budgets")

    def for_bits_per_weight(self, bits_per_weight: float) -> RefinementSettings:
        """These settings with the budget a plan of `bits_per_weight` is refined on (light_above_bits,
        heavy_below_bits), the views of its inputs (mix_below_bits, adversarial_below_bits) and the codes it starts
        from (compensate_above_bits)."""
        settings = self
        if self.compensate_above_bits is not None and bits_per_weight < self.compensate_above_bits:
            settings = dataclasses.replace(settings, start="nearest")
        if self.heavy_below_bits is not None and bits_per_weight < self.heavy_below_bits:
            settings = dataclasses.replace(settings, steps=round(HEAVY_STEP_FACTOR * self.steps),
                                           feature_weight=HEAVY_FEATURE_FACTOR * self.feature_weight)
        if self.mix_below_bits is not None and bits_per_weight < self.mix_below_bits and self.views == "none":
            settings = dataclasses.replace(settings, views=self.mixed_views)
        if self.adversarial_below_bits is None or bits_per_weight >= self.adversarial_below_bits:
            settings = dataclasses.replace(settings, adversarial_step=0.0)
        if self.light_above_bits is None or bits_per_weight < self.light_above_bits:
            return settings
        return dataclasses.replace(settings, input_steps=round(LIGHT_INPUT_STEP_SHARE * self.input_steps),
                                   input_lr=LIGHT_INPUT_LR_FACTOR * self.input_lr, input_schedule="cosine",
                                   steps=max(1, round(LIGHT_STEP_SHARE * self.steps)), soft_share=0.0)


def input_shape_setting(value) -> list[int] | None:
    """The model's input shape without the batch dim ([C, H, W] for images), or None to infer it."""
    if value is None:
        return None
    shape = list(value)
    if not shape or any(isinstance(s, bool) or int(s) != s or int(s) < 1 for s in shape):
        raise ConfigError(f"big2small.input_shape must be a list of positive ints like [3, 32, 32] (got {value})")
    return [int(s) for s in shape]
