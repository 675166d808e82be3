import torch

from big2small.methods.big2small.coords import build_targets, grid


def test_grid_spans_minus_one_to_one_row_major():
    coords = grid([2, 3])
    assert coords.tolist() == [[-1, -1], [-1, 0], [-1, 1], [1, -1], [1, 0], [1, 1]]
    assert grid([1, 2]).tolist() == [[0, -1], [0, 1]]


def test_kernel_unit_gives_one_entry_per_kernel():
    weights = {"conv": torch.arange(2 * 3 * 9.0).reshape(2, 3, 3, 3), "fc": torch.ones(4, 5)}
    conv, fc = build_targets(weights, unit="kernel", scope="layer")
    assert conv.coords.shape == (6, 2) and conv.values.shape == (6, 9)
    assert torch.equal(conv.values[4], weights["conv"][1, 1].reshape(-1))
    assert fc.values.shape == (20, 1)
    assert torch.equal(conv.segments[0].matrix(conv.values), weights["conv"].reshape(2, -1))


def test_model_scope_adds_the_layer_index_and_groups_families():
    weights = {"a": torch.zeros(2, 2, 3, 3), "b": torch.ones(4, 2, 3, 3), "fc": torch.ones(3, 4)}
    targets = build_targets(weights, unit="kernel", scope="model")
    assert [t.key for t in targets] == ["model/d2k9", "model/d2k1"]
    convs = targets[0]
    assert convs.coords.shape == (4 + 8, 3)
    assert set(convs.coords[:4, 0].tolist()) == {-1.0} and set(convs.coords[4:, 0].tolist()) == {0.0}
    assert [(s.name, s.start, s.count) for s in convs.segments] == [("a", 0, 4), ("b", 4, 8)]


def test_layers_left_alone_are_their_own_targets_after_the_families():
    weights = {"a": torch.zeros(2, 2, 3, 3), "b": torch.ones(4, 2, 3, 3), "fc": torch.ones(3, 4)}
    targets = build_targets(weights, unit="kernel", scope="model", alone={"a", "fc"})
    assert [(t.key, t.ordinal) for t in targets] == [("model/d2k9", 0), ("a", 1), ("fc", 2)]
    family = targets[0]
    assert [s.name for s in family.segments] == ["b"]
    assert set(family.coords[:, 0].tolist()) == {0.0}  # b keeps its position in the model (1 of 0..2)
    assert torch.equal(targets[1].values, weights["a"].reshape(4, 9))
