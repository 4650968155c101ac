"""Fake of Forge's `backend` package (memory management and the diffusion engine's layout)."""
