"""Helpers for the tests that drive the standalone app in headless Chromium."""
