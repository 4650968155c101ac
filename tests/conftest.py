"""Test-wide guards: no network, offline hub flags, small thread counts."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

_LOOPBACK_PREFIXES = ("127.", "::1", "localhost")
_real_connect = socket.socket.connect
_real_create_connection = socket.create_connection


class NetworkAccessError(RuntimeError):
    """Raised when code under test tries to reach anything but loopback."""


def _host_of(address: object) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


def _is_local(address: object) -> bool:
    host = _host_of(address)
    return host.startswith(_LOOPBACK_PREFIXES) or host in ("", "0.0.0.0") or "/" in host


def _guarded_connect(self: socket.socket, address: object) -> object:
    if self.family == getattr(socket, "AF_UNIX", None) or _is_local(address):
        return _real_connect(self, address)
    raise NetworkAccessError(f"test tried to open a network connection to {address!r}")


def _guarded_create_connection(address: object, *args: object, **kwargs: object) -> socket.socket:
    if _is_local(address):
        return _real_create_connection(address, *args, **kwargs)
    raise NetworkAccessError(f"test tried to open a network connection to {address!r}")


def _guarded_getaddrinfo_factory(real):  # type: ignore[no-untyped-def]
    def guarded(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host is None or _is_local((host,)):
            return real(host, *args, **kwargs)
        raise NetworkAccessError(f"test tried to resolve the host name {host!r}")

    return guarded


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.create_connection = _guarded_create_connection  # type: ignore[assignment]
socket.getaddrinfo = _guarded_getaddrinfo_factory(socket.getaddrinfo)  # type: ignore[assignment]


@pytest.fixture(scope="session")
def tiny_random_pipe():
    """One seeded random tiny pipeline shared by the tests that only read it."""
    from lib_alignment.models import load_pipeline

    return load_pipeline("tiny-random", device="cpu")


FAKE_WEBUI = os.path.join(os.path.dirname(__file__), "fake_webui")


@pytest.fixture
def fake_webui(tmp_path, monkeypatch):
    """Make the small fake A1111 importable as `modules` (and `launch`), fresh for each test."""
    import sys

    monkeypatch.setenv("FAKE_WEBUI_DATA", str(tmp_path / "webui"))
    monkeypatch.syspath_prepend(FAKE_WEBUI)
    for name in [m for m in sys.modules if m == "modules" or m.startswith("modules.") or m == "launch"]:
        monkeypatch.delitem(sys.modules, name)
    import modules.shared

    yield modules
    for name in [m for m in sys.modules if m == "modules" or m.startswith("modules.") or m == "launch"]:
        del sys.modules[name]


@pytest.fixture
def webui_app(fake_webui, monkeypatch):
    """The extension registered in the fake A1111 the way A1111 loads scripts/alignment.py; returns a factory
    for the FastAPI app its app_started callback builds (set `cmd_opts.api_auth` before calling it)."""
    import importlib.util
    from pathlib import Path

    from lib_alignment.ui import webui_tabs

    monkeypatch.setattr(webui_tabs, "_context", None)
    from modules import script_callbacks

    script_callbacks.clear_callbacks()
    script = Path(__file__).resolve().parent.parent / "scripts" / "alignment.py"
    spec = importlib.util.spec_from_file_location("alignment_script", script)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))

    def make():
        from fastapi import FastAPI

        app = FastAPI()
        script_callbacks.app_started_callbacks[0](None, app)
        return app

    return make
