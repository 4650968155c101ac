from __future__ import annotations

import os

import pytest

from lib_alignment.paths import atomic_write_text, confine, safe_name


def test_confine_accepts_inside_and_refuses_escapes(tmp_path):
    (tmp_path / "data").mkdir()
    assert confine(tmp_path, "data/a.png") == (tmp_path / "data" / "a.png").resolve()
    for bad in ("../x.png", "data/../../x.png", "/etc/passwd"):
        with pytest.raises(ValueError, match="image"):
            confine(tmp_path, bad, what="image")


def test_confine_refuses_symlinks_that_leave_the_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    os.symlink(outside, base / "link")
    with pytest.raises(ValueError, match="escapes"):
        confine(base, "link/file.png")


@pytest.mark.parametrize("bad", ["", "../evil", "a/b", ".hidden", "x" * 200, "a\\b"])
def test_safe_name_refuses_path_like_names(bad):
    with pytest.raises(ValueError, match="name"):
        safe_name(bad)


def test_safe_name_keeps_ordinary_names():
    assert safe_name(" my-lora_v1.2 ") == "my-lora_v1.2"


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_writes_follow_the_umask(tmp_path, umask_022):
    from lib_alignment.paths import atomic_save_image, atomic_write_bytes

    atomic_write_text(tmp_path / "a.csv", "x")
    atomic_write_bytes(tmp_path / "b.safetensors", b"y")
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.safetensors").stat().st_mode & 0o777 == 0o644
    os.umask(0o027)
    from PIL import Image

    atomic_save_image(Image.new("RGB", (2, 2)), tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_mode & 0o777 == 0o640


def test_staging_folders_follow_the_umask(tmp_path, umask_022):
    from lib_alignment.paths import make_temp_dir

    staged = make_temp_dir(tmp_path / "out" / "tokenizer")
    assert staged.parent == tmp_path / "out" and staged.name.startswith(".tokenizer.")
    assert staged.stat().st_mode & 0o777 == 0o755
