"""Prompt sources for DDPO: literal prompts, prompt files, and templates such as "a(n) [animal]".

A `--prompts` value is read as a file when it names an existing file (or ends
in .txt, in which case a missing file is an error rather than a prompt): one
prompt per line, blank lines and lines starting with '#' skipped. Any prompt
may be a template: `[name]` draws a word from a built-in list (see WORD_LISTS),
`[red|blue|green]` from the listed words, and "a(n)" becomes "a" or "an" to
suit the next word. Drawing uses the trainer's generator, so a resumed run
draws the same prompts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...toyworld import COLORS, SHAPES, SIZES

_ANIMALS = (
    "cat", "dog", "horse", "cow", "sheep", "pig", "goat", "rabbit", "fox", "wolf", "bear", "deer", "lion",
    "tiger", "elephant", "giraffe", "zebra", "monkey", "kangaroo", "koala", "panda", "owl", "eagle", "duck",
    "swan", "penguin", "parrot", "flamingo", "frog", "turtle", "snake", "lizard", "crocodile", "dolphin",
    "whale", "octopus", "crab", "butterfly", "bee", "snail", "hedgehog", "squirrel", "mouse", "otter",
    "raccoon", "camel", "llama", "ostrich", "iguana", "alpaca",
)  # fmt: skip
_ACTIVITIES = (
    "riding a bike", "reading a book", "playing chess", "flying a kite", "cooking dinner", "playing the piano",
    "washing the dishes", "painting a picture", "doing homework", "skiing down a hill",
)  # fmt: skip

#: Built-in word lists for `[name]` slots.
WORD_LISTS: dict[str, tuple[str, ...]] = {
    "animal": _ANIMALS,
    "activity": _ACTIVITIES,
    "color": tuple(COLORS),
    "colour": tuple(COLORS),
    "shape": SHAPES,
    "size": tuple(SIZES),
}

_SLOT = re.compile(r"\[([^\[\]]*)\]")
_ARTICLE = re.compile(r"\b([Aa])\(n\)(\s+)(\W*)(\w)")


def _options(slot: str, where: str) -> tuple[str, ...]:
    if "|" in slot:
        words = tuple(w.strip() for w in slot.split("|"))
        if not all(words):
            raise ValueError(f"{where}: empty choice in [{slot}]")
        return words
    key = slot.strip().lower()
    if key not in WORD_LISTS:
        raise ValueError(f"{where}: unknown template slot [{slot}]; use one of {', '.join('[' + k + ']' for k in WORD_LISTS)} or [word|word|…]")
    return WORD_LISTS[key]


def fix_articles(text: str) -> str:
    """'a(n) owl' → 'an owl', 'a(n) cat' → 'a cat' (by the next letter: a vowel takes 'an')."""

    def choose(match: re.Match[str]) -> str:
        article = match.group(1) + ("n" if match.group(4).lower() in "aeiou" else "")
        return article + match.group(2) + match.group(3) + match.group(4)

    return _ARTICLE.sub(choose, text)


class Template:
    """A prompt with `[slot]`s; `fill(choices)` picks one option per slot."""

    def __init__(self, text: str, where: str = "prompt") -> None:
        self.text = text
        self.parts = _SLOT.split(text)  # literal, slot, literal, slot, …, literal
        self.slots = [_options(slot, f"{where} {text!r}") for slot in self.parts[1::2]]

    def fill(self, choices: Sequence[int]) -> str:
        out = []
        for i, part in enumerate(self.parts):
            out.append(part if i % 2 == 0 else self.slots[i // 2][choices[i // 2] % len(self.slots[i // 2])])
        return fix_articles("".join(out))

    @property
    def variants(self) -> int:
        count = 1
        for options in self.slots:
            count *= len(options)
        return count


def _read_prompt_file(path: Path) -> list[tuple[str, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"prompt file {path}: not UTF-8 text ({error})") from None
    except OSError as error:
        raise ValueError(f"prompt file {path}: cannot be read ({error})") from None
    found = [(f"{path}:{n}", line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")]
    if not found:
        raise ValueError(f"prompt file {path}: no prompts (one per line; '#' starts a comment)")
    return found


class PromptSource(torch.utils.data.Dataset):
    """The prompts a DDPO run samples from; indexable (deterministic fills) for the trainer's previews."""

    def __init__(self, values: Sequence[str]) -> None:
        entries: list[tuple[str, str]] = []
        for i, value in enumerate(values):
            value = str(value).strip()
            if not value:
                continue
            path = Path(value).expanduser()
            if path.is_file():
                entries += _read_prompt_file(path)
            elif value.lower().endswith(".txt"):
                raise ValueError(f"prompts: prompt file {path} does not exist")
            else:
                entries.append((f"prompts[{i}]", value))
        if not entries:
            raise ValueError("prompts: give at least one prompt, prompt file or template")
        self.templates = [Template(text, where) for where, text in entries]
        #: filled prompts never drawn for training (the held-out ones, see held_out.py)
        self.exclude: frozenset[str] = frozenset()

    def subset(self, templates: Sequence[Template], exclude: set[str] | frozenset[str] = frozenset()) -> PromptSource:
        """A source over some of these templates that never draws the `exclude` prompts."""
        if not templates:
            raise ValueError("prompts: nothing left to train on")
        part = object.__new__(type(self))
        part.templates = list(templates)
        part.exclude = frozenset(exclude)
        return part

    def __len__(self) -> int:
        return len(self.templates)

    def __getitem__(self, index: int) -> dict[str, Any]:
        template = self.templates[index]
        return {"caption": template.fill([0] * len(template.slots))}

    def draw(self, count: int, generator: torch.Generator) -> list[str]:
        """`count` prompts: a template chosen uniformly, then each slot's word uniformly (held-out ones redrawn)."""
        prompts = []
        for _ in range(count):
            for _attempt in range(1000):  # held-out prompts are at most a quarter of the fillings: redraw them
                template = self.templates[int(torch.randint(len(self.templates), (1,), generator=generator))]
                choices = [int(torch.randint(len(options), (1,), generator=generator)) for options in template.slots]
                prompt = template.fill(choices)
                if prompt not in self.exclude:
                    break
            else:
                raise RuntimeError("prompts: every draw landed on a held-out prompt")
            prompts.append(prompt)
        return prompts
