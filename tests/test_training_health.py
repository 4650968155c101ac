"""Health verdicts: each rule fires on the numbers that define it and not on a healthy run."""

from __future__ import annotations

import math

import pytest
import torch

from lib_alignment.training.health import HealthMonitor
from lib_alignment.training.methods import DPO, KTO, Errors
from lib_alignment.training.methods.base import relative_drift


def _feed(monitor: HealthMonitor, rows: list[dict]) -> None:
    for step, row in enumerate(rows, start=1):
        monitor.observe_step(step, {"loss": 0.69, "grad_norm": 0.5, **row})


def test_a_flat_margin_after_enough_steps_is_not_learning_and_says_what_to_raise():
    monitor = HealthMonitor("dpo", total=100)
    _feed(monitor, [{"reward_accuracy": 0.5, "reward_margin": 0.01, "drift": 0.001}] * 30)
    verdict = monitor.verdict()
    assert verdict.state == "not_learning"
    assert "learning rate" in verdict.advice and "β" in verdict.advice
    assert verdict.numbers["train_accuracy"] == pytest.approx(0.5)


def test_the_same_numbers_before_enough_steps_are_too_early():
    monitor = HealthMonitor("dpo", total=1000)
    _feed(monitor, [{"reward_accuracy": 0.5, "reward_margin": 0.01}] * 30)  # 30 < 10% of 1000
    assert monitor.verdict().state == "early"


def test_rising_held_out_accuracy_is_learning_with_the_numbers_behind_it():
    monitor = HealthMonitor("dpo", total=100)
    _feed(monitor, [{"reward_accuracy": 0.8, "reward_margin": 2.0, "drift": 0.02}] * 30)
    monitor.observe_validation(0, 0.5, 0.0)
    monitor.observe_validation(30, 0.75, 1.0)
    verdict = monitor.verdict()
    assert verdict.state == "learning"
    assert "0.50 → 0.75" in verdict.reason


def test_training_accuracy_at_one_while_held_out_falls_is_over_optimising():
    monitor = HealthMonitor("dpo", total=100)
    _feed(monitor, [{"reward_accuracy": 1.0, "reward_margin": 5.0, "drift": 0.05}] * 40)
    for step, accuracy in ((0, 0.5), (10, 0.8), (20, 0.85), (30, 0.7)):
        monitor.observe_validation(step, accuracy, 0.0)
    verdict = monitor.verdict()
    assert verdict.state == "over_optimising"
    assert "0.85 (step 20)" in verdict.reason and "Lower β" in verdict.advice
    # the same run with held-out accuracy still at its best is learning
    steady = HealthMonitor("dpo", total=100)
    _feed(steady, [{"reward_accuracy": 1.0, "reward_margin": 5.0, "drift": 0.05}] * 40)
    for step, accuracy in ((0, 0.5), (10, 0.8), (20, 0.85), (30, 0.84)):
        steady.observe_validation(step, accuracy, 0.0)
    assert steady.verdict().state == "learning"


@pytest.mark.parametrize("row, words", [({"reward_margin": 80.0, "drift": 0.1}, "exploding"), ({"reward_margin": 3.0, "drift": 0.9}, "moved far")])
def test_an_exploding_margin_or_a_large_drift_is_over_optimising(row, words):
    monitor = HealthMonitor("dpo", total=100)
    _feed(monitor, [{"reward_accuracy": 1.0, **row}] * 30)
    verdict = monitor.verdict()
    assert verdict.state == "over_optimising" and words in verdict.reason


def test_loss_spikes_and_non_finite_values_are_unstable():
    monitor = HealthMonitor("dpo", total=100)
    rows = [{"reward_accuracy": 0.7, "reward_margin": 1.0, "loss": 0.5}] * 20
    rows[12] = {**rows[12], "loss": 9.0}
    rows[17] = {**rows[17], "loss": 12.0}
    _feed(monitor, rows)
    verdict = monitor.verdict()
    assert verdict.state == "unstable" and "spiked 2 times" in verdict.reason
    one_spike = HealthMonitor("dpo", total=100)
    rows[17] = {**rows[17], "loss": 0.5}
    _feed(one_spike, rows)
    assert one_spike.verdict().state != "unstable"
    broken = HealthMonitor("kto", total=100)
    _feed(broken, [{"reward_accuracy": 0.7, "reward_margin": 1.0, "grad_norm": math.inf}])
    assert broken.verdict().state == "unstable"


def test_ddpo_verdicts_follow_the_reward_trend_clip_fraction_and_kl():
    rising = HealthMonitor("ddpo", total=40)
    _feed(rising, [{"reward_mean": 1.0 + 0.05 * i, "reward_std": 0.2, "clipfrac": 0.1, "kl_to_base": 0.01} for i in range(40)])
    assert rising.verdict().state == "learning"
    flat = HealthMonitor("ddpo", total=40)
    _feed(flat, [{"reward_mean": 1.0, "reward_std": 0.2, "clipfrac": 0.1, "kl_to_base": 0.01}] * 40)
    assert flat.verdict().state == "not_learning"
    clipped = HealthMonitor("ddpo", total=40)
    _feed(clipped, [{"reward_mean": 1.0, "reward_std": 0.2, "clipfrac": 0.9}] * 40)
    assert clipped.verdict().state == "unstable"


def test_methods_report_margin_spread_and_drift_from_the_reference():
    policy = torch.tensor([0.10, 0.30, 0.20, 0.20])
    reference = torch.tensor([0.20, 0.20, 0.20, 0.20])
    out = DPO(10.0).loss(Errors(policy, reference), {})
    logits = -0.5 * 10.0 * ((policy[:2] - reference[:2]) - (policy[2:] - reference[2:]))
    assert float(out.metrics["reward_margin_std"]) == pytest.approx(float(logits.std(unbiased=False)))
    assert float(out.metrics["drift"]) == pytest.approx((0.1 + 0.1) / 4 / 0.2)
    assert float(relative_drift(reference, reference)) == 0.0
    kto = KTO(10.0).loss(Errors(policy, reference), {"label": torch.tensor([1.0, 0.0, 1.0, 0.0])})
    assert float(kto.metrics["drift"]) == pytest.approx(0.25) and float(kto.metrics["reward_margin_std"]) > 0


def test_the_job_summary_keeps_the_latest_verdict_and_held_out_curve_and_the_tab_shows_it(tmp_path):
    import json

    from lib_alignment.jobs.plot import render_health
    from lib_alignment.jobs.progress import EventSummary
    from lib_alignment.ui.training_view import verdict_html

    events = [
        {"event": "start", "time": 1, "run": "r", "step": 0, "total": 20},
        {"event": "validation", "time": 2, "run": "r", "step": 0, "accuracy": 0.5, "margin": 0.0},
        {"event": "step", "time": 3, "run": "r", "step": 10, "total": 20, "loss": 0.6, "reward_accuracy": 0.7, "grad_norm": 0.3},
        {"event": "validation", "time": 4, "run": "r", "step": 10, "accuracy": 0.8, "margin": 1.5},
        {"event": "health", "time": 5, "run": "r", "state": "learning", "title": "Learning", "step": 10, "reason": "held-out accuracy 0.50 → 0.80", "advice": ""},
        {"event": "health", "time": 6, "run": "r", "state": "over_optimising", "title": "Over-optimising", "step": 20, "reason": "drift <big>", "advice": "Lower β"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    summary = EventSummary(path)
    summary.update()
    assert summary.verdict["state"] == "over_optimising"
    assert summary.series["heldout_accuracy"] == [(0, 0.5), (10, 0.8)]
    assert summary.health_keys()[:2] == ["heldout_accuracy", "reward_accuracy"]
    assert summary.reward_key() == "heldout_accuracy"  # the tab's second curve
    shown = verdict_html(summary.verdict)
    assert "Over-optimising" in shown and "Lower β" in shown and "&lt;big&gt;" in shown
    assert verdict_html({}) == ""
    image = render_health(summary.series, summary.health_keys(), total=20)
    assert image.width == 760 and image.height == 220


@pytest.mark.parametrize("margin, words", [(0.004, "looks small"), (12.0, "looks large"), (0.8, "workable")])
def test_beta_guidance_from_the_first_steps_margins(margin, words):
    monitor = HealthMonitor("dpo", total=200)  # guidance after 10 steps
    _feed(monitor, [{"reward_accuracy": 0.6, "reward_margin": margin, "reward_margin_std": margin / 2}] * 9)
    assert monitor.verdict().guidance == ""
    _feed(monitor, [{"reward_accuracy": 0.6, "reward_margin": margin, "reward_margin_std": margin / 2}] * 10)
    guidance = monitor.verdict().guidance
    assert words in guidance
    # MaPO's β weighs a loss term, not the margin: no guidance
    mapo = HealthMonitor("mapo", total=200)
    _feed(mapo, [{"reward_accuracy": 0.6, "reward_margin": margin}] * 20)
    assert mapo.verdict().guidance == ""


def test_a_verdict_changes_only_after_the_new_state_holds_and_saturated_gradients_are_no_spikes():
    monitor = HealthMonitor("dpo", total=100)
    healthy = {"reward_accuracy": 0.8, "reward_margin": 2.0, "reward_margin_std": 1.0, "drift": 0.05}
    _feed(monitor, [healthy] * 25)
    assert monitor.verdict().state == "learning"
    drifting = {**healthy, "drift": 10.0}  # the window mean passes the limit at once
    states = []
    for step in range(26, 30):
        monitor.observe_step(step, {"loss": 0.1, "grad_norm": 0.5, **drifting})
        states.append(monitor.verdict().state)
    assert states == ["learning", "learning", "over_optimising", "over_optimising"]
    # gradients that shrink as the loss saturates, then return to their early size: not a spike
    saturated = HealthMonitor("dpo", total=100)
    rows = [{**healthy, "grad_norm": 1.0}] * 10 + [{**healthy, "grad_norm": 0.01}] * 6 + [{**healthy, "grad_norm": 1.2}] * 2
    for step, row in enumerate(rows, start=1):
        saturated.observe_step(step, {"loss": 0.3, **row})
    assert saturated.verdict().state != "unstable"
