"""Preference data at scale: Pick-a-Pic shard folders, datasets folders, big CSVs streamed, bad images
skipped and counted mid-stream, the stop at the bad share, dedupe counts, resume position, a 2-process split."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from lib_alignment.training.data import DatasetValidationError, load_preference_data  # noqa: E402
from lib_alignment.training.data.streaming import StreamingDataset  # noqa: E402
from lib_alignment.training.data.synthetic import PICKAPIC_COLUMNS, make_pickapic_shards  # noqa: E402
from lib_alignment.training.data_stream import BadImageGuard, DataStreamError, SampleStream, collate  # noqa: E402

R = 32


def _jpeg(seed: int, size: int = 40) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _epoch(data, stream: SampleStream, guard_share: float = 1.0, workers: int = 0):
    """(captions of the items trained on, the guard) over one epoch of this process's share."""
    loader = torch.utils.data.DataLoader(data, batch_size=4, sampler=stream, collate_fn=collate, num_workers=workers)
    guard = BadImageGuard(iter(loader), guard_share, 2, len(data) * 2, min_images=1)
    seen = []
    wanted = stream.per_process
    batches = 0
    while batches * 4 < wanted:
        try:
            batch = next(guard)
        except StopIteration:
            break
        seen += batch["caption"]
        batches += 1
        # a batch that lost items to skipping still used 4 positions
        if batches * 4 >= wanted:
            break
    return seen, guard


def _table(rows: list[dict]) -> Path:
    cols = {c: [r.get(c) for r in rows] for c in rows[0]}
    return pa.table(cols)


def test_pickapic_shards_structure_counts_and_tie_policy(tmp_path: Path):
    """Explicit rows: a pair, a tie, are_different false, a duplicate, the same uid twice, an empty caption, a bad label."""
    a, b, c = _jpeg(1), _jpeg(2), _jpeg(3)
    base = {"are_different": True, "has_label": True, "jpg_0": a, "jpg_1": b, "label_1": 0.0}
    rows = [
        {**base, "caption": "one", "image_0_uid": "u1", "image_1_uid": "u2", "label_0": 1.0},
        {**base, "caption": "tie", "image_0_uid": "u3", "image_1_uid": "u4", "label_0": 0.5, "label_1": 0.5},
        {**base, "caption": "same", "image_0_uid": "u5", "image_1_uid": "u6", "label_0": 0.0, "label_1": 1.0, "are_different": False},
        {**base, "caption": "one", "image_0_uid": "u2", "image_1_uid": "u1", "label_0": 0.0, "label_1": 1.0},  # duplicate of row 1
        {**base, "caption": "uid", "image_0_uid": "u7", "image_1_uid": "u7", "label_0": 1.0},
        {**base, "caption": "two", "image_0_uid": "u8", "image_1_uid": "u9", "label_0": 0.0, "label_1": 1.0, "jpg_0": c},
    ]
    (tmp_path / "data").mkdir()
    pq.write_table(_table(rows[:3]), tmp_path / "data" / "train-00000-of-00002.parquet", row_group_size=2)
    pq.write_table(_table(rows[3:]), tmp_path / "data" / "train-00001-of-00002.parquet", row_group_size=2)
    pq.write_table(_table(rows[:1]), tmp_path / "data" / "test-00000-of-00001.parquet")  # another split: not read

    data = load_preference_data(tmp_path, "dpo", resolution=R)
    assert isinstance(data, StreamingDataset)
    counts = data.report.counts
    assert (counts["files"], counts["rows"], counts["pairs"]) == (2, 6, 2)
    assert (counts["not_different"], counts["duplicates"], counts["same_image"], counts["ties"]) == (1, 1, 1, 1)
    assert [data[i]["caption"] for i in range(len(data))] == ["one", "two"]
    # row 6 prefers image_1 (b): preferred first
    from lib_alignment.training.data.images import ImageRef, load_image_tensor

    two = data[1]["pixel_values"]
    assert torch.equal(two[0], load_image_tensor(ImageRef("k", "b", data=b), R)) and torch.equal(two[1], load_image_tensor(ImageRef("k", "c", data=c), R))
    assert data.locate(1)["record"] == 3 and data.locate(1)["shard"].endswith("train-00001-of-00002.parquet")

    weighted = load_preference_data(tmp_path, "dpo", resolution=R, tie_policy="weight")
    ties = [weighted[i] for i in range(len(weighted)) if weighted[i]["caption"] == "tie"]
    assert [t["weight"] for t in ties] == [0.5, 0.5]
    assert torch.equal(ties[0]["pixel_values"][0], ties[1]["pixel_values"][1])

    bad = [dict(rows[0], caption=" "), dict(rows[1], caption="x", label_0=0.7, label_1=0.3)]
    (tmp_path / "bad" / "data").mkdir(parents=True)
    for s in range(2):
        pq.write_table(_table(bad), tmp_path / "bad" / "data" / f"train-0000{s}-of-00002.parquet")
    with pytest.raises(DatasetValidationError) as caught:
        load_preference_data(tmp_path / "bad", "dpo", resolution=R)
    text = caught.value.report.format_text()
    assert "train-00000-of-00002.parquet, row 1, caption: empty caption" in text
    assert "train-00001-of-00002.parquet, row 2, label_0" in text
    with pytest.raises(DatasetValidationError) as skipping:  # skip_bad_rows leaves them out: nothing remains
        load_preference_data(tmp_path / "bad", "dpo", resolution=R, skip_bad_rows=True)
    assert skipping.value.report.counts["skipped"] == 4 and [p.code for p in skipping.value.report.blocking] == ["too_few"]


def test_bad_images_are_skipped_counted_named_and_stop_the_run(tmp_path: Path):
    folder = make_pickapic_shards(tmp_path / "pp", 60, shards=2, rows_per_group=10, image_size=32, bad_rows=(4, 33), identical_rows=(12,))
    data = load_preference_data(folder, "dpo", resolution=R)
    assert len(data) == 60
    seen, guard = _epoch(data, SampleStream(len(data), seed=1, blocks=data.block_sizes()), guard_share=0.5)
    assert (guard.bad, guard.identical) == (2, 1)
    assert len(seen) == 57 and len(set(seen)) == 57
    assert not any(s.endswith(f"number {n}") for s in seen for n in (4, 12, 33))
    skipped = []
    data2 = load_preference_data(folder, "dpo", resolution=R)
    loader = torch.utils.data.DataLoader(data2, batch_size=4, sampler=SampleStream(len(data2), seed=1, blocks=data2.block_sizes()), collate_fn=collate)
    stopper = BadImageGuard(iter(loader), 0.01, 2, 120, on_skip=skipped.append, min_images=1)
    with pytest.raises(DataStreamError) as caught:
        for _ in range(15):
            next(stopper)
    message = str(caught.value)
    assert "\n" not in message and "over the limit of 1.0%" in message
    first = next(s for s in skipped if s["bad"])
    assert f"{Path(first['file']).name}, row {first['row']}, jpg_0" in message
    assert first["code"] == "corrupt_image"

    with pytest.raises(DatasetValidationError) as strict:  # --strict-images: every image checked first
        load_preference_data(folder, "dpo", resolution=R, strict_images=True)
    problems = strict.value.report.problems
    assert sorted((Path(p.file).name, p.row, p.field) for p in problems) == [
        ("train-00000-of-00002.parquet", 5, "jpg_0"), ("train-00001-of-00002.parquet", 4, "jpg_0")]
    kept = load_preference_data(folder, "dpo", resolution=R, strict_images=True, skip_bad_rows=True)
    assert len(kept) == 57


def test_resume_position_and_group_local_order(tmp_path: Path):
    folder = make_pickapic_shards(tmp_path / "pp", 50, shards=2, rows_per_group=7, image_size=16)
    data = load_preference_data(folder, "dpo", resolution=16)
    blocks = data.block_sizes()
    assert sum(blocks) == 50 and max(blocks) == 7
    whole = SampleStream(len(data), seed=3, blocks=blocks)
    it = iter(whole)
    order = [next(it) for _ in range(130)]
    assert sorted(order[:50]) == list(range(50)) and order[:50] != order[50:100]
    # group-local: the items of one row group come together
    groups = [(data.locate(i)["shard"], data.locate(i)["row_group"]) for i in order[:50]]
    assert sum(1 for x, y in zip(groups, groups[1:]) if x != y) == len(blocks) - 1
    for consumed in (0, 13, 50, 77):
        resumed = SampleStream(len(data), seed=3, start=consumed, blocks=blocks)
        rit = iter(resumed)
        assert [next(rit) for _ in range(130 - consumed)] == order[consumed:]
        position = resumed.position(consumed)
        assert position["item"] == order[consumed] and position["epoch"] == consumed // 50


@pytest.mark.slow
def test_trainer_saves_the_data_position_and_resumes_from_it(tmp_path: Path):
    from training_helpers import single_thread

    from lib_alignment.training import TrainConfig, Trainer
    from lib_alignment.training.checkpoint import list_checkpoints, read_state

    folder = make_pickapic_shards(tmp_path / "pp", 24, shards=2, rows_per_group=5, image_size=32)
    values = dict(method="dpo", model="tiny-random", data=str(folder), output_dir=str(tmp_path / "out"), name="scale", resolution=R,
                  batch_size=2, max_train_steps=2, checkpoint_every=1, preview=False, progress_bar=False, tensorboard=False, validation_split=0)
    with single_thread():
        Trainer(TrainConfig(**values)).train()
        run = TrainConfig(**values).resolved_run_dir()
        state = read_state(list_checkpoints(run)[0])
        assert state.consumed == 2
        data = load_preference_data(folder, "dpo", resolution=R)
        order = [x for x, _ in zip(iter(SampleStream(len(data), 0, blocks=data.block_sizes())), range(4))]
        where = data.locate(order[2])
        assert state.data_position["item"] == order[2] and state.data_position["epoch"] == 0
        assert (state.data_position["shard"], state.data_position["row_group"], state.data_position["row"]) == (where["shard"], where["row_group"], where["row"])
        resumed = Trainer(TrainConfig(**{**values, "max_train_steps": 3, "resume": str(list_checkpoints(run)[0])}))
        resumed.setup()
        first = next(iter(resumed.loader))  # the stream starts at the saved position: no consumed row is read again
        assert first["caption"] == [data[order[2]]["caption"], data[order[3]]["caption"]]


def _two_process_worker(rank: int, folder: str, init: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    data = load_preference_data(folder, "dpo", resolution=16)
    stream = SampleStream(len(data), seed=5, rank=rank, world_size=2, blocks=data.block_sizes())
    seen, _ = _epoch(data, stream)
    groups = sorted({(data.locate(i)["shard"], data.locate(i)["row_group"]) for i in stream.process_share(0)})
    gathered: list = [None, None]
    dist.all_gather_object(gathered, {"seen": seen, "groups": groups})
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


def test_two_processes_see_the_same_pairs_as_one_none_twice(tmp_path: Path):
    import torch.multiprocessing as mp

    folder = make_pickapic_shards(tmp_path / "pp", 40, shards=2, rows_per_group=5, image_size=16)
    data = load_preference_data(folder, "dpo", resolution=16)
    single, _ = _epoch(data, SampleStream(len(data), seed=5, blocks=data.block_sizes()))
    out = tmp_path / "gathered.json"
    mp.spawn(_two_process_worker, args=(str(folder), f"file://{tmp_path / 'rendezvous'}", str(out)), nprocs=2, join=True)
    parts = json.loads(out.read_text())
    both = parts[0]["seen"] + parts[1]["seen"]
    assert len(both) == 40 and sorted(both) == sorted(single) and len(set(both)) == 40
    # each process reads its own row groups (one group may be split where the shares meet)
    shared = {tuple(g) for g in parts[0]["groups"]} & {tuple(g) for g in parts[1]["groups"]}
    assert len(shared) <= 1


def test_datasets_folder_glob_and_streamed_kto_csv(tmp_path: Path):
    # a folder as datasets' save_to_disk writes it: arrow IPC stream files beside state.json
    a, b = _jpeg(1), _jpeg(2)
    table = pa.table({"caption": ["p", "q", "r"], "jpg_0": [{"bytes": a, "path": None}] * 3, "jpg_1": [{"bytes": b, "path": None}] * 3,
                      "label_0": [1.0, 0.0, 1.0], "label_1": [0.0, 1.0, 0.0]})
    disk = tmp_path / "saved" / "train"
    disk.mkdir(parents=True)
    for k in range(2):
        with pa.OSFile(str(disk / f"data-0000{k}-of-00002.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=2)
    (disk / "state.json").write_text('{"_data_files": []}')
    (tmp_path / "saved" / "dataset_dict.json").write_text('{"splits": ["train"]}')
    data = load_preference_data(tmp_path / "saved", "dpo", resolution=R)
    assert len(data) == 6 and data.report.counts["files"] == 2 and any("duplicates are not looked for" in n for n in data.report.notes)
    assert data[1]["pixel_values"].shape == (2, 3, R, R)

    shards = make_pickapic_shards(tmp_path / "pp", 12, shards=3, rows_per_group=4, image_size=16)
    globbed = load_preference_data(str(shards / "data" / "train-0000[01]-*.parquet"), "dpo", resolution=16)
    assert globbed.report.counts["files"] == 2 and len(globbed) == 8

    # Diffusion-KTO's CSV with its image folder, streamed (as a 930 K-row file would be)
    images = tmp_path / "kto" / "images"
    images.mkdir(parents=True)
    lines = ["caption,file_path,label"]
    for i in range(6):
        (images / f"{i}.jpg").write_bytes(_jpeg(10 + i))
        lines.append(f"prompt {i},images/{i}.jpg,{['exclusive_win', 'exclusive_lose', 'intersections'][i % 3]}")
    lines.append("prompt 9,images/missing.jpg,exclusive_lose")
    (tmp_path / "kto" / "train_processed_v3.csv").write_text("\n".join(lines) + "\n")
    kto = load_preference_data(tmp_path / "kto" / "train_processed_v3.csv", "kto", resolution=16, strict_images=False)
    assert isinstance(kto, StreamingDataset) and kto.labels() == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert kto[6]["skipped"]["code"] == "missing_image" and kto[0]["pixel_values"].shape == (3, 16, 16)


def test_pickapic_writer_has_the_exact_layout(tmp_path: Path):
    folder = make_pickapic_shards(tmp_path / "pp", 10, shards=2, rows_per_group=3, image_size=16, tie_fraction=0.5, seed=2)
    files = sorted((folder / "data").iterdir())
    assert [f.name for f in files] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    table = pq.read_table(files[0])
    assert tuple(table.column_names) == PICKAPIC_COLUMNS and len(PICKAPIC_COLUMNS) == 18
    assert set(zip(table.column("label_0").to_pylist(), table.column("label_1").to_pylist())) <= {(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)}
    assert pq.ParquetFile(files[0]).metadata.num_row_groups == 2
    assert os.path.getsize(files[0]) > 5 * 2 * 16 * 16  # incompressible noise JPEGs


def test_small_streamed_sets_cache_latents_in_memory_and_keep_skipping(tmp_path: Path):
    folder = make_pickapic_shards(tmp_path / "pp", 10, shards=2, rows_per_group=3, image_size=16, bad_rows=(2,))
    data = load_preference_data(folder, "dpo", resolution=16)
    calls = []

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        calls.append(pixels.shape[0])
        return torch.nn.functional.avg_pool2d(pixels, 8)[:, :1].repeat(1, 4, 1, 1)

    before = data[0]["pixel_values"]
    data.cache_latents(encode, batch_size=4)
    assert sum(calls) == 2 * 9  # every readable pair's two images, once
    assert data[0]["latents"].shape == (2, 4, 2, 2) and torch.allclose(data[0]["latents"], encode(before))
    batch = collate([data[i] for i in range(len(data))])
    assert batch["latents"].shape[0] == 18 and len(batch["skipped"]) == 1


def test_install_plan_adds_pyarrow_only_where_missing_at_a_release_numpy_1_imports():
    from lib_alignment.install_plan import plan_installs

    a1111 = {"numpy": "1.26.2", "diffusers": "0.30.3", "peft": "0.12.0", "transformers": "4.30.2", "accelerate": "0.21.0",
             "safetensors": "0.4.2", "huggingface-hub": "0.24.7", "pillow": "9.5.0", "tqdm": "4.66.1"}
    assert [(i.name, i.spec) for i in plan_installs(a1111).installs] == [("pyarrow", "<26")]
    assert [(i.name, i.spec) for i in plan_installs({**a1111, "numpy": "2.2.0"}).installs] == [("pyarrow", ">=14")]
    assert plan_installs({**a1111, "pyarrow": "12.0.0"}).installs == []  # present: never touched
