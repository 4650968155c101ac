"""Curate: rank images already on disk (WebUI outputs, ComfyUI outputs, uploads) by pairs of the same prompt."""
