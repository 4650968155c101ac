"""Keep library chatter that is not the user's business out of the terminal and the job log.

Dropped: transformers' notes that an image processor falls back to PIL without
torchvision, diffusers' "modules that should be kept in float32: []" (an empty
list: nothing to do), its "No LoRA keys associated to CLIPTextModel" for a LoRA
that only touches the UNet (all ours by default), and the loading progress bars.
Every other warning still shows.
"""

from __future__ import annotations

import logging
import re
import warnings

#: Messages that say nothing the user can or should act on.
NOISE = (
    re.compile(r"requires torchvision \(not installed\); falling back to"),
    re.compile(r"that should be kept in float32: \[\]"),
    re.compile(r"No LoRA keys associated to CLIPText"),
)


def is_noise(message: str) -> bool:
    """True for a message on the NOISE list."""
    return any(pattern.search(message) for pattern in NOISE)


class NoiseFilter(logging.Filter):
    """A logging filter that drops the NOISE messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not is_noise(record.getMessage())
        except Exception:  # noqa: BLE001 - a record that cannot format is not ours to drop
            return True


_FILTER = NoiseFilter()
_done = False


def quiet_libraries(progress_bars: bool = False) -> None:
    """Install the filter on transformers' and diffusers' loggers and handlers (imports only their logging
    modules) and turn their loading progress bars off unless asked; idempotent."""
    global _done
    for name in ("transformers", "diffusers", "peft"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for module_name in ("transformers.utils.logging", "diffusers.utils.logging"):
        try:
            module = __import__(module_name, fromlist=["get_logger"])
        except ImportError:
            continue
        root = module.get_logger()  # the library's root logger, with its own stderr handler
        if _FILTER not in root.filters:
            root.addFilter(_FILTER)
        for handler in root.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)  # records of child loggers propagate to these handlers
        if not progress_bars and hasattr(module, "disable_progress_bar"):
            module.disable_progress_bar()
    if not _done:
        for pattern in NOISE:
            warnings.filterwarnings("ignore", message=f".*{pattern.pattern}")
        _done = True
