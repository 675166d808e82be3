import copy

import lightning as L
import pytest
import torch
from torch import nn

from big2small.methods.big2small.networks import BatchedINR, build_network, layer_sizes
from big2small.methods.big2small.settings import INRSettings
from big2small.methods.big2small.storage import pack, stored_bytes, unpack


@pytest.mark.parametrize("kind", ["fourier", "siren"])
def test_each_inr_depends_only_on_its_seed_not_on_its_stack(kind):
    settings = INRSettings(kind=kind, width=8, frequencies=2)
    stack = build_network(settings, dims=2, outputs=3, width=8, seeds=[11, 12, 13])
    alone = build_network(settings, dims=2, outputs=3, width=8, seeds=[12])
    coords = torch.rand(1, 5, 2) * 2 - 1
    batched = stack(coords.expand(3, -1, -1))
    assert batched.shape == (3, 5, 3)
    assert torch.equal(batched[1], alone(coords)[0])
    assert torch.equal(stack(coords.expand(2, -1, -1), torch.tensor([0, 2]))[1], batched[2])


@pytest.mark.parametrize("bits", [16, 8, 6, 4])
def test_storage_round_trip(bits):
    settings = INRSettings(width=6, frequencies=1)
    net = build_network(settings, dims=2, outputs=1, width=6, seeds=[1, 2])
    stored = pack(net, bits)
    sizes = layer_sizes(settings, 2, 1, 6)
    assert sum(t[0].numel() * t.element_size() for t in stored.values()) == stored_bytes(sizes, bits)
    copy = build_network(settings, dims=2, outputs=1, width=6, seeds=[7, 8])
    unpack(copy, stored["fp16"], stored.get("codes"), bits)
    coords = torch.rand(2, 20, 2) * 2 - 1
    net.fake_quant = bits if bits < 16 else None  # what the quantisation-aware steps see is what is stored
    assert torch.allclose(copy(coords), net(coords), atol=2e-3)


def test_chunked_whole_grid_prediction_matches_the_plain_one_in_value_and_gradient(monkeypatch):
    from big2small.methods.big2small import fitting
    from big2small.methods.big2small.fitting import predict_in_chunks

    monkeypatch.setattr(fitting, "RETAINED_ACTIVATION_ELEMENTS", 0)  # recompute every grid, however small

    net = build_network(INRSettings(kind="siren"), dims=2, outputs=9, width=16, seeds=[0, 1, 2])
    coords = torch.rand(3, 50, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = net(coords)
    plain.square().sum().backward()
    plain_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    chunked = predict_in_chunks(net, coords, None, max_elements=3 * 16 * 7)  # 7 rows per chunk
    chunked.square().sum().backward()
    torch.testing.assert_close(chunked, plain)
    for got, wanted in zip((p.grad for p in net.parameters()), plain_grads, strict=True):
        torch.testing.assert_close(got, wanted)
    with torch.no_grad():  # decoding takes the same chunks without recomputation
        torch.testing.assert_close(predict_in_chunks(net, coords, None, max_elements=3 * 16 * 7), plain.detach())


def test_decoding_an_artifact_evaluates_large_grids_in_chunks(monkeypatch):
    """Rebuilding evaluates a large grid chunk by chunk (bounded hidden activations), with the same weights."""
    from big2small.methods.big2small import fitting
    from big2small.methods.big2small.compressor import Big2SmallCompressor

    def trainer(**kwargs):
        return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         **kwargs)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3), nn.Conv2d(32, 32, 3))
    compressed = Big2SmallCompressor(target_ratio=4, fit={"steps": 2}, refinement={"enabled": False},
                                     storage={"layer_choice": "inr"}).fit(
        model, trainer_factory=trainer)
    whole = Big2SmallCompressor.rebuild(compressed, copy.deepcopy(model)).state_dict()
    rows_seen, forward = [], BatchedINR.forward
    monkeypatch.setattr(fitting, "ACTIVATION_CHUNK_ELEMENTS", 4096)
    monkeypatch.setattr(BatchedINR, "forward",
                        lambda self, coords, which=None: rows_seen.append(coords.shape[1]) or forward(self, coords, which))
    chunked = Big2SmallCompressor.rebuild(compressed, copy.deepcopy(model)).state_dict()
    assert rows_seen and max(rows_seen) < 16 * 32
    for name, value in whole.items():
        torch.testing.assert_close(chunked[name], value)


def test_fitting_on_sampled_bands_evaluates_them_in_chunks(monkeypatch):
    """A band as large as a grid is recomputed chunk by chunk in backward, like a whole grid."""
    from big2small.methods.big2small import fitting
    from big2small.methods.big2small.compressor import Big2SmallCompressor

    def trainer(**kwargs):
        return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         **kwargs)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3))  # 512 kernel rows, bands of 256
    rows_seen, forward = [], BatchedINR.forward
    monkeypatch.setattr(fitting, "ACTIVATION_CHUNK_ELEMENTS", 4096)
    monkeypatch.setattr(fitting, "RETAINED_ACTIVATION_ELEMENTS", 4096)
    monkeypatch.setattr(BatchedINR, "forward",
                        lambda self, coords, which=None: rows_seen.append(coords.shape[1]) or forward(self, coords, which))
    Big2SmallCompressor(target_ratio=4, fit={"steps": 2, "batch_size": 256, "inrs": "all"}, refinement={"enabled": False}).fit(
        model, trainer_factory=trainer)
    assert rows_seen and max(rows_seen) < 256
