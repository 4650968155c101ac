"""Calling a tab's event handlers as gradio would, with the components' values, without a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build_app(output_dir: Path, model: str = "tiny-random") -> Any:
    """The standalone page's Blocks (nothing loads the model until a handler needs it)."""
    from lib_alignment.ui.app import build_blocks, standalone_context

    return build_blocks(standalone_context(model, output_dir, device="cpu"))


def handler(demo: Any, module: str, name: str) -> Any:
    """The event function `name` a tab module registered (gradio 4+ keeps a dict, 3.41 a list)."""
    fns = demo.fns.values() if isinstance(demo.fns, dict) else demo.fns
    found = [f for f in fns if getattr(f.fn, "__name__", "") == name and getattr(f.fn, "__module__", "").endswith(module)]
    assert found, f"no handler {name} in {module}"
    return found[0]


def call(demo: Any, module: str, name: str, **by_elem_id: Any) -> list[Any]:
    """Run a handler with every input at its component's current value, except those given by elem_id."""
    entry = handler(demo, module, name)
    args = []
    for component in entry.inputs:
        elem_id = getattr(component, "elem_id", None)
        args.append(by_elem_id[elem_id] if elem_id in by_elem_id else getattr(component, "value", None))
    result = entry.fn(*args)
    return list(result) if isinstance(result, (list, tuple)) else [result]
