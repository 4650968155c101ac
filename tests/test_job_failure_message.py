"""A failed job names its cause in one line (the traceback stays in train.log), and the WebUI's VAE reaches the trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from lib_alignment.jobs.host import JobHost
from lib_alignment.jobs.request import JobRequest
from lib_alignment.jobs.runner import JobRunner, last_error_line
from lib_alignment.models.ldm_export import export_ldm_checkpoint
from lib_alignment.models.ldm_keys import VAE_PREFIX
from lib_alignment.training import TrainConfig, Trainer
from lib_alignment.training.events import read_events
from lib_alignment.training.trainer import one_line_cause

QUIET_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TRACEBACK = """step 0
Traceback (most recent call last):
  File ".../lib_alignment/training/denoiser.py", line 68, in encode
    return self.text_encoders[0](input_ids[0])[0], None
RuntimeError: Expected tensor for argument #1 'indices' to have one of the following scalar types: Long, Int; but got torch.FloatTensor instead (while checking arguments for embedding)
Exception ignored in atexit callback: <function cleanup at 0x7f>
"""


def test_last_error_line_takes_the_exception_line_of_a_traceback():
    assert last_error_line(TRACEBACK).startswith("RuntimeError: Expected tensor for argument #1 'indices'")
    assert last_error_line("loading model\nKilled\n") == "Killed"
    assert last_error_line("") == ""


def test_one_line_cause_keeps_the_type_and_first_line():
    error = RuntimeError("first line of the cause\n  detail that belongs in the log\n")
    assert one_line_cause(error) == "RuntimeError: first line of the cause"
    assert one_line_cause(KeyError()) == "KeyError"
    assert len(one_line_cause(ValueError("x" * 2000))) == 500


def test_an_exception_inside_the_loop_ends_the_run_with_a_one_line_error_event(tmp_path, monkeypatch):
    from lib_alignment.training.data.synthetic import make_toy_pairs

    data = make_toy_pairs(tmp_path / "data", 2, resolution=32, seed=0)
    config = TrainConfig(method="dpo", model="tiny-random", data=str(data), output_dir=str(tmp_path / "out"), name="boom",
                         resolution=32, batch_size=1, max_train_steps=2, checkpoint_every=0, preview=False,
                         progress_bar=False, tensorboard=False)
    trainer = Trainer(config)

    def explode(*args, **kwargs):
        raise RuntimeError("Expected tensor for argument #1 'indices' to be Long\n(while checking arguments for embedding)")

    monkeypatch.setattr(trainer, "train_step", explode)
    with pytest.raises(RuntimeError):  # the traceback still reaches the log
        trainer.train()
    events = read_events(trainer.run_dir / "events.jsonl")
    endings = [e for e in events if e["event"] in ("done", "error")]
    assert len(endings) == 1 and endings[0]["event"] == "error"
    assert endings[0]["message"] == "RuntimeError: Expected tensor for argument #1 'indices' to be Long"
    assert endings[0]["kind"] == "exception"


# --- through the job runner: a checkpoint without VAE weights, with and without the WebUI's selected VAE -----------

@pytest.fixture(scope="module")
def no_vae_checkpoint(tiny_random_pipe, tmp_path_factory):
    """The tiny checkpoint without VAE weights and with float position_ids, plus its VAE as a separate file."""
    root = tmp_path_factory.mktemp("no-vae")
    exported = export_ldm_checkpoint(tiny_random_pipe, root / "full.safetensors")
    state = load_file(str(exported.checkpoint))
    key = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    state[key] = state[key].float()
    checkpoint = root / "no-vae.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith(VAE_PREFIX)}, str(checkpoint))
    checkpoint.with_suffix(".yaml").write_text(exported.yaml.read_text())
    vae = root / "VAE" / "tiny.vae.safetensors"
    vae.parent.mkdir()
    save_file({k[len(VAE_PREFIX):]: v for k, v in state.items() if k.startswith(VAE_PREFIX)}, str(vae))
    return checkpoint, vae


def _runner(root: Path, model: Path, vae: Path | None) -> JobRunner:
    return JobRunner(JobHost(name="standalone", output_dir=root / "out", lora_dir=root / "out" / "loras",
                             model_source=lambda: str(model), env=dict(QUIET_ENV), vae_file=lambda: vae))


def _request(data: Path, name: str) -> JobRequest:
    return JobRequest(method="dpo", name=name, dataset=str(data), preset="cpu",
                      options={"max_train_steps": 1, "resolution": 32, "sample_steps": 2, "preview": False})


@pytest.mark.slow
def test_job_without_vae_fails_in_one_line_and_trains_with_the_webuis_vae(no_vae_checkpoint, tmp_path):
    from lib_alignment.training.data.synthetic import make_toy_pairs

    checkpoint, vae = no_vae_checkpoint
    data = make_toy_pairs(tmp_path / "data", 4, resolution=32, seed=0)
    failing = _runner(tmp_path / "a", checkpoint, None)
    failed = failing.wait(failing.start(_request(data, "no-vae")).id, timeout=300)
    assert failed.state == "error"
    assert "\n" not in failed.message and failed.message.startswith("ValueError: ")
    assert str(checkpoint) in failed.message and "--vae" in failed.message
    assert "no VAE weights" in (failing.folder(failed.id) / "train.log").read_text()  # the log has it too

    working = _runner(tmp_path / "b", checkpoint, vae)
    status = working.start(_request(data, "with-vae"))
    assert json.loads((working.folder(status.id) / "config.json").read_text())["vae"] == str(vae)
    done = working.wait(status.id, timeout=300)
    assert done.state == "finished", done.message


def test_webui_vae_file_is_a1111s_loaded_vae_file(tmp_path, monkeypatch):
    """A1111 sets modules.sd_vae.loaded_vae_file only while a separate VAE replaces the checkpoint's own."""
    import sys
    import types

    from lib_alignment import webui_facade

    modules = types.ModuleType("modules")
    sd_vae = types.ModuleType("modules.sd_vae")
    modules.sd_vae = sd_vae
    monkeypatch.setitem(sys.modules, "modules", modules)
    monkeypatch.setitem(sys.modules, "modules.sd_vae", sd_vae)
    monkeypatch.setattr(webui_facade, "is_forge", lambda: False)
    vae = tmp_path / "models" / "VAE" / "vae-ft-mse.safetensors"
    vae.parent.mkdir(parents=True)
    vae.write_bytes(b"x")
    sd_vae.loaded_vae_file = None
    assert webui_facade.webui_vae_file() is None
    sd_vae.loaded_vae_file = str(vae)
    assert webui_facade.webui_vae_file() == vae
    sd_vae.loaded_vae_file = str(tmp_path / "deleted.safetensors")
    assert webui_facade.webui_vae_file() is None
