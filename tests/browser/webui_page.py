"""Serve the extension's tabs inside an A1111-style page with the fake WebUI (run as a script by the tests).

    python tests/browser/webui_page.py PORT        (FAKE_WEBUI_DATA names the fake WebUI's data folder)

Like A1111's ui.py: the on_ui_tabs callback's Blocks are rendered into one gr.Blocks, each in a
TabItem with elem_id tab_<id>, then queued and launched.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def main(port: int) -> None:
    sys.path[:0] = [str(ROOT / "tests" / "fake_webui"), str(ROOT)]
    import gradio as gr
    from modules import script_callbacks

    spec = importlib.util.spec_from_file_location("alignment_script", ROOT / "scripts" / "alignment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tabs = [tab for callback in script_callbacks.ui_tabs_callbacks for tab in callback()]
    with gr.Blocks(analytics_enabled=False) as demo, gr.Tabs(elem_id="tabs"):
        for interface, label, ifid in tabs:
            with gr.TabItem(label, id=ifid, elem_id=f"tab_{ifid}"):
                interface.render()
    demo.queue()
    kwargs = {"server_name": "127.0.0.1", "server_port": port, "prevent_thread_lock": True, "quiet": True}
    if "ssr_mode" in inspect.signature(demo.launch).parameters:
        kwargs["ssr_mode"] = False
    demo.launch(**kwargs)
    print(f"serving on {port}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(int(sys.argv[1]))
