"""The sampler names the standalone app and the command line offer, importable without torch."""

from __future__ import annotations

#: Sampler names shown to users → diffusers scheduler class names (deterministic ones first).
SAMPLERS: dict[str, str] = {
    "DDIM": "DDIMScheduler",
    "Euler": "EulerDiscreteScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
    "UniPC": "UniPCMultistepScheduler",
    "Heun": "HeunDiscreteScheduler",
    "Euler a": "EulerAncestralDiscreteScheduler",
}
ANCESTRAL_SAMPLERS = frozenset({"Euler a"})
