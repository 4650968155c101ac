"""Model loading: one entry point for every source the project accepts.

`load_pipeline(source)` takes "tiny", "tiny-random", a diffusers folder, or a
single-file LDM checkpoint (with an optional `<name>.yaml` beside it), always
offline, and returns a diffusers `StableDiffusionPipeline` or
`StableDiffusionXLPipeline`.
"""

from .loading import PipelineOptions, load_pipeline

__all__ = ["PipelineOptions", "load_pipeline"]
