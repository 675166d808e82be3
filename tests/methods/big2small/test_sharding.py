from big2small.methods.big2small.sharding import balanced_shares


def test_shares_cover_every_item_once_and_balance_cost():
    costs = [10, 1, 7, 3, 3, 6, 2]
    shares = balanced_shares(costs, 2)
    assert sorted(i for share in shares for i in share) == list(range(7))
    loads = [sum(costs[i] for i in share) for share in shares]
    assert max(loads) - min(loads) <= 2
    assert balanced_shares(costs, 2) == shares
    assert balanced_shares(costs, 1) == [list(range(7))]
