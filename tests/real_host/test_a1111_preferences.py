"""My preferences in the real A1111: labels posted through the API (with --api-auth) land in the store in the
WebUI's data folder, and a KTO job trained from *My preferences* makes a LoRA the WebUI lists."""

from __future__ import annotations

import base64
import csv
import json
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real_host, pytest.mark.slow]
API = "/alignment/v1/preferences"


def _png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def test_labels_through_the_api_then_a_kto_job_from_my_preferences(a1111_host, tmp_path):
    from lib_alignment.training.data.synthetic import make_toy_kto

    host = a1111_host
    source = f"rh-gallery-{uuid.uuid4().hex[:6]}"  # the kit's store may hold an earlier run's labels
    table = make_toy_kto(tmp_path / "kto", 4, resolution=64)  # kto.csv: file_name, caption, label
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    data = table.parent
    label = {"image": {"data": _png(data / rows[0]["file_name"]), "prompt": rows[0]["caption"]}, "liked": True, "source": source}
    assert host.post(f"{API}/labels", json=label, auth=None).status_code == 401
    assert host.post(f"{API}/labels", json={**label, "liked": "yes"}).json()["detail"][0]["loc"][-1] == "liked"
    for row in rows:
        body = {
            "image": {"data": _png(data / row["file_name"]), "prompt": row["caption"], "seed": 1,
                      "checkpoint": host.checkpoint.stem},
            "liked": row["label"] == "exclusive_win",
            "source": source,
        }
        answer = host.post(f"{API}/labels", json=body)
        assert answer.status_code == 200, answer.text[:2000]
    counts = host.get(f"{API}/counts", params={"source": source}).json()
    wins = sum(row["label"] == "exclusive_win" for row in rows)
    assert counts["counts"]["kto_desirable"] == wins and counts["counts"]["kto_undesirable"] == len(rows) - wins
    assert (host.webui / "alignment" / "preferences" / "preferences.sqlite3").is_file()  # the WebUI's data dir

    name = f"rh-prefs-kto-{source[-6:]}"
    options = {"max_train_steps": 2, "learning_rate": 5e-3, "resolution": 64, "sample_steps": 2, "batch_size": 2, "preview": False}
    job = host.start_job({"method": "kto", "name": name, "preset": "cpu", "dataset": f"@preferences?source={source}", "options": options})
    done = host.poll_job(job["id"])
    assert done["state"] == "finished", json.dumps(done)[:4000]
    record = json.loads((host.alignment_dir / "jobs" / job["id"] / "job.json").read_text())
    assert record["dataset"]["source"] == "preferences"
    assert f"{len(rows)} labels for KTO ({wins} desirable" in record["dataset"]["summary"]
    lora = Path(done["outputs"]["lora"])
    assert lora == host.lora_dir / f"{name}.safetensors" and lora.is_file()
    assert host.post("/sdapi/v1/refresh-loras").status_code == 200
    assert name in {entry["name"] for entry in host.get("/sdapi/v1/loras").json()}
