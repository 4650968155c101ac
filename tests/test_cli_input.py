"""Bad command-line input: one `error:` line naming the flag, file or column, before any model loads."""

from __future__ import annotations

import pytest

from lib_alignment.cli import main


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch):
    """Every case here must be refused before a pipeline loads."""
    import lib_alignment.models

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(lib_alignment.models, "load_pipeline", refuse)


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_export_tiny_into_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert "DIR" in _error(capsys, ["export-tiny", str(tmp_path / "afile")])
    assert "is a file" in _error(capsys, ["export-tiny", str(tmp_path / "afile" / "below")])


def test_refine_out_and_resume_problems(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    base = ["refine", "--prompt", "x", "--oracle", "brightness", "--rounds", "1", "--model", "tiny-random"]
    assert "--out" in _error(capsys, [*base, "--out", str(tmp_path / "afile")])
    assert "--resume" in _error(capsys, [*base, "--out", str(tmp_path / "new"), "--resume"])
    (tmp_path / "old" / "session").mkdir(parents=True)
    (tmp_path / "old" / "session" / "session.json").write_text("{}")
    assert "already holds a refine session" in _error(capsys, [*base, "--out", str(tmp_path / "old")])
    assert "--m must be in 3..16 (got 1)" in _error(capsys, [*base, "--out", str(tmp_path / "new"), "--m", "1"])


def test_generate_lora_steps_out_and_prompt_tags(tmp_path, capsys):
    (tmp_path / "not-a-lora").write_bytes(b"\x00" * 64)
    base = ["generate", "--prompt", "x", "--model", "tiny-random"]
    out = ["--out", str(tmp_path / "o.png")]
    assert "--lora" in _error(capsys, [*base, *out, "--lora", str(tmp_path / "not-a-lora")])
    assert "--lora" in _error(capsys, [*base, *out, "--lora", str(tmp_path / "missing.safetensors")])
    line = _error(capsys, [*base, *out, "--steps", "-1"])
    assert line == "error: --steps must be at least 1 (got -1)"
    assert "this is a folder" in _error(capsys, [*base, "--out", str(tmp_path)])
    assert "--lora FILE" in _error(capsys, ["generate", "--prompt", "x <lora:a:1>", *out])
    assert "no such file or folder" in _error(capsys, ["generate", "--prompt", "x", "--model", str(tmp_path / "nope"), *out])


def test_serve_checks_model_and_folders_before_starting(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert "--model" in _error(capsys, ["serve", "--model", str(tmp_path / "nope.safetensors")])
    assert "--output-dir" in _error(capsys, ["serve", "--output-dir", str(tmp_path / "afile")])


def test_train_reports_a_missing_column_before_loading_the_model(tmp_path, capsys):
    data = tmp_path / "pairs.csv"
    data.write_text("caption,chosen\na red circle,a.png\n")
    rc = main(
        ["train", "--method", "dpo", "--model", "tiny-random", "--data", str(data), "--output-dir", str(tmp_path / "loras"),
         "--name", "x", "--max-train-steps", "1", "--progress-bar", "false", "--tensorboard", "false"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "pairs.csv" in err and "column" in err.lower(), err
    assert not (tmp_path / "loras").exists() or not any((tmp_path / "loras").rglob("*.safetensors"))


def test_evaluate_checks_its_lora_steps_and_folder_first(tmp_path, capsys):
    (tmp_path / "not-a-lora.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "afile").write_text("x")
    base = ["evaluate", "--judge", "brightness", "--prompts", "a red circle", "--model", "tiny-random"]
    assert "--lora" in _error(capsys, [*base, "--lora", str(tmp_path / "not-a-lora.safetensors")])
    assert "no such file" in _error(capsys, [*base, "--lora", str(tmp_path / "missing.safetensors")])
