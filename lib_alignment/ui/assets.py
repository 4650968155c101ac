"""The extension's javascript/ and style.css, for the standalone app (the WebUI links them itself)."""

from __future__ import annotations

from pathlib import Path

from ..webui_facade import EXTENSION_ROOT


def style_css() -> str:
    path = EXTENSION_ROOT / "style.css"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def javascript_sources() -> list[Path]:
    folder = EXTENSION_ROOT / "javascript"
    return sorted(folder.glob("*.js")) if folder.is_dir() else []


def javascript_text() -> str:
    return "\n;\n".join(path.read_text(encoding="utf-8") for path in javascript_sources())


def head_html() -> str:
    """A <script> block with every javascript/*.js file, for gradio's `head=`."""
    return f"<script>\n{javascript_text()}\n</script>"
