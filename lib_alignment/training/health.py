"""Is the run learning? Plain-language verdicts from the per-step health metrics and held-out scores.

`HealthMonitor` is fed every logged step (loss, reward accuracy, margin and its
spread, drift from the base model, gradient norm) and every held-out score, and
answers with a `Verdict`: one of

- ``learning`` — held-out accuracy (or, before any held-out score, the training
  accuracy and margin) has risen;
- ``not_learning`` — after enough steps the margin is still flat at the start
  value: raise the learning rate or β;
- ``over_optimising`` — training accuracy near 1 while held-out accuracy falls
  from its best, the margin exploding, or the model drifting far from the base:
  lower β or the learning rate, stop earlier (the best checkpoint is kept);
- ``unstable`` — loss or gradient spikes, non-finite values;
- ``early`` — too few steps to tell.

DDPO has its own rules: held-out reward, the training reward's trend, clip fraction, approximate KL and drift (KL to the base).
Every verdict carries the numbers it was drawn from and what to change.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

#: Methods whose β multiplies the implicit reward margin (so the margin's size says whether β fits).
BETA_SCALES_MARGIN = ("dpo", "ipo", "dpo_hinge", "kto")
STATES = ("early", "learning", "not_learning", "over_optimising", "unstable")
TITLES = {
    "early": "Too early to tell",
    "learning": "Learning",
    "not_learning": "Not learning yet",
    "over_optimising": "Over-optimising",
    "unstable": "Unstable",
}


@dataclass
class Verdict:
    """One verdict: `state` (see STATES), why (with numbers), what to change, at which step."""

    state: str
    step: int
    reason: str
    advice: str = ""
    numbers: dict[str, float] = field(default_factory=dict)
    #: β guidance from the first steps' margins, once known (see HealthMonitor.beta_guidance)
    guidance: str = ""

    @property
    def title(self) -> str:
        return TITLES.get(self.state, self.state)

    def text(self) -> str:
        """One line for the trainer's log: 'step 40: Learning — held-out accuracy 0.50 → 0.81.'"""
        return f"step {self.step}: {self.title} — {self.reason}" + (f" {self.advice}" if self.advice else "") + (f" ({self.guidance})" if self.guidance else "")

    def to_event(self) -> dict[str, Any]:
        return {**asdict(self), "title": self.title}


@dataclass
class Thresholds:
    """Where the verdicts switch. Margins are in the method's logit units (DPO: β/2·Δ)."""

    #: steps (fraction of the run, at least `min_steps`) before "not learning yet" may be said
    min_steps: int = 20
    min_fraction: float = 0.1
    #: |mean margin| below this is "flat" (DPO loss stays within 0.05 of ln 2)
    flat_margin: float = 0.1
    flat_accuracy: float = 0.55
    #: training accuracy counted as "near 1", and a held-out fall from the best that counts
    saturated_accuracy: float = 0.95
    held_out_drop: float = 0.1
    #: held-out accuracy this far over its first value counts as learning
    held_out_gain: float = 0.05
    #: mean margin beyond which the sigmoid is saturated and only drift remains
    margin_limit: float = 30.0
    #: relative error gap to the base model that counts as drifting far
    drift_limit: float = 0.5
    #: a loss (or gradient norm) over `spike_factor` × the recent median, `spikes` times in the window
    spike_factor: float = 4.0
    spikes: int = 2
    #: a new verdict replaces the current one only after holding this many consecutive checks (non-finite: at once)
    confirm: int = 3
    #: DDPO: share of clipped ratios that says the updates are too large, KL to base that says "far"
    clipfrac_limit: float = 0.5
    kl_limit: float = 5.0
    #: β guidance: margin size (logit units) after the first steps below which β looks small, above which large
    beta_small: float = 0.05
    beta_large: float = 5.0


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class HealthMonitor:
    """Collects step rows and held-out scores; `verdict()` says how the run is going."""

    def __init__(self, method: str, total: int, window: int | None = None, thresholds: Thresholds | None = None) -> None:
        self.method = method
        self.total = max(1, int(total))
        self.limits = thresholds or Thresholds()
        self.window = window or max(5, min(50, self.total // 10))
        self.rows: deque[dict[str, float | None]] = deque(maxlen=self.window)
        self.first_rows: list[dict[str, float | None]] = []
        self.held_out: list[tuple[int, float, float]] = []
        self.non_finite: str | None = None
        self.step = 0
        self.guidance = ""
        self._current: Verdict | None = None
        self._candidate: str | None = None
        self._candidate_count = 0
        #: steps after which the margins say whether β suits this model and data
        self.guidance_step = max(10, min(50, self.total // 20))

    # ------------------------------------------------------------------ input
    def observe_step(self, step: int, row: dict[str, Any]) -> None:
        """A logged step's values (loss, reward_accuracy, reward_margin, drift, grad_norm, ... )."""
        self.step = int(step)
        clean = {k: _finite(v) for k, v in row.items()}
        for key in ("loss", "grad_norm"):
            if key in row and row[key] is not None and clean.get(key) is None:
                self.non_finite = f"{key} was {row[key]} at step {step}"
        self.rows.append(clean)
        if len(self.first_rows) < self.window:
            self.first_rows.append(clean)

    def observe_validation(self, step: int, accuracy: float, margin: float) -> None:
        """A held-out score (accuracy share, mean margin; DDPO: mean reward, its spread), in step order."""
        self.held_out.append((int(step), float(accuracy), float(margin)))

    def observe_non_finite(self, step: int, message: str) -> None:
        self.step = int(step)
        self.non_finite = message

    # ------------------------------------------------------------------ helpers
    def _recent(self, key: str) -> list[float]:
        return [v for row in self.rows if (v := row.get(key)) is not None]

    def _spikes(self, key: str) -> tuple[int, float, float]:
        """(spikes in the window, largest value, median) of a positive series.

        A spike is a value over `spike_factor` × the larger of the recent median and the
        median of the run's first steps: once the loss saturates its gradients shrink,
        and an ordinary step must not then look like a spike.
        """
        values = self._recent(key)
        if len(values) < 5:
            return 0, float("nan"), float("nan")
        median = statistics.median(values)
        early = [v for row in self.first_rows if (v := row.get(key)) is not None]
        floor = max(0.05 if key == "loss" else 1e-8, statistics.median(early) if early else 0.0)
        count = sum(1 for v in values if v > self.limits.spike_factor * max(median, floor))
        return count, max(values), median

    # ------------------------------------------------------------------ verdict
    def verdict(self) -> Verdict:
        """The current verdict: a changed state is taken once it held `confirm` checks in a row, so it does not flap."""
        raw = self._ddpo_verdict() if self.method == "ddpo" else self._preference_verdict()
        if self.method != "ddpo":
            raw.guidance = self.beta_guidance()
        current = self._current
        if current is None or current.state == "early" or raw.state == current.state or self.non_finite:
            self._current, self._candidate, self._candidate_count = raw, None, 0
            return raw
        self._candidate_count = self._candidate_count + 1 if raw.state == self._candidate else 1
        self._candidate = raw.state
        if self._candidate_count >= self.limits.confirm:
            self._current, self._candidate, self._candidate_count = raw, None, 0
            return raw
        # keep the standing verdict, with today's numbers where they are the same kind of verdict
        return Verdict(current.state, self.step, current.reason, current.advice, current.numbers, raw.guidance)

    def beta_guidance(self) -> str:
        """Once `guidance_step` steps are logged: is β in a sensible range for this model and data (methods where β scales the margin)?"""
        if self.guidance or self.method not in BETA_SCALES_MARGIN or self.step < self.guidance_step:
            return self.guidance
        rows = [r for r in self.first_rows if r.get("reward_margin") is not None][-5:]
        if not rows:
            return ""
        size = _mean([max(abs(r["reward_margin"]), r.get("reward_margin_std") or 0.0) for r in rows])
        limits = self.limits
        if size < limits.beta_small:
            self.guidance = (f"β looks small for this model and data: after {self.step} steps the margins are about {size:.2g} "
                             "(the loss barely moves from its start). Raise β (×4) or the learning rate.")
        elif size > limits.beta_large:
            self.guidance = (f"β looks large for this model and data: the margins are already about {size:.3g} after {self.step} steps, "
                             "where the loss saturates and over-optimisation follows. Lower β (÷4) or the learning rate.")
        else:
            self.guidance = f"β is in a workable range: margins about {size:.2g} after {self.step} steps."
        return self.guidance

    def _unstable(self) -> Verdict | None:
        step, limits = self.step, self.limits
        if self.non_finite:
            return Verdict("unstable", step, f"a non-finite value: {self.non_finite}.",
                           "Lower the learning rate or β, or train in fp32 (for DPO/KTO at a large β not bf16: the margin is a small difference of large errors).", {})
        for key, name in (("loss", "loss"), ("grad_norm", "gradient norm")):
            count, peak, median = self._spikes(key)
            if count >= limits.spikes:
                return Verdict(
                    "unstable", step,
                    f"the {name} spiked {count} times in the last {len(self.rows)} logged steps (peak {peak:.3g}, median {median:.3g}).",
                    "Lower the learning rate (÷3) or β, raise gradient accumulation for larger batches, or keep max_grad_norm at 1.",
                    {f"{key}_spikes": count, f"{key}_peak": peak, f"{key}_median": median},
                )
        return None

    def _preference_verdict(self) -> Verdict:
        limits, step = self.limits, self.step
        unstable = self._unstable()
        if unstable:
            return unstable
        accuracy = _mean(self._recent("reward_accuracy"))
        margin = _mean(self._recent("reward_margin"))
        margin_std = _mean(self._recent("reward_margin_std"))
        drift = _mean(self._recent("drift"))
        numbers = {k: v for k, v in (("train_accuracy", accuracy), ("margin", margin), ("margin_std", margin_std), ("drift", drift)) if math.isfinite(v)}
        if self.held_out:
            first, best, last = self.held_out[0], max(self.held_out, key=lambda h: h[1]), self.held_out[-1]
            numbers.update(held_out_first=first[1], held_out_best=best[1], held_out_best_step=best[0], held_out_last=last[1])
        else:
            first = best = last = None
        lower = "Lower β or the learning rate, or train fewer steps; the best checkpoint by held-out score is kept as NAME-best."
        if last is not None and best is not None and best[1] - last[1] >= limits.held_out_drop and accuracy >= limits.saturated_accuracy:
            return Verdict("over_optimising", step,
                           f"training accuracy {accuracy:.2f} while held-out accuracy fell from {best[1]:.2f} (step {best[0]}) to {last[1]:.2f}.",
                           lower, numbers)
        if math.isfinite(margin) and margin > limits.margin_limit:
            return Verdict("over_optimising", step,
                           f"the reward margin is exploding: mean {margin:.3g} (spread {margin_std:.3g}), far past where the loss stops teaching anything ({limits.margin_limit:g}).",
                           lower, numbers)
        if math.isfinite(drift) and drift > limits.drift_limit:
            return Verdict("over_optimising", step,
                           f"the LoRA has moved far from the base model: its denoising errors differ by {100 * drift:.0f}% (limit {100 * limits.drift_limit:.0f}%).",
                           lower, numbers)
        if last is not None and first is not None and len(self.held_out) >= 2 and last[1] - first[1] >= limits.held_out_gain:
            return Verdict("learning", step, f"held-out accuracy {first[1]:.2f} → {last[1]:.2f} (best {best[1]:.2f} at step {best[0]}); training accuracy {accuracy:.2f}, margin {margin:.3g}.", "", numbers)
        enough = step >= max(limits.min_steps, int(limits.min_fraction * self.total))
        flat = math.isfinite(margin) and abs(margin) < limits.flat_margin and accuracy <= limits.flat_accuracy
        held_flat = last is not None and first is not None and len(self.held_out) >= 2 and last[1] - first[1] < limits.held_out_gain / 2
        if enough and (flat or (held_flat and accuracy <= limits.flat_accuracy)):
            why = f"after {step} steps the training accuracy is {accuracy:.2f} and the mean margin {margin:.3g}"
            if last is not None and first is not None:
                why += f"; held-out accuracy {first[1]:.2f} → {last[1]:.2f}"
            return Verdict("not_learning", step, why + ".",
                           "Raise the learning rate (×3) or β (×2), train longer, or check that the preferred images really differ.", numbers)
        if not self.held_out or len(self.held_out) < 2:
            first_margin = _mean([v for row in self.first_rows if (v := row.get("reward_margin")) is not None])
            if enough and accuracy >= 0.6 and margin > max(limits.flat_margin, first_margin if math.isfinite(first_margin) else 0):
                return Verdict("learning", step, f"training accuracy {accuracy:.2f}, mean margin {margin:.3g} (spread {margin_std:.3g}); no held-out score yet.", "", numbers)
        if not enough:
            so_far = f"; training accuracy {accuracy:.2f}, margin {margin:.3g}" if math.isfinite(accuracy) else ""
            return Verdict("early", step, f"{step} of {max(limits.min_steps, int(limits.min_fraction * self.total))} steps before a verdict{so_far}.", "", numbers)
        return Verdict("learning" if accuracy > limits.flat_accuracy else "not_learning", step,
                       f"training accuracy {accuracy:.2f}, mean margin {margin:.3g}.",
                       "" if accuracy > limits.flat_accuracy else "Raise the learning rate (×3) or β (×2), or train longer.", numbers)

    def _ddpo_verdict(self) -> Verdict:
        """DDPO on the same footing as DPO: held-out reward first (learning / over-optimising), then the training
        reward's trend against its spread, with clip fraction, approximate KL and drift (KL to the base) as guards.
        Held-out scores here are (step, mean reward, reward spread)."""
        limits, step = self.limits, self.step
        unstable = self._unstable()
        if unstable:
            return unstable
        clipfrac = _mean(self._recent("clipfrac"))
        approx_kl = _mean(self._recent("approx_kl"))
        kl = _mean(self._recent("kl_to_base"))
        rewards = [v for row in [*self.first_rows, *self.rows] if (v := row.get("reward_mean")) is not None]
        stds = [v for row in [*self.first_rows, *self.rows] if (v := row.get("reward_std")) is not None]
        start, now = _mean([v for row in self.first_rows if (v := row.get("reward_mean")) is not None]), _mean(self._recent("reward_mean"))
        std = _mean(stds) if stds else float("nan")
        numbers = {k: v for k, v in (("reward_start", start), ("reward_now", now), ("reward_std", std), ("clipfrac", clipfrac),
                                     ("approx_kl", approx_kl), ("kl_to_base", kl)) if math.isfinite(v)}
        held = self.held_out
        if held:
            first, best, last = held[0], max(held[1:] or held, key=lambda h: h[1]), held[-1]
            numbers.update(held_out_first=first[1], held_out_best=best[1], held_out_best_step=best[0], held_out_last=last[1])
            held_spread = max(_mean([h[2] for h in held if math.isfinite(h[2])]), 1e-12)
        if math.isfinite(clipfrac) and clipfrac > limits.clipfrac_limit:
            return Verdict("unstable", step, f"{100 * clipfrac:.0f}% of the probability ratios are clipped (approximate KL per step {approx_kl:.3g}): each update moves the policy too far.",
                           "Lower the learning rate, or raise clip_range.", numbers)
        stop = "Set reward_target or early_stopping_patience, lower the learning rate, or stop earlier; the best checkpoint by held-out reward is kept as NAME-best."
        if len(held) >= 3 and best[1] - last[1] > 0.5 * held_spread and math.isfinite(now) and math.isfinite(start) and now > start:
            return Verdict("over_optimising", step,
                           f"the training reward keeps rising ({start:.4g} → {now:.4g}) while the held-out reward fell from {best[1]:.4g} (step {best[0]}) to {last[1]:.4g}.",
                           stop, numbers)
        if math.isfinite(kl) and kl > limits.kl_limit:
            return Verdict("over_optimising", step, f"drift: KL to the base model {kl:.3g} (limit {limits.kl_limit:g}) while the reward went {start:.4g} → {now:.4g}: the samples may be gaming the reward.",
                           stop, numbers)
        if len(held) >= 2 and last[1] - first[1] > 0.25 * held_spread:
            return Verdict("learning", step, f"held-out reward {first[1]:.4g} → {last[1]:.4g} (best {best[1]:.4g} at step {best[0]}, spread {held_spread:.3g}); training reward {now:.4g}.", "", numbers)
        if not rewards or step < max(limits.min_steps, int(limits.min_fraction * self.total)) or not math.isfinite(std):
            return Verdict("early", step, f"{step} steps; reward {now:.4g}.", "", numbers)
        gain = now - start
        if gain > 0.25 * max(std, 1e-12) and len(held) < 2:
            return Verdict("learning", step, f"mean reward {start:.4g} → {now:.4g} (spread {std:.3g}).", "", numbers)
        why = f"mean reward {start:.4g} → {now:.4g}, under a quarter of its spread {std:.3g}"
        if len(held) >= 2:
            why = f"held-out reward {first[1]:.4g} → {last[1]:.4g} (spread {held_spread:.3g}); training reward {start:.4g} → {now:.4g}"
        return Verdict("not_learning", step, why + ".",
                       "Raise the learning rate, sample more per epoch, or check the reward separates the images.", numbers)


__all__ = ["STATES", "TITLES", "HealthMonitor", "Thresholds", "Verdict"]
