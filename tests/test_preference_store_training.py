"""Training from *My preferences*: a DPO job (the tab's and POST /jobs' path) and a KTO run (`train --data @preferences`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lib_alignment.jobs import DatasetError, JobRequest, JobRunner
from lib_alignment.jobs.host import JobHost
from lib_alignment.preferences import PreferenceStore
from lib_alignment.preferences.exchange import import_data
from lib_alignment.training.data.synthetic import make_toy_pairs

QUIET_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    """A store holding 6 toy judgements from the gallery and 2 from curation (other prompts)."""
    root = tmp_path_factory.mktemp("prefs") / "store"
    data = make_toy_pairs(tmp_path_factory.mktemp("toy"), 8, resolution=64)
    with PreferenceStore(root) as store:
        import_data(store, data, source="gallery")
        for entry in store.list(newest_first=False)[6:]:  # the last two become curation, so a filter has work to do
            store.undo(entry.id)
            winner, *losers = entry.images
            store.add_judgement(winner, losers, source="curate")
    return root


def runner_for(tmp: Path, store_root: Path) -> JobRunner:
    host = JobHost(
        name="standalone", output_dir=tmp / "out", lora_dir=tmp / "out" / "loras", model_source=lambda: "tiny-random",
        env=dict(QUIET_ENV), preferences_dir=store_root,
    )
    return JobRunner(host)


@pytest.mark.slow
def test_dpo_job_from_my_preferences_trains_on_a_filtered_snapshot(store_root, tmp_path):
    runner = runner_for(tmp_path, store_root)
    report = runner.check_dataset("@preferences?source=gallery", "dpo")
    assert not report.blocking and report.counts["pairs"] == 6
    assert report.notes[0].startswith("My preferences (source gallery): 6 pairs for DPO")
    assert runner.check_dataset("@preferences?prompt=no such prompt", "dpo").blocking

    status = runner.start(
        JobRequest(method="dpo", name="mine-dpo", dataset="@preferences?source=gallery", preset="cpu",
                   options={"max_train_steps": 1, "resolution": 64, "preview": False, "validation_split": 0, "sample_every": 0})
    )
    with PreferenceStore(store_root) as store:  # labels added while the job runs do not reach it
        entry = store.list()[0]
        store.add_judgement(entry.images[1], [entry.images[0]], source="gallery")
    final = runner.wait(status.id, timeout=300)
    assert final.state == "finished", runner.log(status.id)
    assert (tmp_path / "out" / "loras" / "mine-dpo.safetensors").is_file()
    record = json.loads((runner.folder(status.id) / "job.json").read_text())
    assert record["dataset"]["source"] == "preferences" and record["dataset"]["preferences"]["dpo_pairs"] == 6
    used = Path(record["dataset"]["used"])
    assert used.parent.parent == runner.folder(status.id) and len(used.read_text().splitlines()) == 7  # header + 6 pairs
    assert os.stat(next((used.parent / "images").iterdir())).st_nlink >= 2  # the snapshot links the store's images

    with pytest.raises(DatasetError) as empty:
        runner.start(JobRequest(method="kto", name="none", dataset="@preferences?source=compare", preset="cpu"))
    assert "nothing to train on" in str(empty.value) and "0 labels for KTO" in str(empty.value)


@pytest.mark.slow
def test_kto_from_the_command_line_with_data_preferences(store_root, tmp_path, capsys):
    from training_helpers import train_from_cli

    out = tmp_path / "loras"
    code = train_from_cli(f"@preferences?store={store_root}&source=curate", out, "kto", "mine-kto", 64, 2, steps=1)  # type: ignore[arg-type]
    assert code == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "My preferences (source curate): 4 labels for KTO (2 desirable, 2 undesirable)" in err
    assert (out / "mine-kto.safetensors").is_file()
    snapshot = out.parent / "alignment-runs" / "mine-kto" / "data" / "kto.csv"
    assert snapshot.is_file() and len(snapshot.read_text().splitlines()) == 5

    code = train_from_cli("@preferences?colour=red", out, "kto", "bad", 64, 2)  # type: ignore[arg-type]
    assert code == 2 and "colour: unknown filter" in capsys.readouterr().err
