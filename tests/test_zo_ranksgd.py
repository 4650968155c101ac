"""ZO-RankSGD: the estimate's sign and pair set, display-order mapping, resume, shell, line search, memory."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lib_alignment.zo import ZOSGD, RankSGD, order_from_scores, pair_count, rank_gradient, ranking_pairs


def _brute_force_pairs(order: list[int], m: int) -> set[tuple[int, int]]:
    """Pairs by definition: i beats j when i is ranked and j is ranked lower or not at all."""
    position = {c: r for r, c in enumerate(order)}
    return {
        (i, j)
        for i, j in itertools.permutations(range(m), 2)
        if i in position and (j not in position or position[j] > position[i])
    }


def _linear_scores(a: torch.Tensor):
    return lambda cands: (cands.reshape(cands.shape[0], -1) @ a.reshape(-1)).tolist()


def _run(opt: RankSGD, score, rounds: int) -> list[torch.Tensor]:
    xs = []
    for _ in range(rounds):
        cands = opt.ask()
        opt.tell(order_from_scores(score(cands)))
        xs.append(opt.x)
    return xs


@pytest.mark.parametrize(("m", "k"), [(2, 1), (4, 1), (4, 2), (6, 6), (6, 3), (10, 5), (10, 1), (10, 10), (7, 6)])
def test_pair_set_and_count_match_the_definition(m: int, k: int) -> None:
    order = list(torch.randperm(m, generator=torch.Generator().manual_seed(m * 31 + k))[:k].tolist())
    pairs = ranking_pairs(order, m)
    assert len(pairs) == len(set(pairs)) == pair_count(m, k) == k * (k - 1) // 2 + k * (m - k)
    assert set(pairs) == _brute_force_pairs(order, m)


@pytest.mark.parametrize(("m", "k"), [(5, 2), (6, 6), (8, 1)])
def test_estimate_is_mean_of_pair_differences(m: int, k: int) -> None:
    g = torch.Generator().manual_seed(3)
    perturbations = torch.randn(m, 3, 4, generator=g, dtype=torch.float64)
    order = torch.randperm(m, generator=g)[:k].tolist()
    expected = torch.stack([perturbations[i] - perturbations[j] for i, j in _brute_force_pairs(order, m)]).mean(0)
    torch.testing.assert_close(rank_gradient(perturbations, order), expected)


def test_estimate_points_up_a_linear_function() -> None:
    """We maximise: ranking by a·x (best first) must give estimates with positive correlation to a."""
    gen = torch.Generator().manual_seed(0)
    d, m = 64, 8
    a = torch.randn(d, generator=gen, dtype=torch.float64)
    total = torch.zeros(d, dtype=torch.float64)
    for _ in range(40):
        perturbations = torch.randn(m, d, generator=gen, dtype=torch.float64)
        order = order_from_scores((perturbations @ a).tolist())[:3]
        total += rank_gradient(perturbations, order)
    cosine = float(torch.nn.functional.cosine_similarity(total, a, dim=0))
    assert cosine > 0.5


@pytest.mark.parametrize("line_search", [False, True])
def test_optimiser_increases_a_linear_function(line_search: bool) -> None:
    d = 50
    a = torch.randn(d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x0 = torch.zeros(d, dtype=torch.float64)
    opt = RankSGD(x0, m=6, mu=0.5, lr=1.0, line_search=line_search, project_to_shell=False, seed=2)
    x = _run(opt, _linear_scores(a), 30)[-1]
    assert float(x @ a) > 5.0
    assert float(torch.nn.functional.cosine_similarity(x, a, dim=0)) > 0.3


def test_order_from_scores_is_best_first_and_stable_on_ties() -> None:
    assert order_from_scores([0.1, 0.5, 0.5, -1.0, 0.5]) == [1, 2, 4, 0, 3]
    with pytest.raises(ValueError, match="NaN"):
        order_from_scores([0.0, float("nan")])


def test_rank_round_maps_display_index_to_the_shown_candidate() -> None:
    """The 'rank best' offered in the line round must be exactly the candidate the user put first."""
    torch.manual_seed(0)
    opt = RankSGD(torch.randn(4, 5, 5), m=6, seed=7)
    shuffled_somewhere = False
    for _ in range(4):
        assert opt.round_type == "rank"
        cands = opt.ask()
        x = opt.x
        chosen = 4
        opt.tell([chosen, 1])
        assert opt.round_type == "line"
        line = opt.ask()
        roles = opt.roles
        shown = line[roles.index("rank best")]
        assert torch.equal(shown, cands[chosen])
        assert torch.equal(line[roles.index("current")], x)
        # The direction leans toward the chosen candidate more than toward any other one.
        cos = [float(torch.nn.functional.cosine_similarity((c - x).flatten(), opt.direction.flatten(), dim=0)) for c in cands]
        assert max(range(len(cos)), key=cos.__getitem__) == chosen
        shuffled_somewhere |= roles.index("current") != len(roles) - 1
        opt.tell([roles.index("current")])  # keep x; next round is a rank round again
    assert shuffled_somewhere, "line rounds were never shuffled, so the mapping test proves nothing"


def test_line_round_moves_to_exactly_the_candidate_put_first() -> None:
    torch.manual_seed(0)
    target = torch.randn(3, 4, 4)
    opt = RankSGD(torch.randn(3, 4, 4), m=6, mu=0.3, lr=1.0, seed=11)

    def closeness(cands: torch.Tensor) -> list[float]:
        return (-(cands - target).flatten(1).norm(dim=1)).tolist()

    positions = set()
    for _ in range(6):
        opt.tell(order_from_scores(closeness(opt.ask())))
        cands = opt.ask()
        roles = opt.roles
        order = order_from_scores(closeness(cands))
        before = opt.x
        opt.tell(order)
        positions.add(order[0])
        if roles[order[0]] == "current":
            assert torch.equal(opt.x, before)
        else:
            assert torch.equal(opt.x, cands[order[0]])
    assert len(positions) > 1


def test_display_order_is_a_shuffle_in_rank_rounds() -> None:
    """Internal candidate j is x + mu*xi_j; the display order must not be the identity every time."""
    x0 = torch.zeros(2, 3)
    opt = RankSGD(x0, m=5, mu=1.0, line_search=False, project_to_shell=False, seed=0)
    cands = opt.ask()
    gen = torch.Generator().manual_seed(0)
    internal = torch.randn(5, 2, 3, generator=gen)
    perm = [next(i for i in range(5) if torch.equal(internal[i], c)) for c in cands]
    assert sorted(perm) == list(range(5)) and perm != list(range(5))
    # Ranking the display-0 candidate first: the estimate with k=1 is p_best - mean(others).
    opt.tell([0])
    others = [internal[i] for i in range(5) if i != perm[0]]
    expected = opt.lr * (internal[perm[0]] - torch.stack(others).mean(0))
    torch.testing.assert_close(opt.x, x0 + expected)


@pytest.mark.parametrize("line_search", [True, False])
@pytest.mark.parametrize("mid_round", [False, True])
def test_resume_from_state_dict_is_bit_exact(line_search: bool, mid_round: bool) -> None:
    torch.manual_seed(5)
    x0 = torch.randn(4, 8, 8)
    target = torch.randn(4, 8, 8)

    def score(cands: torch.Tensor) -> list[float]:
        return (-(cands - target).flatten(1).norm(dim=1)).tolist()

    def make(x: torch.Tensor, seed: int) -> RankSGD:
        return RankSGD(x, m=5, k=3, mu=0.2, lr=1.5, line_search=line_search, seed=seed)

    straight = make(x0, 3)
    reference_cands, reference_x = [], []
    for _ in range(10):
        cands = straight.ask()
        straight.tell(order_from_scores(score(cands)))
        reference_cands.append(cands)
        reference_x.append(straight.x)

    first = make(x0, 3)
    for _ in range(4):
        first.tell(order_from_scores(score(first.ask())))
    if mid_round:
        first.ask()
    state = first.state_dict()
    first.ask()
    first.tell([2, 1, 0])  # later changes to `first` must not leak into `state`
    resumed = make(torch.zeros(4, 8, 8), 99)  # different x0 and seed: everything must come from the state
    resumed.load_state_dict(state)
    for r in range(4, 10):
        cands = resumed.ask()
        assert torch.equal(cands, reference_cands[r])
        resumed.tell(order_from_scores(score(cands)))
        assert torch.equal(resumed.x, reference_x[r])
    assert resumed.history == straight.history


def test_shell_projection_keeps_norm_sqrt_d() -> None:
    torch.manual_seed(0)
    x0 = torch.randn(4, 16, 16)
    d = x0.numel()
    target = torch.randn(4, 16, 16) * 3
    for line_search in (True, False):
        opt = RankSGD(x0, m=6, mu=0.5, lr=3.0, line_search=line_search, seed=1)
        for _ in range(12):
            cands = opt.ask()
            norms = cands.flatten(1).norm(dim=1)
            keep = [i for i, role in enumerate(opt.roles) if role != "current"]  # x itself: checked below
            torch.testing.assert_close(norms[keep], torch.full((len(keep),), math.sqrt(d)), rtol=1e-5, atol=0)
            opt.tell(order_from_scores((-(cands - target).flatten(1).norm(dim=1)).tolist()))
        assert not torch.equal(opt.x, x0)
        assert abs(float(opt.x.norm()) - math.sqrt(d)) < 1e-5 * math.sqrt(d)
    # Without projection the norm drifts (here: pulled toward a far target).
    free = RankSGD(x0, m=6, mu=0.5, lr=3.0, project_to_shell=False, seed=1)
    _run(free, lambda c: (-(c - target).flatten(1).norm(dim=1)).tolist(), 12)
    assert abs(float(free.x.norm()) - math.sqrt(d)) > 1.0


def test_line_search_never_accepts_a_worse_point() -> None:
    gen = torch.Generator().manual_seed(4)
    d = 30
    A = torch.randn(d, d, generator=gen, dtype=torch.float64)

    def f(points: torch.Tensor) -> torch.Tensor:  # a nonconvex-ish score to maximise
        return -((points @ A) ** 2).sum(-1) + 5 * torch.sin(points).sum(-1)

    opt = RankSGD(torch.randn(d, generator=gen, dtype=torch.float64), m=5, mu=0.3, lr=4.0, project_to_shell=False, seed=0)
    values = [float(f(opt.x))]
    moves = 0
    for _ in range(60):
        cands = opt.ask()
        opt.tell(order_from_scores(f(cands).tolist()))
        values.append(float(f(opt.x)))
        moves += int(opt.history[-1]["moved"])
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert moves >= 3 and values[-1] > values[0]


def _tensor_numel(obj: object) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if isinstance(obj, dict):
        return sum(_tensor_numel(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_numel(v) for v in obj)
    return 0


def test_memory_stays_flat_over_many_rounds() -> None:
    torch.manual_seed(0)
    x0 = torch.randn(4, 8, 8)
    opt = RankSGD(x0, m=6, seed=0, undo_depth=3)
    score = _linear_scores(torch.randn(4, 8, 8))
    _run(opt, score, 10)
    opt.ask()
    early = _tensor_numel(opt.state_dict())
    _run(opt, score, 190)
    opt.ask()
    late = _tensor_numel(opt.state_dict())
    assert late == early
    assert _tensor_numel(opt.history) == 0 and len(opt.history) == 200
    assert len(opt._undo) == 3


def test_undo_restores_the_pending_round_exactly() -> None:
    torch.manual_seed(0)
    opt = RankSGD(torch.randn(2, 4, 4), m=4, seed=3, undo_depth=2)
    first = opt.ask()
    opt.tell([2, 0])
    second = opt.ask()
    opt.tell([1])
    opt.undo()
    assert opt.round_type == "line" and torch.equal(opt.ask(), second)
    opt.undo()
    assert opt.round_type == "rank" and torch.equal(opt.ask(), first) and opt.rounds == 0 and opt.history == []
    with pytest.raises(RuntimeError, match="nothing to undo"):
        opt.undo()


def test_settings_change_takes_effect_at_the_next_round() -> None:
    opt = RankSGD(torch.zeros(3, 3), m=6, mu=0.1, seed=0)
    pending = opt.ask()
    opt.m = 4
    opt.mu = 1.0
    assert torch.equal(opt.ask(), pending)
    opt.tell([0])
    assert opt.ask().shape[0] == 4  # line round: 2 steps + rank best + current
    opt.tell([opt.roles.index("current")])
    cands = opt.ask()
    assert cands.shape[0] == 4 and float(cands.flatten(1).norm(dim=1).min()) > 0
    with pytest.raises(ValueError, match="m must be ≥ 3"):
        opt.m = 2
    with pytest.raises(ValueError, match="mu must be > 0"):
        opt.mu = 0
    with pytest.raises(ValueError, match="lr must be > 0"):
        opt.lr = -1


def test_bad_rankings_are_rejected_without_changing_state() -> None:
    opt = RankSGD(torch.zeros(3), m=4, k=2, seed=0, project_to_shell=False)
    with pytest.raises(RuntimeError, match="before ask"):
        opt.tell([0])
    opt.ask()
    for order, message in (([], "empty"), ([0, 0], "repeats"), ([5], "outside"), ([1], "k = 2")):
        with pytest.raises(ValueError, match=message):
            opt.tell(order)
    assert opt.rounds == 0 and not opt.can_undo
    opt.tell([1, 3, 0])  # more than k is fine: only the top k are used
    assert opt.history[-1]["k"] == 2 and opt.history[-1]["pairs"] == pair_count(4, 2)


def test_zosgd_ascends_and_resumes_exactly() -> None:
    d = 20
    a = torch.randn(d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    opt = ZOSGD(torch.zeros(d, dtype=torch.float64), m=6, mu=0.1, lr=0.5, seed=1)
    for _ in range(5):
        opt.tell(opt.ask() @ a)
    state = opt.state_dict()
    for _ in range(20):
        opt.tell(opt.ask() @ a)
    assert float(opt.x @ a) > 5 * float(a @ a)  # expected ≈ 25 · lr · (m−1)/m · |a|² ≈ 10 |a|²
    again = ZOSGD(torch.ones(d, dtype=torch.float64), m=6, seed=5)
    again.load_state_dict(state)
    for _ in range(20):
        again.tell(again.ask() @ a)
    assert torch.equal(again.x, opt.x)
