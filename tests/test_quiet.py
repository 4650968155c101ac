"""Library noise stays out of the terminal and the job log; real warnings stay."""

from __future__ import annotations

from lib_alignment.jobs.runner import clean_log_lines, log_tail


def test_noise_is_dropped_and_real_warnings_kept():
    import io
    import logging

    from diffusers.utils import logging as diffusers_logging

    from lib_alignment.quiet import quiet_libraries

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # beside diffusers' own stderr handler, which gets the same filter
    root = diffusers_logging.get_logger()
    root.addHandler(handler)
    try:
        quiet_libraries()
        log = diffusers_logging.get_logger("diffusers.models.modeling_utils")
        log.warning("There are modules in UNet2DConditionModel that should be kept in float32: []. Casting directly")
        log.warning("No LoRA keys associated to CLIPTextModel found with the prefix='text_encoder'. Open an issue")
        log.warning("the checkpoint has unexpected keys: foo")
    finally:
        root.removeHandler(handler)
    err = stream.getvalue()
    assert "float32: []" not in err and "No LoRA keys" not in err
    assert "unexpected keys: foo" in err


def test_the_job_log_loses_escape_codes_redraws_and_noise(tmp_path):
    raw = (
        "[transformers] `CLIPImageProcessor` requires torchvision (not installed); falling back to `CLIPImageProcessorPil`\n"
        "Loading weights:   0%|          | 0/36 [00:00<?, ?it/s]\x1b[A\rLoading weights: 100%|##| 36/36\n"
        "\n"
        "step 1/4 loss 0.69\rstep 2/4 loss 0.68\n"
        "real warning: the data has 3 ties\n"
    )
    assert clean_log_lines(raw) == ["Loading weights: 100%|##| 36/36", "step 2/4 loss 0.68", "real warning: the data has 3 ties"]
    (tmp_path / "train.log").write_text(raw)
    assert log_tail(tmp_path / "train.log", 2) == "step 2/4 loss 0.68\nreal warning: the data has 3 ties"
