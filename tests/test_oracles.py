"""Oracles: built-in image scores, custom callables, local-CLIP oracles, and turning scores into rankings."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lib_alignment.oracles import make_oracle, order_from_scores, rank_images


def _solid(rgb: tuple[int, int, int], size: int = 32) -> Image.Image:
    return Image.new("RGB", (size, size), rgb)


def _noise(seed: int, size: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_brightness_orders_white_grey_black_and_darker_reverses() -> None:
    images = [_solid((128, 128, 128)), _solid((0, 0, 0)), _solid((255, 255, 255))]
    assert make_oracle("brightness").score(images, "") == pytest.approx([128 / 255, 0.0, 1.0], abs=1e-3)
    assert rank_images(make_oracle("brightness"), images, "") == [2, 0, 1]
    assert rank_images(make_oracle("brightness:darker"), images, "") == [1, 0, 2]


def test_jpeg_size_prefers_flat_images_unless_asked_for_larger() -> None:
    images = [_noise(0), _solid((10, 200, 30), 64)]
    smaller = make_oracle("jpeg_size").score(images, "")
    larger = make_oracle("jpeg_size:larger").score(images, "")
    assert larger == [-s for s in smaller]
    assert larger[0] > 5 * larger[1] > 0  # random pixels barely compress: several kB vs well under one
    assert rank_images(make_oracle("jpeg_size:smaller"), images, "") == [1, 0]


def test_colourfulness_matches_hasler_susstrunk_on_known_images() -> None:
    oracle = make_oracle("colourfulness")
    grey, red = oracle.score([_solid((90, 90, 90)), _solid((255, 0, 0))], "")
    assert grey == pytest.approx(0.0, abs=1e-9)
    # rg = 255, yb = 127.5, no spread: 0.3 * sqrt(255² + 127.5²)
    assert red == pytest.approx(0.3 * math.hypot(255.0, 127.5))
    stripes = np.zeros((32, 32, 3), dtype=np.uint8)
    stripes[::2] = (255, 0, 0)
    stripes[1::2] = (0, 255, 0)
    assert make_oracle("colorfulness").score([Image.fromarray(stripes)], "")[0] > red


def test_colour_closeness_accepts_names_and_hex() -> None:
    images = [_solid((0, 0, 255)), _solid((255, 0, 0)), _solid((200, 30, 30))]
    by_name = make_oracle("color:red").score(images, "")
    assert by_name == make_oracle("colour:#ff0000").score(images, "")
    assert by_name[1] == pytest.approx(1.0)
    assert order_from_scores(by_name) == [1, 2, 0]
    with pytest.raises(ValueError, match="not a colour"):
        make_oracle("color:nosuchcolour")
    with pytest.raises(ValueError, match="target colour"):
        make_oracle("color")


def test_ties_keep_display_order() -> None:
    images = [_solid((50, 50, 50)), _solid((200, 200, 200)), _solid((50, 50, 50)), _solid((200, 200, 200))]
    assert rank_images(make_oracle("brightness"), images, "") == [1, 3, 0, 2]


def test_custom_callable_oracle_is_loaded_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_oracles.py").write_text(
        textwrap.dedent(
            """
            def width_times_prompt(images, prompt):
                return [im.width * len(prompt) for im in images]

            def wrong_length(images, prompt):
                return [1.0]

            def not_numbers(images, prompt):
                return ["a"] * len(images)

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    oracle = make_oracle("my_oracles:width_times_prompt")
    images = [_solid((0, 0, 0), 8), _solid((0, 0, 0), 16)]
    assert oracle.score(images, "abc") == [24.0, 48.0]
    assert rank_images(oracle, images, "abc") == [1, 0]
    with pytest.raises(ValueError, match="returned 1 scores for 2 images"):
        make_oracle("my_oracles:wrong_length").score(images, "")
    with pytest.raises(ValueError, match="list of numbers"):
        make_oracle("my_oracles:not_numbers").score(images, "")
    with pytest.raises(ValueError, match="no attribute 'missing'"):
        make_oracle("my_oracles:missing")
    with pytest.raises(ValueError, match="not callable"):
        make_oracle("my_oracles:NOT_CALLABLE")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        make_oracle("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="unknown oracle 'sharpness'"):
        make_oracle("sharpness")


def _tiny_clip_folder(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from lib_alignment.models.tiny_tokenizer import vocabulary_size, write_tokenizer_files

    vocab = vocabulary_size()
    config = CLIPConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "bos_token_id": vocab - 2,
            "eos_token_id": vocab - 1,
            "pad_token_id": vocab - 1,
        },
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder, safe_serialization=True)
    write_tokenizer_files(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_clip_folder(tmp_path_factory.mktemp("clip"))


def test_clip_oracle_needs_a_complete_local_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_oracle(f"clip:{tmp_path / 'missing'}")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="lacks preprocessor_config.json, model.safetensors"):
        make_oracle(f"clip:{tmp_path}")


def test_clip_score_is_a_cosine_that_depends_on_image_and_prompt(clip_folder: Path) -> None:
    oracle = make_oracle(f"clip:{clip_folder}")
    images = [_noise(1, 48), _noise(2, 48), _solid((255, 0, 0), 48)]
    first = oracle.score(images, "a red circle")
    assert first == oracle.score(images, "a red circle")
    assert all(-100.0 <= s <= 100.0 for s in first) and len(set(first)) == 3
    assert oracle.score(images, "a blue square") != first


def test_aesthetic_oracle_applies_the_mlp_to_unit_clip_embeddings(clip_folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from lib_alignment.oracles.clip import ClipEncoder

    images = [_noise(3, 48), _solid((0, 128, 255), 48), _noise(4, 48)]
    embeddings = ClipEncoder(clip_folder).images(images)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    # Two linear layers in LAION's layers.N layout whose product scores cos(embedding, image 1's) + 0.5.
    direction = embeddings[1]
    weights = {
        "layers.0.weight": torch.eye(8) * 2.0,
        "layers.0.bias": torch.zeros(8),
        "layers.2.weight": (direction / 2.0).reshape(1, 8),
        "layers.2.bias": torch.tensor([0.5]),
    }
    save_file(weights, str(tmp_path / "mlp.safetensors"))
    oracle = make_oracle(f"aesthetic:{tmp_path / 'mlp.safetensors'},{clip_folder}")
    scores = oracle.score(images, "")
    assert scores == pytest.approx((embeddings @ direction + 0.5).tolist(), abs=1e-5)
    assert scores[1] == pytest.approx(1.5, abs=1e-5) and order_from_scores(scores)[0] == 1
    torch.save(weights, tmp_path / "mlp.pth")
    assert make_oracle(f"aesthetic:{tmp_path / 'mlp.pth'},{clip_folder}").score(images, "") == pytest.approx(scores)
    save_file({"layers.0.weight": torch.zeros(1, 5)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="expects 5-dim embeddings"):
        make_oracle(f"aesthetic:{tmp_path / 'bad.safetensors'},{clip_folder}")
    with pytest.raises(ValueError, match="WEIGHTS_FILE,CLIP_FOLDER"):
        make_oracle("aesthetic:only-one-part")
