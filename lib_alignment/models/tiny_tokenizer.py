"""A small byte-level BPE vocabulary in CLIP's file format for the tiny model.

The real CLIP vocabulary has 49 408 tokens, which would make the tiny text
encoder's embedding table larger than the rest of the model. This one holds the
256 byte symbols (with and without the end-of-word mark), merges that turn each
toy-world word into a single token, and CLIP's two special tokens, so
`transformers.CLIPTokenizer` loads it unchanged and any text still tokenizes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ..toyworld import VOCABULARY_WORDS

END_OF_WORD = "</w>"
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
MODEL_MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte → printable character table of GPT-2/CLIP BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _apply_merges(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word: repeatedly merge the lowest-ranked adjacent pair."""
    pieces = list(word[:-1]) + [word[-1] + END_OF_WORD]
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:])) if (a, b) in ranks]
        if not pairs:
            break
        _, i = min(pairs)
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def build_vocabulary(words: Iterable[str] = VOCABULARY_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merge list in which every given word is one token.

    Merges for a word are appended after all earlier ones, so they can never
    change how an earlier word splits (BPE always applies the lowest rank first).
    """
    byte_chars = list(bytes_to_unicode().values())
    vocab_list = byte_chars + [c + END_OF_WORD for c in byte_chars]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    byte_encoder = bytes_to_unicode()
    for word in [*words, ","]:
        encoded = "".join(byte_encoder[b] for b in word.lower().encode("utf-8"))
        pieces = _apply_merges(encoded, ranks)
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab_list.append(pair[0] + pair[1])
            pieces = [pair[0] + pair[1], *pieces[2:]]
    vocab_list.extend(SPECIAL_TOKENS)
    return {token: i for i, token in enumerate(vocab_list)}, merges


def write_tokenizer_files(folder: Path) -> Path:
    """Write vocab.json, merges.txt and the tokenizer configs CLIPTokenizer reads."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocabulary()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "bos_token": SPECIAL_TOKENS[0],
        "eos_token": SPECIAL_TOKENS[1],
        "unk_token": SPECIAL_TOKENS[1],
        "pad_token": SPECIAL_TOKENS[1],
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": SPECIAL_TOKENS[0], "eos_token": SPECIAL_TOKENS[1], "unk_token": SPECIAL_TOKENS[1], "pad_token": SPECIAL_TOKENS[1]}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return folder


def vocabulary_size() -> int:
    return len(build_vocabulary()[0])
