"""The listwise (Plackett–Luce) objective, ranking data, and a short run from the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lib_alignment.training.methods import DPO, Errors, Listwise, plackett_luce_nll

RES = 32


def _rank_major(per_ranking: list[list[float]]) -> torch.Tensor:
    """[[e best, …, e worst] per ranking] → the trainer's rank-major layout [m·B]."""
    return torch.tensor(per_ranking, dtype=torch.float64).t().reshape(-1)


def test_two_image_rankings_give_exactly_the_dpo_loss_and_gradient():
    g = torch.Generator().manual_seed(0)
    reference = 0.3 + 0.05 * torch.rand(8, generator=g, dtype=torch.float64)
    policy = (reference + 0.001 * torch.randn(8, generator=g, dtype=torch.float64)).requires_grad_(True)
    weights = torch.tensor([1.0, 0.5, 1.0, 1.0])
    listwise = Listwise(5000.0).loss(Errors(policy, reference), {"group": 2, "weight": weights})
    dpo = DPO(5000.0).loss(Errors(policy, reference), {"weight": weights})
    assert listwise.loss.item() == pytest.approx(dpo.loss.item(), rel=1e-12)
    (g_list,) = torch.autograd.grad(listwise.loss, policy)
    (g_dpo,) = torch.autograd.grad(dpo.loss, policy)
    torch.testing.assert_close(g_list, g_dpo)
    assert float(listwise.metrics["reward_accuracy"]) == pytest.approx(float(dpo.metrics["reward_accuracy"]))


def test_three_image_ranking_matches_the_plackett_luce_probability():
    beta = 100.0
    policy = _rank_major([[0.20, 0.25, 0.31], [0.40, 0.38, 0.39]])
    reference = _rank_major([[0.21, 0.24, 0.30], [0.41, 0.40, 0.37]])
    out = Listwise(beta).loss(Errors(policy, reference), {"group": 3})
    expected = []
    for b in range(2):
        r = [-0.5 * beta * (policy[k * 2 + b] - reference[k * 2 + b]).item() for k in range(3)]
        e = [math.exp(v) for v in r]
        probability = e[0] / (e[0] + e[1] + e[2]) * e[1] / (e[1] + e[2])
        expected.append(-math.log(probability))
    assert out.loss.item() == pytest.approx(sum(expected) / 2, rel=1e-9)
    # adding the same reward to every image of a ranking changes nothing
    shifted = plackett_luce_nll(torch.tensor([[1.0, 0.5, -0.2]]) + 7.0)
    assert shifted.item() == pytest.approx(plackett_luce_nll(torch.tensor([[1.0, 0.5, -0.2]])).item(), rel=1e-6)


def test_rankings_load_check_and_expand_to_the_pairs_they_imply(tmp_path: Path):
    from lib_alignment.training.data import DatasetValidationError, load_preference_data
    from lib_alignment.training.data.rankings import RankingDataset, rankings_to_pairs
    from lib_alignment.training.data.synthetic import make_toy_rankings
    from lib_alignment.training.data_stream import collate

    table = make_toy_rankings(tmp_path / "r", 5, m=3, resolution=RES, seed=1)
    data = load_preference_data(table, method="listwise", resolution=RES)
    assert isinstance(data, RankingDataset) and len(data) == 5
    item = data[0]
    assert item["pixel_values"].shape == (3, 3, RES, RES)
    batch = collate([data[0], data[1]])
    assert batch["group"] == 3 and batch["pixel_values"].shape[0] == 6
    torch.testing.assert_close(batch["pixel_values"][1], data[1]["pixel_values"][0])  # rank-major: best of item 1 second
    torch.testing.assert_close(batch["pixel_values"][2], data[0]["pixel_values"][1])
    assert len(rankings_to_pairs(data)) == 5 * 3
    lines = table.read_text().splitlines()
    (tmp_path / "r" / "bad.csv").write_text(lines[0] + "\n" + lines[1].rsplit(",", 1)[0] + ",\n")
    with pytest.raises(DatasetValidationError, match="every row must rank 3"):
        load_preference_data(tmp_path / "r" / "bad.csv", method="listwise", resolution=RES)


def test_held_out_score_of_rankings_counts_every_implied_pair():
    from lib_alignment.training.validation import score_gains

    gains = torch.tensor([[0.3, 0.2, 0.1], [0.1, 0.3, 0.2]])  # all 3 right; 1 of 3 right
    accuracy, _ = score_gains(gains, [{}, {}], scale=1.0)
    assert accuracy == pytest.approx(4 / 6)


@pytest.mark.slow
def test_listwise_trains_on_rankings_from_the_command_line(tmp_path: Path, capsys):
    from training_helpers import train_from_cli

    from lib_alignment.training.data.synthetic import make_toy_rankings

    table = make_toy_rankings(tmp_path / "r", 4, m=3, resolution=RES, seed=0)
    code = train_from_cli(table, tmp_path / "out", "listwise", "lw", RES, batch_size=2)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    steps = [json.loads(line) for line in captured.out.splitlines() if line.startswith('{"event": "step"')]
    assert len(steps) == 2
    assert steps[0]["loss"] == pytest.approx(math.log(2) + math.log(3), abs=1e-4)  # LoRA at init: uniform over 3!, −log(1/6)
