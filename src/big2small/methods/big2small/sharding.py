"""Splitting INRs across ranks so that each rank's share costs about the same."""

from __future__ import annotations


def balanced_shares(costs: list[float], ranks: int) -> list[list[int]]:
    """Greedy longest-processing-time split: each item, most costly first, goes to the least loaded rank.

    Deterministic (ties broken by item index, then rank index), so every rank computes the same split.
    """
    shares: list[list[int]] = [[] for _ in range(ranks)]
    loads = [0.0] * ranks
    for item in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(ranks), key=lambda r: (loads[r], r))
        shares[rank].append(item)
        loads[rank] += costs[item]
    return [sorted(share) for share in shares]
