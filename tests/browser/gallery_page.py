"""A page with the Curate tab and an A1111-style txt2img result panel (gallery, button row with another extension's button, hidden
generation info, infotext) and the extension's script and routes, as the fake WebUI with --api-auth
(run as a script by the tests).

    python tests/browser/gallery_page.py PORT IMAGE_FOLDER   (FAKE_WEBUI_DATA: the fake WebUI's data folder)

Generate fills the gallery with the PNGs of IMAGE_FOLDER (A1111 infotext inside) and the generation info the
WebUI would send with them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def main(port: int, folder: Path) -> None:
    sys.path[:0] = [str(ROOT / "tests" / "fake_webui"), str(ROOT)]
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI
    from modules import shared

    from lib_alignment.api import register_routes
    from lib_alignment.curate.metadata import read_metadata
    from lib_alignment.ui import curate_view
    from lib_alignment.ui.assets import head_html, javascript_text, style_css
    from lib_alignment.ui.compat import gradio_major
    from lib_alignment.ui.webui_tabs import webui_context

    shared.cmd_opts.api_auth = "alice:secret"  # the page must get through with its token
    ctx = webui_context()
    files = sorted(str(p) for p in folder.glob("*.png"))
    info = {"index_of_first_image": 0, "infotexts": [read_metadata(Path(f)).infotext for f in files],
            "sd_model_name": "tiny", "job_timestamp": "20261207000000"}

    def generate() -> list:
        return [files, json.dumps(info), f"<p>{info['infotexts'][0]}</p>"]

    major = gradio_major()
    kwargs = {"css": style_css(), "head": head_html()} if major in (4, 5) else {}
    with gr.Blocks(analytics_enabled=False, **kwargs) as demo:
        if major < 4:
            demo.load(None, None, None, _js=f"() => {{ {javascript_text()} }}")
        with gr.Tab("txt2img", elem_id="tab_txt2img"):
            run = gr.Button("Generate", elem_id="txt2img_generate")
            with gr.Column(elem_id="txt2img_results"):
                with gr.Group(elem_id="txt2img_gallery_container"):
                    gallery = gr.Gallery(elem_id="txt2img_gallery", columns=4, preview=True, show_label=False)
                with gr.Row(elem_id="image_buttons_txt2img", elem_classes="image-buttons"):
                    gr.Button("📂", elem_id="txt2img_open_folder")
                    gr.Button("other extension", elem_id="other_extension_button")
                generation_info = gr.Textbox(visible=False, elem_id="generation_info_txt2img")
                html_info = gr.HTML(elem_id="html_info_txt2img")
        with gr.Tab("Curate", elem_id="tab_alignment_curate"):
            curate_view.build(ctx)  # the extension's Curate tab, which also carries the page token
        run.click(generate, outputs=[gallery, generation_info, html_info])
    demo.queue()
    app = FastAPI()
    register_routes(app, ctx)
    extra = {"css": style_css(), "head": head_html()} if major >= 6 else {}
    app = gr.mount_gradio_app(app, demo, path="/", **extra)
    print(f"serving on {port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
