"""Every random stream of a Big2Small fit comes from (run seed, target ordinal[, step]), never from global state.

So an INR starts and samples the same whichever INRs share its stack or its rank, and a resumed fit draws what
the uninterrupted one would have. The strides are primes larger than any model's target count (and than 1 for
the step), so distinct (seed, ordinal, step) triples give distinct seeds.
"""

SEED_STRIDE = 1_000_003
ORDINAL_STRIDE = 7_919
MAX_SEED = 2**63  # torch.Generator seeds are 64-bit


def inr_seed(seed: int, ordinal: int) -> int:
    """Initial parameters of the INR of target `ordinal`."""
    return seed * SEED_STRIDE + ordinal


def sampling_seed(seed: int, ordinal: int, step: int) -> int:
    """The coordinates the INR of target `ordinal` is fitted on at `step` (fit.batch_size set)."""
    return (seed * SEED_STRIDE + ordinal * ORDINAL_STRIDE + step) % MAX_SEED


def input_seed(seed: int, pool: int) -> int:
    """Pool `pool` of the refinement's synthetic inputs (pool 0: the run seed itself)."""
    return (seed + pool * SEED_STRIDE) % MAX_SEED
