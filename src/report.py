"""Rate-accuracy report of a sweep dir: python src/report.py outputs/sweeps/<name> [--ratio ...] [--x-axis ratio|bits]
[--tolerance ...]

Writes rate_accuracy.png, report.md and summary.csv into the sweep dir (the same files a multirun writes at its
end), from the jobs that finished; jobs still running or failed are named and left out.
"""

import argparse
import sys

from big2small.errors import OutputError
from big2small.report import RATIO_KEYS, X_AXES, make_report
from big2small.report.results import ReportError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a multirun's sweep dir (hydra.sweep.dir)")
    parser.add_argument("--ratio", choices=RATIO_KEYS, default=RATIO_KEYS[0],
                        help="x axis: ratio over the replaced weights (default) or over the whole model")
    parser.add_argument("--x-axis", choices=X_AXES, default=X_AXES[0],
                        help="the plot's x axis: the ratio (default) or bits per weight, 32 / ratio")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="metric drop counted as 'within one point' (default 0.01 for metrics in [0, 1])")
    args = parser.parse_args(argv)
    try:
        report = make_report(args.sweep_dir, ratio_key=args.ratio, tolerance=args.tolerance, x_axis=args.x_axis)
    except (ReportError, OutputError) as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    print(report.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
