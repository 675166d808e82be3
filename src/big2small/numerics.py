"""Numerical constants shared across the package."""

# Floor of a denominator that is a norm, a variance or a maximum: a ratio over an all-zero tensor stays finite
# (and is then 0 or huge, which the caller's checks report) instead of becoming NaN.
DENOMINATOR_FLOOR = 1e-12
