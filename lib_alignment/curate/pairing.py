"""Which two images to ask about next: Swiss-tournament pairing within prompt groups, skipping pairs whose
order the earlier answers already imply (a > b and b > c make a vs c a wasted click).

Everything here is a pure function of the groups and the answers so far, so a resumed session asks the same
questions as one that never stopped.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    group: str
    left: str
    right: str


def beats_closure(items: Iterable[str], judgements: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    """For each item, every item it beats directly or through a chain of (winner, loser) judgements."""
    direct: dict[str, set[str]] = defaultdict(set)
    members = set(items)
    for winner, loser in judgements:
        if winner in members and loser in members and winner != loser:
            direct[winner].add(loser)
    closure: dict[str, set[str]] = {}
    for item in members:
        seen: set[str] = set()
        stack = list(direct.get(item, ()))
        while stack:
            other = stack.pop()
            if other not in seen:
                seen.add(other)
                stack.extend(direct.get(other, ()))
        seen.discard(item)
        closure[item] = seen
    return closure


def known_pairs(closure: Mapping[str, set[str]]) -> set[frozenset[str]]:
    """Unordered pairs whose order is known (directly judged or implied)."""
    return {frozenset((a, b)) for a, beaten in closure.items() for b in beaten}


def next_pair(
    groups: Mapping[str, Sequence[str]],
    judgements: Sequence[tuple[str, str, str]],
    skipped: Iterable[frozenset[str]] = (),
    seed: int = 0,
) -> Pair | None:
    """The most informative unasked pair, or None when every group's order is known (or skipped).

    judgements: (group, winner, loser). The group with the fewest answers per image comes first (covering
    prompts before refining one); in it, the image compared least meets the unknown partner whose score
    (wins − losses in the implied order) is closest to its own — a Swiss round without rematches."""
    skip = set(skipped)
    by_group: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for group, winner, loser in judgements:
        by_group[group].append((winner, loser))
    order = sorted(groups, key=lambda g: (len(by_group[g]) / max(len(groups[g]), 1), g))
    for group in order:
        items = list(groups[group])
        if len(items) < 2:
            continue
        pair = _pair_in_group(group, items, by_group[group], skip, seed)
        if pair is not None:
            return pair
    return None


def _pair_in_group(
    group: str, items: list[str], judged: list[tuple[str, str]], skip: set[frozenset[str]], seed: int
) -> Pair | None:
    closure = beats_closure(items, judged)
    known = known_pairs(closure)
    beaten_by: dict[str, int] = defaultdict(int)
    for beaten in closure.values():
        for item in beaten:
            beaten_by[item] += 1
    score = {item: len(closure[item]) - beaten_by[item] for item in items}
    played: dict[str, int] = defaultdict(int)
    for winner, loser in judged:
        played[winner] += 1
        played[loser] += 1
    rng = random.Random(f"{seed}|{group}")
    tiebreak = {item: rng.random() for item in items}
    for item in sorted(items, key=lambda i: (played[i], tiebreak[i])):
        partners = [
            other
            for other in items
            if other != item and frozenset((item, other)) not in known and frozenset((item, other)) not in skip
        ]
        if partners:
            best = min(partners, key=lambda o: (abs(score[o] - score[item]), played[o], tiebreak[o]))
            left, right = (item, best) if rng.random() < 0.5 else (best, item)
            return Pair(group, left, right)
    return None


@dataclass
class Progress:
    judgements: int
    implied: int  # pairs whose order is known, directly or through chains
    possible: int  # pairs of images that share a prompt
    prompts_covered: int
    prompts: int  # groups with two or more images
    cyclic_triples: int
    judged_triples: int

    @property
    def intransitive_share(self) -> float | None:
        return self.cyclic_triples / self.judged_triples if self.judged_triples else None


def progress(groups: Mapping[str, Sequence[str]], judgements: Sequence[tuple[str, str, str]]) -> Progress:
    """Counts for the progress line and the consistency estimate.

    Consistency: among triples of images whose three pairs were all judged directly, the share that form a
    cycle (a > b > c > a); a user who ranks by one consistent taste scores 0."""
    by_group: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for group, winner, loser in judgements:
        by_group[group].append((winner, loser))
    implied = possible = covered = prompts = cyclic = triples = 0
    for group, items in groups.items():
        if len(items) < 2:
            continue
        prompts += 1
        possible += len(items) * (len(items) - 1) // 2
        judged = by_group.get(group, [])
        if judged:
            covered += 1
        implied += len(known_pairs(beats_closure(items, judged)))
        c, t = _triples(judged)
        cyclic += c
        triples += t
    return Progress(len(judgements), implied, possible, covered, prompts, cyclic, triples)


def _triples(judged: list[tuple[str, str]]) -> tuple[int, int]:
    """(cyclic, total) triples whose three pairs have a direct answer (the latest answer per pair counts)."""
    latest: dict[frozenset[str], str] = {}
    for winner, loser in judged:
        latest[frozenset((winner, loser))] = winner
    items = sorted({item for pair in latest for item in pair})
    if len(items) > 200:  # a session this dense on one prompt is rare; bound the cubic count
        items = items[:200]
    cyclic = total = 0
    for a, b, c in itertools.combinations(items, 3):
        pairs = (frozenset((a, b)), frozenset((b, c)), frozenset((a, c)))
        if all(p in latest for p in pairs):
            total += 1
            wins = defaultdict(int)
            for p in pairs:
                wins[latest[p]] += 1
            if max(wins.values()) == 1:  # each won once: a cycle
                cyclic += 1
    return cyclic, total
