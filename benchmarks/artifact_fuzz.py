"""The long run of the artifact fuzz: many seeded forgeries of every compressor's artifact, and what loading gave.

    python benchmarks/artifact_fuzz.py --cases 10000            # per artifact; the suite runs 1,008
    python benchmarks/artifact_fuzz.py --replay quant:4711      # one case again: its kind and outcome
    python benchmarks/artifact_fuzz.py --compressors big2small-codes --cases 100   # Big2Small's layer codes alone

Prints a markdown table: per compressor and kind of forgery, the cases refused (ArtifactError), rebuilt into the
very same model, and rebuilt into a different well-formed one, then the wall time. The forgeries, and which
outcomes each kind allows, are those of the suite's test (tests/artifact_forgery.py); a case that breaks its
kind's rule, or raises anything but ArtifactError, stops the run naming the case.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the forgeries live with the tests

from tests.artifact_forgery import ORIGINALS, load_originals, run_case, run_cases, table  # noqa: E402
from tests.methods.roundtrip import digits_sized_cnn  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases per artifact")
    parser.add_argument("--start", type=int, default=0, help="index of the first case")
    parser.add_argument("--compressors", nargs="+", default=ORIGINALS, choices=ORIGINALS)
    parser.add_argument("--replay", metavar="COMPRESSOR:INDEX", help="run one case and print its kind and outcome")
    args = parser.parse_args()
    if args.replay:
        name, index = args.replay.rsplit(":", 1)
        print(run_case(name, int(index), load_originals([name])[name], digits_sized_cnn()))
        return
    originals = load_originals(args.compressors)
    started = time.perf_counter()
    counts = {}
    for name in args.compressors:
        counts[name] = run_cases(name, originals[name], args.cases, args.start)
        print(f"{name}: {args.cases} cases, {time.perf_counter() - started:.0f} s so far", file=sys.stderr)
    print("\n".join(table(counts)))
    total = args.cases * len(args.compressors)
    seconds = time.perf_counter() - started
    print(f"\n{total} cases in {seconds:.1f} s ({1000 * seconds / total:.2f} ms per case)")


if __name__ == "__main__":
    main()
