"""What a tab needs from its host: a generation backend, the model, folders."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class AppContext:
    """The host-specific pieces behind the shared tab builders.

    host: "standalone", "a1111" or "forge".
    model_source: returns what trainers should load ("tiny", a diffusers folder, or
    the loaded checkpoint's file); called at job start so it follows model switches.
    backend_factory: builds the GenerationBackend on first use (loading is slow).
    output_dir: sessions and jobs live under it. lora_dir: where finished LoRAs go.
    """

    host: str
    model_source: Callable[[], str]
    backend_factory: Callable[[], Any]
    output_dir: Path
    lora_dir: Path
    _backend: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _services: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def backend(self) -> Any:
        """The generation backend, created once and shared by every tab."""
        with self._lock:
            if self._backend is None:
                self._backend = self.backend_factory()
            return self._backend

    def service(self, name: str, factory: Callable[[], Any]) -> Any:
        """One shared object per context and name (say, the open refine sessions), made on first use,
        so the tab and the API routes of one host see the same state."""
        with self._lock:
            if name not in self._services:
                self._services[name] = factory()
            return self._services[name]

    @property
    def in_webui(self) -> bool:
        return self.host != "standalone"
