"""gradio builders shared by the standalone app and the WebUI tabs (gradio 3.41, 4.40 and current)."""
