"""DDPO's advantages (per-prompt tracker, batch, group) and objectives (PPO clip, REINFORCE), on fixed tensors."""

from __future__ import annotations

import pytest
import torch

from lib_alignment.training.ddpo.stat_tracker import PerPromptStatTracker, compute_advantages, group_advantages
from lib_alignment.training.methods import DDPO, Errors, ppo_loss, reinforce_loss


def _z(values, reference):
    reference = torch.tensor(reference, dtype=torch.float64)
    return (torch.tensor(values, dtype=torch.float64) - reference.mean()) / (reference.std(unbiased=False) + 1e-6)


def test_tracker_uses_batch_statistics_until_a_prompt_has_min_count_rewards():
    tracker = PerPromptStatTracker(buffer_size=4, min_count=3)
    prompts = ["cat", "cat", "dog", "dog"]
    first = tracker.update(prompts, torch.tensor([1.0, 3.0, 10.0, 14.0]))
    torch.testing.assert_close(first, _z([1.0, 3.0, 10.0, 14.0], [1.0, 3.0, 10.0, 14.0]))  # whole batch
    second = tracker.update(["cat", "dog"], torch.tensor([5.0, 12.0]))
    # each prompt now has 3 rewards: its own buffer decides
    torch.testing.assert_close(second, torch.cat([_z([5.0], [1.0, 3.0, 5.0]), _z([12.0], [10.0, 14.0, 12.0])]))
    tracker.update(["cat", "cat"], torch.tensor([7.0, 9.0]))
    assert list(tracker.buffers["cat"]) == [3.0, 5.0, 7.0, 9.0]  # the oldest fell out of the 4-buffer
    restored = PerPromptStatTracker(buffer_size=4, min_count=3)
    restored.load_state_dict(tracker.state_dict())
    batch = (["cat", "dog"], torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(restored.update(*batch), tracker.update(*batch))


def test_group_advantages_compare_samples_of_one_prompt_only():
    prompts = ["a", "b", "a", "b", "c"]
    rewards = torch.tensor([1.0, 100.0, 3.0, 300.0, 7.0])
    advantages = group_advantages(prompts, rewards)
    torch.testing.assert_close(advantages[[0, 2]], _z([1.0, 3.0], [1.0, 3.0]))
    torch.testing.assert_close(advantages[[1, 3]], _z([100.0, 300.0], [100.0, 300.0]))
    assert float(advantages[4]) == 0.0  # a lone sample has nothing to be better than


def test_batch_mode_and_clipping():
    rewards = torch.tensor([0.0, 0.0, 0.0, 100.0])
    plain = compute_advantages("batch", ["x"] * 4, rewards)
    assert float(plain.max()) > 1.5
    clipped = compute_advantages("batch", ["x"] * 4, rewards, clip=1.5)
    assert float(clipped.max()) == 1.5 and torch.equal(clipped[:3], plain[:3])
    with pytest.raises(ValueError, match="not one of"):
        compute_advantages("nope", ["x"], torch.zeros(1))


def test_ppo_loss_and_gradient_inside_and_outside_the_clip_range():
    old = torch.zeros(4)
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0])
    eps = 0.1
    # ratios 1.05 (inside), 1.3 (above the range, positive advantage: clipped, no gradient),
    # 1.3 with a negative advantage (pessimistic side: unclipped, gradient), 0.8 negative (clipped)
    log_prob = torch.log(torch.tensor([1.05, 1.3, 1.3, 0.8])).requires_grad_(True)
    loss, ratio = ppo_loss(log_prob, old, advantages, eps)
    torch.testing.assert_close(ratio, torch.tensor([1.05, 1.3, 1.3, 0.8]))
    torch.testing.assert_close(loss, torch.tensor([-1.05, -1.1, 1.3, 0.9]).mean())
    loss.backward()
    expected = torch.tensor([-1.05, 0.0, 1.3, 0.0]) / 4  # d(−A·r)/d log r = −A·r where unclipped
    torch.testing.assert_close(log_prob.grad, expected)


def test_first_step_loss_is_minus_mean_advantage_and_reinforce_gradient():
    log_prob = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    advantages = torch.tensor([2.0, -1.0, 0.5])
    method = DDPO("is", clip_range=1e-4)
    out = method.loss(Errors(policy=log_prob), {"old_log_prob": log_prob.detach(), "advantages": advantages})
    torch.testing.assert_close(out.loss, -advantages.mean())
    assert float(out.metrics["ratio"]) == 1.0 and float(out.metrics["approx_kl"]) == 0.0 and float(out.metrics["clipfrac"]) == 0.0
    loss = reinforce_loss(log_prob, advantages)
    loss.backward()
    torch.testing.assert_close(log_prob.grad, -advantages / 3)
    sf = DDPO("sf").loss(Errors(policy=log_prob.detach()), {"old_log_prob": log_prob.detach() - 0.5, "advantages": advantages})
    torch.testing.assert_close(sf.loss, -(advantages * log_prob.detach()).mean())
    assert DDPO("is").hyperparameters()["clip_range"] == 1e-4 and "beta" not in DDPO("is").hyperparameters()
    with pytest.raises(ValueError, match="ddpo_estimator"):
        DDPO("ppo")
