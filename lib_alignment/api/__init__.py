"""HTTP API under /alignment/v1, served by the WebUI (on_app_started) and the standalone app alike."""

from __future__ import annotations

from .routes import register_routes

__all__ = ["register_routes"]
