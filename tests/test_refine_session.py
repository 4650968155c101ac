"""Refine sessions: persistence, undo/reset/resume, exports, preference data and the `refine` command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lib_alignment.generation import DiffusersBackend, GenerationResult, GenerationSettings, noise_from_seed
from lib_alignment.refine import (
    KTO_COLUMNS,
    PAIRS_COLUMNS,
    RefineSession,
    create_sessions,
    export_preferences,
    load_sessions,
    regenerate,
)
from lib_alignment.zo import pair_count


class LinearBackend:
    """A cheap deterministic stand-in for a diffusion model: latent → RGB by a fixed 3×4 map, upscaled."""

    model_name = "linear-fake"

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.mix = torch.tensor([[0.3, 0.2, 0.2, -0.2], [0.2, 0.3, 0.1, 0.2], [0.2, 0.1, 0.3, -0.3]])

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        return (4, height // 8, width // 8)

    def default_size(self) -> int:
        return 64

    def generate(self, settings, initial_latents, prompts=None, progress=None) -> GenerationResult:
        self.batches.append(int(initial_latents.shape[0]))
        rgb = torch.einsum("ck,nkhw->nchw", self.mix, initial_latents.float())
        pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        images = [Image.fromarray(p).resize((settings.width, settings.height), Image.NEAREST) for p in pixels]
        return GenerationResult(images=images, latents=initial_latents.clone())


SETTINGS = GenerationSettings(prompt="a red circle", negative_prompt="blurry", steps=2, cfg_scale=1.0, width=64, height=64)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _same_images(a: list[Image.Image], b: list[Image.Image]) -> bool:
    return len(a) == len(b) and all(np.array_equal(_pixels(x), _pixels(y)) for x, y in zip(a, b))


def _redness(images: list[Image.Image]) -> list[float]:
    return [float(_pixels(im)[..., 0].mean() - _pixels(im)[..., 2].mean()) for im in images]


def _oracle_order(images: list[Image.Image]) -> list[int]:
    scores = _redness(images)
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def test_resume_after_reload_continues_exactly(tmp_path: Path) -> None:
    straight = RefineSession.create(tmp_path / "a", LinearBackend(), SETTINGS, seed=4, m=5)
    interrupted = RefineSession.create(tmp_path / "b", LinearBackend(), SETTINGS, seed=4, m=5)
    r_straight, r_inter = straight.start(), interrupted.start()
    for step in range(7):
        if step in (2, 5):  # a "restart": reopen from disk
            interrupted = RefineSession.load(tmp_path / "b", LinearBackend())
            reopened = interrupted.current_round
            assert reopened is not None and reopened.id == r_inter.id and reopened.roles == r_inter.roles
            assert torch.equal(reopened.latents, r_inter.latents) and _same_images(reopened.images, r_inter.images)
            assert _same_images([reopened.current_image], [r_inter.current_image])
            r_inter = interrupted.start()  # start() on a resumed session returns the pending round
        order = _oracle_order(r_straight.images)
        r_straight, r_inter = straight.rank(order), interrupted.rank(order)
        assert torch.equal(r_inter.latents, r_straight.latents) and r_inter.roles == r_straight.roles
        assert _same_images(r_inter.images, r_straight.images)
    assert torch.equal(interrupted.current_latent, straight.current_latent)
    assert not torch.equal(straight.current_latent, noise_from_seed(4, (4, 8, 8)))


def test_undo_brings_back_the_previous_round_even_after_reload(tmp_path: Path) -> None:
    session = RefineSession.create(tmp_path, LinearBackend(), SETTINGS, seed=1, m=4)
    with pytest.raises(RuntimeError, match="not started"):
        session.rank([0])
    first = session.start()
    with pytest.raises(RuntimeError, match="nothing to undo"):
        session.undo()
    second = session.rank([2, 1])
    third = session.rank(_oracle_order(second.images))
    assert (tmp_path / "rounds" / f"{third.id:04d}").is_dir()
    session = RefineSession.load(tmp_path, LinearBackend())
    back = session.undo()
    assert not (tmp_path / "rounds" / f"{third.id:04d}").exists()
    assert back.id == second.id and back.order is None and torch.equal(back.latents, second.latents)
    assert _same_images(back.images, second.images) and back.roles == second.roles
    assert json.loads((back.folder / "round.json").read_text())["order"] is None
    back = session.undo()
    assert back.id == first.id and torch.equal(session.current_latent, noise_from_seed(1, (4, 8, 8)))
    again = session.rank([2, 1])  # the same ranking gives the same next round
    assert torch.equal(again.latents, second.latents) and again.id > third.id


def test_reset_returns_to_the_seed_and_can_be_undone(tmp_path: Path) -> None:
    session = RefineSession.create(tmp_path, LinearBackend(), SETTINGS, seed=2, m=4)
    current = session.start()
    for _ in range(4):
        current = session.rank(_oracle_order(current.images))
    moved = session.current_latent
    fresh = session.reset()
    assert torch.equal(session.current_latent, noise_from_seed(2, (4, 8, 8)))
    assert fresh.round_type == "rank" and not torch.equal(fresh.latents, session.current_round.latents * 0)
    restored = session.undo()
    assert torch.equal(session.current_latent, moved) and restored.id == current.id


class FlakyBackend(LinearBackend):
    """Fails (like an Interrupt or out-of-memory in the sampler) while `broken` is set."""

    broken = False

    def generate(self, settings, initial_latents, prompts=None, progress=None) -> GenerationResult:
        if self.broken:
            raise RuntimeError("sampler interrupted")
        return super().generate(settings, initial_latents, prompts, progress)


@pytest.mark.parametrize("action", ["rank", "reset"])
def test_a_failed_generation_leaves_the_session_as_it_was(tmp_path: Path, action: str) -> None:
    backend = FlakyBackend()
    session = RefineSession.create(tmp_path, backend, SETTINGS, seed=1, m=4)
    current = session.start()
    for _ in range(3):
        current = session.rank(_oracle_order(current.images))
    before = (session.current_latent, session.optimizer.state_dict(), session.round_ids, session.current_round.id)
    backend.broken = True
    with pytest.raises(RuntimeError, match="interrupted"):
        session.rank(_oracle_order(current.images)) if action == "rank" else session.reset()
    backend.broken = False
    for reopened in (session, RefineSession.load(tmp_path, FlakyBackend())):
        assert torch.equal(reopened.current_latent, before[0])
        assert reopened.round_ids == before[2] and reopened.current_round.id == before[3]
        assert reopened.current_round.order is None
    after_retry = session.rank(_oracle_order(current.images)) if action == "rank" else session.reset()
    assert after_retry.id == before[3] + 1
    if action == "reset":
        assert torch.equal(session.current_latent, noise_from_seed(1, (4, 8, 8)))
        assert session.undo().id == before[3]  # the earlier rounds are one undo away, as after any reset
        assert torch.equal(session.current_latent, before[0])


def test_line_rounds_reuse_images_of_known_latents(tmp_path: Path) -> None:
    backend = LinearBackend()
    session = RefineSession.create(tmp_path, backend, SETTINGS, seed=0, m=6)
    first = session.start()
    assert backend.batches == [7]  # 6 candidates + the current image
    line = session.rank([3])
    assert backend.batches[-1] == 4  # only the 4 line-search steps are new
    roles = line.roles
    assert _same_images([line.images[roles.index("rank best")]], [first.images[3]])
    assert _same_images([line.images[roles.index("current")]], [line.current_image])
    picked = next(i for i, r in enumerate(roles) if r.startswith("step"))
    after = session.rank([picked])
    assert _same_images([after.current_image], [line.images[picked]])
    assert torch.equal(session.current_latent, line.latents[picked])


def test_params_change_mid_session_and_persist(tmp_path: Path) -> None:
    session = RefineSession.create(tmp_path, LinearBackend(), SETTINGS, seed=0, m=6, mu=0.1)
    pending = session.start()
    session.set_params(m=4, mu=0.5, lr=1.0)
    assert len(session.current_round.images) == 6  # the shown round does not change
    line = session.rank([0])
    assert len(line.images) == 4
    with pytest.raises(ValueError, match="m must be ≥ 3"):
        session.set_params(m=2, mu=0.7)
    assert session.params.m == 4 and session.params.mu == 0.5 and session.optimizer.mu == 0.5
    session = RefineSession.load(tmp_path, LinearBackend())
    assert (session.params.m, session.params.mu, session.params.lr) == (4, 0.5, 1.0)
    assert session.optimizer.m == 4 and session.optimizer.lr == 1.0
    session.undo()  # the snapshot had m=6: the session's params still win
    assert session.optimizer.m == 4 and len(session.current_round.images) == len(pending.images)


def test_interrupted_step_and_bad_folders_are_handled(tmp_path: Path) -> None:
    session = RefineSession.create(tmp_path / "s", LinearBackend(), SETTINGS, seed=0, m=4)
    pending = session.start()
    record_path = pending.folder / "round.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "order": [1, 0]}))  # ranked, but the next round never got committed
    reopened = RefineSession.load(tmp_path / "s", LinearBackend())
    assert reopened.current_round.order is None and json.loads(record_path.read_text())["order"] is None
    with pytest.raises(FileExistsError, match="already holds a refine session"):
        RefineSession.create(tmp_path / "s", LinearBackend(), SETTINGS, seed=0)
    other = LinearBackend()
    other.model_name = "other-model"
    with pytest.raises(ValueError, match="made with model 'linear-fake'"):
        RefineSession.load(tmp_path / "s", other)
    with pytest.raises(FileNotFoundError, match="holds no refine session"):
        RefineSession.load(tmp_path / "empty", LinearBackend())
    with pytest.raises(ValueError, match="outside 0..3"):
        reopened.rank([7])
    assert reopened.optimizer.rounds == 0


def test_several_seeds_are_independent_sessions(tmp_path: Path) -> None:
    backend = LinearBackend()
    sessions = create_sessions(tmp_path, backend, SETTINGS, seeds=[3, 8], m=4)
    rounds = [s.start() for s in sessions]
    assert not torch.equal(rounds[0].current_latent, rounds[1].current_latent)
    sessions[0].rank([0])
    reloaded = load_sessions(tmp_path, backend)
    assert [s.seed for s in reloaded] == [3, 8]
    assert [s.rounds_ranked for s in reloaded] == [1, 0]
    with pytest.raises(ValueError, match="seeds repeat"):
        create_sessions(tmp_path / "x", backend, SETTINGS, seeds=[1, 1])


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_preference_export_formats(tmp_path: Path) -> None:
    backend = LinearBackend()
    session = RefineSession.create(tmp_path / "session", backend, SETTINGS, seed=5, m=5)
    current = session.start()
    orders, rounds = [], []
    for step in range(4):
        order = _oracle_order(current.images)[: (2 if step % 2 == 0 else 5)]
        rounds.append(current)
        orders.append(order)
        current = session.rank(order)
    out = tmp_path / "prefs"
    result = export_preferences([session], out)
    columns, pairs = _read_csv(result.pairs_csv)
    assert tuple(columns) == PAIRS_COLUMNS
    assert len(pairs) == result.pairs == sum(pair_count(5, len(o)) for o in orders)
    redness_of = {}
    for row in pairs:
        assert row["caption"] == SETTINGS.prompt and (row["label_0"], row["label_1"]) == ("1", "0")
        for key in ("image_0", "image_1"):
            assert not Path(row[key]).is_absolute() and (out / row[key]).is_file()
            redness_of[row[key]] = _redness([Image.open(out / row[key])])[0]
        assert redness_of[row["image_0"]] >= redness_of[row["image_1"]]  # the oracle's preference survived the export
    # The first pair row is the first round's top candidate against its second.
    assert _same_images([Image.open(out / pairs[0]["image_0"])], [rounds[0].images[orders[0][0]]])
    assert _same_images([Image.open(out / pairs[0]["image_1"])], [rounds[0].images[orders[0][1]]])
    columns, kto = _read_csv(result.kto_csv)
    assert tuple(columns) == KTO_COLUMNS
    wins = [r for r in kto if r["label"] == "exclusive_win"]
    assert len(wins) == 4 and {r["label"] for r in kto} == {"exclusive_win", "exclusive_lose"}
    assert all((out / r["file_name"]).is_file() and r["caption"] == SETTINGS.prompt for r in kto)
    # Top-2 rounds: 3 unranked losers; full rounds: the last one loses.
    assert len(kto) == 2 * (1 + 3) + 2 * (1 + 1)
    # rankings.csv: the two fully ranked rounds, best first, for the listwise trainer
    columns, rankings = _read_csv(result.rankings_csv)
    assert columns == ["caption", "image_1", "image_2", "image_3", "image_4", "image_5", "human"] and len(rankings) == result.rankings == 2
    for row in rankings:
        reds = [redness_of.get(row[f"image_{k}"], _redness([Image.open(out / row[f"image_{k}"])])[0]) for k in range(1, 6)]
        assert reds == sorted(reds, reverse=True)


def test_export_regenerates_pixels_and_carries_infotext(tmp_path: Path) -> None:
    backend = LinearBackend()
    session = RefineSession.create(tmp_path / "s", backend, SETTINGS, seed=9, m=4)
    current = session.start()
    for _ in range(3):
        current = session.rank(_oracle_order(current.images))
    result = session.export(tmp_path / "out", stem="final")
    image = Image.open(result.image_path)
    text = image.info["parameters"]
    assert text.startswith("a red circle\nNegative prompt: blurry\nSteps: 2, Sampler: DDIM, CFG scale: 1, Seed: 9, Size: 64x64")
    assert "Model: linear-fake" in text and "Refine rounds: 3" in text
    assert np.array_equal(_pixels(regenerate(result.latent_path, backend)), _pixels(image))
    with pytest.raises(ValueError, match="export name"):
        session.export(tmp_path / "out", stem="../escape")


# ----- with the tiny-random diffusion pipeline ------------------------------------------------

TINY_SETTINGS = GenerationSettings(prompt="a red circle", steps=2, cfg_scale=1.0, width=128, height=128)


@pytest.mark.slow
def test_tiny_random_session_images_repeat_across_undo_reload_and_export(tiny_random_pipe, tmp_path: Path) -> None:
    backend = DiffusersBackend(tiny_random_pipe, model_name="tiny-random")
    session = RefineSession.create(tmp_path / "s", backend, TINY_SETTINGS, seed=1, m=4, mu=0.3)
    first = session.start()
    line = session.rank([2, 0])
    back = session.undo()
    assert _same_images(back.images, first.images)
    again = session.rank([2, 0])  # renders the line round a second time
    assert _same_images(again.images, line.images) and torch.equal(again.latents, line.latents)
    reopened = RefineSession.load(tmp_path / "s", backend).start()
    assert _same_images(reopened.images, line.images) and _same_images([reopened.current_image], [line.current_image])
    step = next(i for i, role in enumerate(line.roles) if role.startswith("step"))
    session.rank([step])
    result = session.export(tmp_path / "out")
    assert np.array_equal(_pixels(regenerate(result.latent_path, backend)), _pixels(Image.open(result.image_path)))


def _model_sources() -> list[str]:
    from lib_alignment.models.tiny import tiny_is_shipped

    return ["tiny-random", *(["tiny"] if tiny_is_shipped() else [])]


@pytest.mark.slow
@pytest.mark.parametrize("model", _model_sources())
def test_refine_command_raises_brightness(model: str, tmp_path: Path) -> None:
    from lib_alignment.cli import main

    out = tmp_path / "run"
    code = main(
        ["refine", "--model", model, "--prompt", "a red circle", "--oracle", "brightness", "--rounds", "4", "--m", "4",
         "--mu", "0.3", "--steps", "2", "--cfg", "1", "--size", "128", "--out", str(out), "--device", "cpu", "--seed", "3"]
    )  # fmt: skip
    assert code == 0
    scores = json.loads((out / "scores.json").read_text())
    current = [r["current_score"] for r in scores["rounds"]] + [scores["final_current_score"]]
    assert all(b >= a for a, b in zip(current, current[1:]))  # line search never moves to a darker image
    assert current[-1] > current[0]
    assert scores["final_image_score"] == pytest.approx(current[-1], abs=2e-3)  # rendered alone: ±rounding
    with (out / "scores.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4 * (4 + 1)
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.height == 5 * (128 + 8)
    assert "Refine rounds: 4" in Image.open(out / "final.png").info["parameters"]
    assert (out / "final.safetensors").is_file() and (out / "preferences" / "pairs.csv").is_file()


def test_round_numbers_do_not_skip_after_undo_and_reset_counts_what_export_counts(tmp_path: Path) -> None:
    from lib_alignment.ui.refine_view import round_board

    session = RefineSession.create(tmp_path / "s", LinearBackend(), SETTINGS, seed=3, m=4)
    current = session.start()
    for _ in range(4):
        current = session.rank(_oracle_order(current.images))
    session.undo()
    current = session.rank(_oracle_order(session.current_round.images))
    numbers = [session.round_number(i) for i in session.round_ids]
    assert numbers == [1, 2, 3, 4, 5] and "Round 5</span>" in round_board("x" * 32, session, current)
    session.reset()  # the pending round 5 is left unranked
    board = round_board("x" * 32, session, session.current_round)
    exported = export_preferences([session], tmp_path / "prefs")
    assert session.rounds_ranked == exported.rounds == 4
    assert "4 ranked" in board and "Round 6</span>" in board
