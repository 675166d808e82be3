import torch

from big2small.methods.big2small.losses import frequency_term, frequency_weights


def test_no_difference_costs_nothing():
    a = torch.randn(8, 18)
    assert frequency_term(a - a, 1.0) == 0


def test_high_frequency_errors_cost_more_than_equal_energy_low_frequency_errors():
    rows = torch.arange(16.0)[:, None].expand(16, 16)
    low = torch.ones(16, 16)                            # a constant offset: frequency zero
    high = torch.cos(torch.pi * rows)                   # alternating rows: the highest row frequency
    zero = torch.zeros(16, 16)
    assert torch.allclose((low**2).mean(), (high**2).mean())
    assert frequency_term(high - zero, 1.0) > 1.5 * frequency_term(low - zero, 1.0)
    weights = frequency_weights(16, 16, 2.0)
    assert weights[0, 0] == 1 and torch.isclose(weights.max(), torch.tensor(4.0))


def test_a_stack_of_matrices_gets_one_term_each_equal_to_its_own():
    generator = torch.Generator().manual_seed(3)
    predicted, target = torch.randn(4, 8, 18, generator=generator), torch.randn(4, 8, 18, generator=generator)
    batched = frequency_term(predicted - target, 1.0)
    assert batched.shape == (4,)
    singles = torch.stack([frequency_term(p - t, 1.0) for p, t in zip(predicted, target, strict=True)])
    torch.testing.assert_close(batched, singles)
