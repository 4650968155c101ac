"""Curate: metadata readers (A1111/Forge PNG and EXIF, ComfyUI), prompt grouping, Swiss pairing, and a session's
lazy opening of a 10 000-image folder, undo and resume."""

from __future__ import annotations

import io
import json
import os
import random

import pytest
from PIL import Image, PngImagePlugin

from lib_alignment.curate import pairing
from lib_alignment.curate.metadata import normalise_prompt, parse_infotext, read_metadata
from lib_alignment.curate.scan import scan_folder
from lib_alignment.curate.session import CurateSession

INFOTEXT = (
    "a red fox, (autumn forest:1.2)\nsecond line\nNegative prompt: blurry, lowres\n"
    'Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1234, Size: 512x768, Model hash: abcdef1234, '
    'Model: my_model, Lora hashes: "fox: 0123, tree: 4567", Version: v1.10.1'
)


def png_bytes(text: dict[str, str] | None = None, color=(200, 10, 10), size=(4, 4)) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def exif_bytes(comment: bytes) -> bytes:
    """EXIF with only a UserComment in its Exif IFD, the layout piexif writes for A1111 (built by hand:
    Pillow 9.5, A1111's pin, does not write nested IFDs)."""
    import struct

    ifd0 = struct.pack(">H", 1) + struct.pack(">HHII", 0x8769, 4, 1, 26) + struct.pack(">I", 0)
    exif_ifd = struct.pack(">H", 1) + struct.pack(">HHII", 0x9286, 7, len(comment), 44) + struct.pack(">I", 0)
    return b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd0 + exif_ifd + comment


def exif_image(path, fmt, comment: bytes) -> None:
    Image.new("RGB", (8, 8), (0, 90, 200)).save(path, format=fmt, exif=exif_bytes(comment))


def test_a1111_infotext_parses_prompt_negative_seed_settings_and_checkpoint():
    meta = parse_infotext(INFOTEXT)
    assert meta.prompt == "a red fox, (autumn forest:1.2)\nsecond line"
    assert meta.negative_prompt == "blurry, lowres"
    assert meta.seed == 1234
    assert meta.checkpoint == "my_model" and meta.checkpoint_hash == "abcdef1234"
    assert meta.settings["Steps"] == "20" and meta.settings["Sampler"] == "DPM++ 2M"
    assert meta.settings["Lora hashes"] == "fox: 0123, tree: 4567"  # JSON-quoted value with commas
    assert (meta.settings["Width"], meta.settings["Height"]) == (512, 768)
    only_prompt = parse_infotext("just a prompt")
    assert only_prompt.prompt == "just a prompt" and only_prompt.seed is None


def test_png_parameters_chunk_is_read(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes({"parameters": INFOTEXT}))
    meta = read_metadata(path)
    assert meta.source == "a1111" and meta.seed == 1234 and meta.prompt.startswith("a red fox")


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("WEBP", "webp")])
@pytest.mark.parametrize("order", ["utf-16-be", "utf-16-le"])
def test_exif_user_comment_is_read_from_jpeg_and_webp(tmp_path, fmt, suffix, order):
    if fmt == "WEBP" and not __import__("PIL.features", fromlist=["x"]).check("webp"):
        pytest.skip("Pillow without WebP")
    path = tmp_path / f"a.{suffix}"
    exif_image(path, fmt, b"UNICODE\x00" + INFOTEXT.encode(order))
    meta = read_metadata(path)
    assert meta.prompt == "a red fox, (autumn forest:1.2)\nsecond line", meta
    assert meta.seed == 1234 and meta.negative_prompt == "blurry, lowres"


def test_comfyui_api_graph_follows_the_sampler_to_its_prompts(tmp_path):
    graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 77, "steps": 25, "cfg": 6.5, "sampler_name": "euler",
                                                   "positive": ["6", 0], "negative": ["7", 0], "model": ["4", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["10", 0], "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "ugly, a much longer negative text than the prompt", "clip": ["4", 1]}},
        "10": {"class_type": "PrimitiveString", "inputs": {"value": "a lighthouse at dusk"}},
    }
    path = tmp_path / "comfy.png"
    path.write_bytes(png_bytes({"prompt": json.dumps(graph), "workflow": "{}"}))
    meta = read_metadata(path)
    assert meta.source == "comfyui"
    assert meta.prompt == "a lighthouse at dusk"
    assert meta.negative_prompt.startswith("ugly")
    assert meta.seed == 77 and meta.settings["steps"] == 25 and meta.checkpoint == "sd15.safetensors"


def test_comfyui_workflow_only_follows_links(tmp_path):
    workflow = {
        "nodes": [
            {"id": 1, "type": "CLIPTextEncode", "widgets_values": ["a castle on a hill"]},
            {"id": 2, "type": "CLIPTextEncode", "widgets_values": ["a very long negative prompt text here"]},
            {"id": 3, "type": "KSampler", "widgets_values": [5, "randomize", 20],
             "inputs": [{"name": "positive", "link": 11}, {"name": "negative", "link": 12}]},
        ],
        "links": [[11, 1, 0, 3, 1, "CONDITIONING"], [12, 2, 0, 3, 2, "CONDITIONING"]],
    }
    path = tmp_path / "wf.png"
    path.write_bytes(png_bytes({"workflow": json.dumps(workflow)}))
    meta = read_metadata(path)
    assert (meta.prompt, meta.negative_prompt, meta.seed) == ("a castle on a hill", "a very long negative prompt text here", 5)


def test_unreadable_images_say_why(tmp_path):
    (tmp_path / "plain.png").write_bytes(png_bytes())
    (tmp_path / "broken.png").write_bytes(b"not an image")
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.jpg")
    assert "no A1111/Forge infotext" in read_metadata(tmp_path / "plain.png").reason
    assert "not a readable image" in read_metadata(tmp_path / "broken.png").reason
    assert "EXIF" in read_metadata(tmp_path / "plain.jpg").reason
    assert not read_metadata(tmp_path / "plain.jpg").readable


def test_near_identical_prompts_share_a_key():
    assert normalise_prompt("A Cat, (red:1.2),  sitting") == normalise_prompt("a cat,red, sitting,")
    assert normalise_prompt("a cat") != normalise_prompt("a dog")


# --- pairing ----------------------------------------------------------------------------------------


def _answer(pair, truth):
    """The answer of a user with a fixed order `truth` (lower index is better)."""
    return (pair.left, pair.right) if truth.index(pair.left) < truth.index(pair.right) else (pair.right, pair.left)


def test_pairs_stay_in_their_group_never_repeat_and_skip_implied_orders():
    rng = random.Random(3)
    groups = {"g1": [f"a{i}" for i in range(8)], "g2": [f"b{i}" for i in range(5)], "solo": ["c0"]}
    truth = {g: rng.sample(items, len(items)) for g, items in groups.items()}
    judgements, asked = [], set()
    while (pair := pairing.next_pair(groups, judgements, seed=1)) is not None:
        assert pair.left in groups[pair.group] and pair.right in groups[pair.group] and pair.left != pair.right
        key = frozenset((pair.left, pair.right))
        assert key not in asked
        closure = pairing.beats_closure(groups[pair.group], [(w, l) for g, w, l in judgements if g == pair.group])
        assert key not in pairing.known_pairs(closure)  # never a pair whose order is already implied
        asked.add(key)
        judgements.append((pair.group, *_answer(pair, truth[pair.group])))
    progress = pairing.progress(groups, judgements)
    assert progress.implied == progress.possible == 28 + 10  # the whole order of both groups is known
    assert progress.judgements < progress.possible  # fewer clicks than pairs, thanks to transitivity
    assert progress.prompts_covered == progress.prompts == 2
    assert progress.cyclic_triples == 0


def test_swiss_rounds_cover_every_image_before_repeating_and_groups_before_depth():
    groups = {"g1": [f"a{i}" for i in range(6)], "g2": [f"b{i}" for i in range(6)]}
    judgements = []
    for _ in range(6):  # 3 pairs per group cover 12 images once
        pair = pairing.next_pair(groups, judgements, seed=5)
        judgements.append((pair.group, pair.left, pair.right))
    counts = {}
    for _, w, l in judgements:
        for item in (w, l):
            counts[item] = counts.get(item, 0) + 1
    assert sorted(counts.values()) == [1] * 12


def test_skipped_pairs_are_not_asked_again_and_cycles_are_counted():
    groups = {"g": ["x", "y", "z"]}
    first = pairing.next_pair(groups, [], skipped=[frozenset(("x", "y")), frozenset(("y", "z"))])
    assert {first.left, first.right} == {"x", "z"}
    cyclic = [("g", "x", "y"), ("g", "y", "z"), ("g", "z", "x")]
    progress = pairing.progress(groups, cyclic)
    assert (progress.cyclic_triples, progress.judged_triples, progress.intransitive_share) == (1, 1, 1.0)
    assert pairing.progress(groups, [("g", "x", "y"), ("g", "y", "z"), ("g", "x", "z")]).cyclic_triples == 0


# --- sessions ---------------------------------------------------------------------------------------


def _write_batch(folder, prompt, seeds, prefix=""):
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        text = f"{prompt}\nNegative prompt: bad\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: {seed}, Size: 4x4, Model: m"
        (folder / f"{prefix}{seed:05d}-{seed}.png").write_bytes(png_bytes({"parameters": text}, color=(seed % 255, 0, 0)))


def test_a_10000_image_folder_opens_without_reading_the_images(tmp_path, monkeypatch):
    folder = tmp_path / "outputs"
    folder.mkdir()
    sources = tmp_path / "sources"
    sources.mkdir()
    for i in range(50):
        (sources / f"{i}.png").write_bytes(png_bytes({"parameters": f"prompt {i}\nSteps: 2, Sampler: Euler, Seed: {i}, Size: 4x4"}))
    for i in range(10_000):  # hard links: 10 000 files in well under a second; 50 prompts, 200 adjacent images each
        os.link(sources / f"{i // 200}.png", folder / f"{i:05d}.png")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(fp) or real_open(fp, *a, **k))
    session = CurateSession(folder, tmp_path / "state")
    assert len(session.files) == 10_000 and opened == []  # listing opens nothing
    pair = session.next_pair()
    assert pair is not None and session.meta(pair.left).prompt == session.meta(pair.right).prompt
    assert 0 < len(opened) <= 256 and session.indexed <= 256  # one chunk read, not the folder


def test_undo_skip_and_resume_after_a_restart(tmp_path):
    folder = tmp_path / "out"
    _write_batch(folder / "day1", "a red fox", [1, 2, 3, 4])
    _write_batch(folder / "day2", "A red fox,", [5, 6])  # near-identical prompt joins the same group
    _write_batch(folder / "day2", "a blue bird", [7, 8], prefix="b")
    (folder / "day2" / "nometa.png").write_bytes(png_bytes())

    class FakeStore:  # records calls like the preference store's API
        def __init__(self):
            self.images, self.entries, self.undone = {}, [], []

        def add_image(self, image, **fields):
            self.images[str(image)] = fields
            return f"id{len(self.images)}"

        def add_judgement(self, winner, losers, **fields):
            self.entries.append((winner, losers, fields))
            return len(self.entries)

        def undo(self, entry):
            self.undone.append(entry)

    store = FakeStore()
    session = CurateSession(folder, tmp_path / "state", store=store)
    assert session.next_pair() is not None
    groups = session.groups()
    assert sorted(len(v) for v in groups.values()) == [2, 6]
    assert session.unreadable() == [("day2/nometa.png", "no A1111/Forge infotext or ComfyUI metadata in the PNG")]
    pair = session.next_pair()
    session.judge(pair.left, pair.right)
    second = session.next_pair()
    session.skip(second.left, second.right)
    third = session.next_pair()
    assert {third.left, third.right} != {second.left, second.right}
    session.judge(third.right, third.left)
    assert session.progress().judgements == 2 and len(store.entries) == 2
    assert store.images[str(folder / pair.left)]["prompt"] in ("a red fox", "A red fox,", "a blue bird")
    assert session.undo() == "judge" and store.undone == [2]
    with pytest.raises(ValueError, match="do not share a prompt"):
        session.judge("day1/00001-1.png", "day2/b00007-7.png")
    with pytest.raises(ValueError, match="not an image of this folder"):
        session.judge("../x.png", "day1/00001-1.png")
    session.caption("day2/nometa.png", "a blue bird")

    resumed = CurateSession(folder, tmp_path / "state", store=store)  # a restart: state and metadata from disk
    assert resumed.reads == 0
    assert [(j["winner"], j["loser"]) for j in resumed.judgements] == [(pair.left, pair.right)]
    assert resumed.next_pair() == session.next_pair()  # same questions as the session that never stopped
    assert any("day2/nometa.png" in items for items in resumed.groups().values())
    assert resumed.undo() == "skip" and resumed.undo() == "judge" and resumed.undo() is None
    assert store.undone == [2, 1]


def test_scan_lists_images_only_and_refuses_a_missing_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.PNG").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    assert [f.rel for f in scan_folder(tmp_path)] == ["sub/x.PNG"]
    with pytest.raises(ValueError, match="folder: .* is not a folder"):
        scan_folder(tmp_path / "missing")
