"""From the store's entries to what each objective trains on: pairs, KTO labels, whole rankings.

Rules (entries are read oldest first, so a later judgement of the same thing wins):

* pairs (DPO, IPO, MaPO, ORPO): a judgement gives winner > each loser; a ranking
  gives every image > each image ranked after it; likes give every liked image >
  every disliked image of the *same prompt* (latest label per image). One pair
  per caption and image pair: the latest entry decides its direction.
* KTO labels: an image's latest like/dislike decides; images without one are
  exclusive_win if they only ever won (a judgement's winner, a ranking's first),
  exclusive_lose if they only lost (losers, a ranking's last), intersections if
  both. A ranking's middle images say nothing on their own, as in Rank & Refine's export.
* rankings (listwise): ranking entries of the most common length m. A listwise
  job trains on them only when they are all the data (every pair comes from
  them); otherwise it trains on the pairs (rankings of two) and loses nothing.

The caption is the prompt of the entry's first image; entries whose images have
no prompt are left out (counted as ``no_prompt``) because training needs one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

WIN, LOSE, INTERSECTION = "exclusive_win", "exclusive_lose", "intersections"


@dataclass(frozen=True)
class Pair:
    caption: str
    winner: str
    loser: str
    entry_id: int


@dataclass(frozen=True)
class KtoLabel:
    caption: str
    image: str
    label: str  # WIN, LOSE or INTERSECTION
    entry_id: int


@dataclass(frozen=True)
class Ranking:
    caption: str
    images: tuple[str, ...]
    entry_id: int


@dataclass
class TrainingSets:
    pairs: list[Pair] = field(default_factory=list)
    labels: list[KtoLabel] = field(default_factory=list)
    rankings: list[Ranking] = field(default_factory=list)
    rankings_cover_pairs: bool = False
    no_prompt: int = 0

    @property
    def listwise_on_rankings(self) -> bool:
        """Whether a listwise job trains on whole rankings (else on the pairs)."""
        return bool(self.rankings) and self.rankings_cover_pairs

    def counts(self) -> dict[str, int]:
        return {
            "dpo_pairs": len(self.pairs),
            "kto_desirable": sum(label.label != LOSE for label in self.labels),
            "kto_undesirable": sum(label.label == LOSE for label in self.labels),
            "kto_intersections": sum(label.label == INTERSECTION for label in self.labels),
            "kto_labels": len(self.labels),
            "listwise_rankings": len(self.rankings) if self.listwise_on_rankings else 0,
            "listwise_m": len(self.rankings[0].images) if self.listwise_on_rankings else 2,
            "no_prompt": self.no_prompt,
        }

    def for_method(self, method: str) -> int:
        """How many training items `method` gets: labels for KTO, rankings or pairs for listwise, else pairs."""
        if method == "kto":
            return len(self.labels)
        if method == "listwise" and self.listwise_on_rankings:
            return len(self.rankings)
        return len(self.pairs)


def _prompt(record: Any) -> str:
    """The prompt of an ImageRecord, or the prompt itself (store.prompts() gives plain strings)."""
    return ((record if isinstance(record, str) else getattr(record, "prompt", "")) or "").strip()


def derive(entries: Sequence[Any], images: dict[str, Any] | None = None) -> TrainingSets:
    """TrainingSets from active entries (oldest first).

    The caption is the entry's `prompt` (the store's entries carry their first image's),
    or, given `images`, the prompt (or ImageRecord) of the first image looked up there."""
    sets = TrainingSets()
    pairs: dict[tuple[str, frozenset[str]], Pair] = {}
    explicit: dict[tuple[str, str], KtoLabel] = {}
    won: dict[tuple[str, str], int] = {}
    lost: dict[tuple[str, str], int] = {}
    latest_like: dict[str, tuple[bool, int, str]] = {}
    rankings: list[Ranking] = []
    ranking_pairs: set[tuple[str, frozenset[str]]] = set()

    def caption_of(entry: Any) -> str:
        if images is None:
            return (getattr(entry, "prompt", "") or "").strip()
        return _prompt(images.get(entry.images[0])) if entry.images else ""

    def add_pair(caption: str, winner: str, loser: str, entry_id: int) -> tuple[str, frozenset[str]]:
        key = (caption, frozenset((winner, loser)))
        pairs.pop(key, None)  # re-inserted: a later entry decides the direction
        pairs[key] = Pair(caption, winner, loser, entry_id)
        return key

    for entry in entries:
        caption = caption_of(entry)
        if not caption:
            sets.no_prompt += 1
            continue
        ids = list(entry.images)
        if entry.kind == "label":
            explicit[(caption, ids[0])] = KtoLabel(caption, ids[0], WIN if entry.liked else LOSE, entry.id)
            latest_like[ids[0]] = (bool(entry.liked), entry.id, caption)
        elif entry.kind == "judgement":
            won[(caption, ids[0])] = entry.id
            for loser in ids[1:]:
                lost[(caption, loser)] = entry.id
                ranking_pairs.discard(add_pair(caption, ids[0], loser, entry.id))
        elif entry.kind == "ranking":
            won[(caption, ids[0])] = entry.id
            lost[(caption, ids[-1])] = entry.id
            for i, better in enumerate(ids):
                for worse in ids[i + 1 :]:
                    ranking_pairs.add(add_pair(caption, better, worse, entry.id))
            rankings.append(Ranking(caption, tuple(ids), entry.id))

    # likes of one prompt as pairs: each liked image over each disliked one
    by_prompt: dict[str, tuple[list[tuple[str, int]], list[tuple[str, int]]]] = {}
    for image_id, (liked, entry_id, prompt) in latest_like.items():
        liked_list, disliked_list = by_prompt.setdefault(prompt, ([], []))
        (liked_list if liked else disliked_list).append((image_id, entry_id))
    label_pairs = 0
    for prompt, (liked_list, disliked_list) in by_prompt.items():
        for good, good_entry in liked_list:
            for bad, bad_entry in disliked_list:
                key = (prompt, frozenset((good, bad)))
                if key not in pairs:  # a direct judgement of the two says more than two separate labels
                    pairs[key] = Pair(prompt, good, bad, max(good_entry, bad_entry))
                    label_pairs += 1

    sets.pairs = list(pairs.values())
    labels = dict(explicit)
    for key in set(won) | set(lost):
        if key in labels:
            continue
        outcome = INTERSECTION if key in won and key in lost else (WIN if key in won else LOSE)
        labels[key] = KtoLabel(key[0], key[1], outcome, max(won.get(key, 0), lost.get(key, 0)))
    sets.labels = sorted(labels.values(), key=lambda label: label.entry_id)

    if rankings:
        sizes = Counter(len(r.images) for r in rankings)
        m = max(sizes, key=lambda size: (sizes[size], size))
        sets.rankings = [r for r in rankings if len(r.images) == m]
        sets.rankings_cover_pairs = len(sizes) == 1 and label_pairs == 0 and all(
            (p.caption, frozenset((p.winner, p.loser))) in ranking_pairs for p in sets.pairs
        )
    return sets
