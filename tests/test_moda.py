"""MoDA (crossan.models.moda): B = 0 equals the shared bottleneck, gates, first step, counts."""

from __future__ import annotations

import pytest
import torch

from crossan.models.adapters import CrossModalSideAdapters
from crossan.models.moda import LowRankExperts, SharedMoDAAdapter, SharedMoDASideAdapters


def make(seed: int = 0) -> SharedMoDAAdapter:
    torch.manual_seed(seed)
    return SharedMoDAAdapter(dim=12, hidden=6, rank=4, n_experts=2, n_modalities=3, gate_dim=5)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 12, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


def test_b_zero_equals_shared_bottleneck_exactly_at_step_0() -> None:
    model = make()
    # Biggish bottleneck weights, so the check is not trivially about ~identity outputs.
    with torch.no_grad():
        for p in model.bottleneck.parameters():
            p.normal_()
    x, modality = batch()
    assert torch.equal(model(x, modality), model.bottleneck(x))
    assert not model.down_experts.B.any() and not model.up_experts.B.any()
    assert model.down_experts.A.std().item() == pytest.approx(0.01, rel=0.5)


def test_gates_sum_to_one_per_sample() -> None:
    experts = LowRankExperts(12, 6, rank=6, n_experts=3, n_modalities=4, gate_dim=5)
    gates = experts.gates(torch.tensor([0, 1, 2, 3, 3]))
    assert gates.shape == (5, 3)
    assert torch.allclose(gates.sum(-1), torch.ones(5))
    assert torch.equal(gates[3], gates[4])  # the gate depends only on the modality id


def test_first_step_moves_only_b_and_changes_the_output() -> None:
    model = make()
    x, modality = batch()
    modality = torch.where(modality == 2, torch.zeros_like(modality), modality)  # modality 2 absent
    before = model(x, modality).detach()
    model(x, modality).pow(2).sum().backward()
    for experts in (model.down_experts, model.up_experts):
        # A and the gate reach the loss only through B, which is 0 at step 0.
        assert not experts.A.grad.any()
        assert not experts.gate.weight.grad.any() and not experts.gate_embedding.weight.grad.any()
    assert model.up_experts.B.grad.abs().sum() > 0
    a_before = model.up_experts.A.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert model.up_experts.B.abs().sum() > 0
    assert torch.equal(model.up_experts.A, a_before)
    after = model(x, modality).detach()
    assert not torch.equal(after, before)
    changed = (after - before).abs().sum(-1) > 0
    assert changed.all()  # softmax gates weight every expert for every modality


def test_expert_update_follows_the_gate() -> None:
    """Put weight on one expert only: rows whose gate ignores it see no update."""
    experts = LowRankExperts(4, 3, rank=2, n_experts=2, n_modalities=2, gate_dim=2)
    with torch.no_grad():
        experts.B.normal_()
        experts.B[1].zero_()  # only expert 0 is non-zero
        experts.gate_embedding.weight.copy_(torch.tensor([[50.0, 0.0], [0.0, 50.0]]))
        experts.gate.weight.copy_(torch.eye(2))
        experts.gate.bias.zero_()
    x = torch.randn(4, 4)
    out = experts(x, torch.tensor([0, 1, 0, 1]))
    assert out[[0, 2]].abs().sum() > 0
    assert torch.allclose(out[[1, 3]], torch.zeros(2, 3), atol=1e-12)


@pytest.mark.parametrize(
    "dim, hidden, rank, n_experts, n_modalities, gate_dim",
    [(12, 6, 4, 2, 3, 5), (768, 64, 16, 4, 4, 16), (10, 3, 3, 1, 1, 1)],
)
def test_parameter_count_formula(dim: int, hidden: int, rank: int, n_experts: int, n_modalities: int, gate_dim: int) -> None:
    model = SharedMoDAAdapter(dim, hidden, rank, n_experts, n_modalities, gate_dim=gate_dim)
    assert SharedMoDAAdapter.count(dim, hidden, rank, n_experts, n_modalities, gate_dim) == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    experts = model.down_experts
    assert LowRankExperts.count(dim, hidden, rank, n_experts, n_modalities, gate_dim) == sum(
        p.numel() for p in experts.parameters()
    )


def test_one_more_modality_costs_only_gate_rows() -> None:
    two = SharedMoDAAdapter.count(768, 64, 16, 4, 2)
    three = SharedMoDAAdapter.count(768, 64, 16, 4, 3)
    assert three - two == 2 * 16  # one gate-embedding row in each of the two expert sets


def test_rejects_rank_not_divisible_by_experts() -> None:
    with pytest.raises(ValueError):
        LowRankExperts(4, 4, rank=5, n_experts=2, n_modalities=2)


def test_the_shared_tower_at_step_0_is_crossan_with_one_tower_copied_to_all() -> None:
    torch.manual_seed(0)
    modalities, dim, hidden, layers, item_dim = ("text", "image", "audio"), 8, 4, 3, 6
    shared = SharedMoDASideAdapters(modalities, dim, hidden, layers, item_dim, rank=4, n_experts=2)
    crossan = CrossModalSideAdapters(modalities, dim, hidden, layers, item_dim)
    with torch.no_grad():
        shared.gate_logits.normal_()
        crossan.gate_logits.copy_(shared.gate_logits)
        for tower in crossan.towers.values():
            for k, adapter in enumerate(tower.adapters):
                adapter.load_state_dict(shared.adapters[k].bottleneck.state_dict())
            tower.head.load_state_dict(shared.head.state_dict())
    states = {m: torch.randn(5, layers, dim) for m in modalities}
    torch.testing.assert_close(shared(states), crossan(states))  # B = 0: the experts add nothing
    assert shared(states).shape == (5, 3, item_dim)


def test_the_shared_tower_grows_slowly_with_the_modalities() -> None:
    for n in (1, 2, 4):
        modalities = ("text", "image", "video", "audio")[:n]
        model = SharedMoDASideAdapters(modalities, 16, 8, 3, 10, rank=4, n_experts=2, gate_dim=4)
        assert sum(p.numel() for p in model.parameters()) == SharedMoDASideAdapters.count(
            n, 16, 8, 3, 10, rank=4, n_experts=2, gate_dim=4)
    one = SharedMoDASideAdapters.count(1, 768, 64, 7, 64)
    four = SharedMoDASideAdapters.count(4, 768, 64, 7, 64)
    crossan = CrossModalSideAdapters(("text", "image", "video", "audio"), 768, 64, 7, 64)
    assert four - one == 7 * 2 * 3 * 16 + (4 * 7 * 5 - 1 * 7 * 2)  # gate rows and cross gates only
    assert four < sum(p.numel() for p in crossan.parameters()) / 3
