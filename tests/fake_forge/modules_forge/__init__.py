"""Marker package: Forge ships `modules_forge` next to `modules`."""
