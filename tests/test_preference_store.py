"""The preference store: round trips, dedupe by content, durability under kill -9, two writers, export/import."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from lib_alignment.preferences import NotInStore, PreferenceError, PreferenceFilter, PreferenceStore, default_store, store_root
from lib_alignment.preferences.exchange import LAYOUTS, export_store, import_data
from lib_alignment.preferences.training import make_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent


def png(colour: str, size: int = 16) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


def png_bytes(colour: str, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    png(colour, size).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path):
    with PreferenceStore(tmp_path / "store") as opened:
        yield opened


def batch(store: PreferenceStore, prompt: str, colours: list[str], source: str = "gallery", checkpoint: str = "") -> list[str]:
    return [
        store.add_image(png(c), prompt=prompt, seed=i, settings={"steps": 20}, checkpoint=checkpoint, checkpoint_hash="ab12cd34" if checkpoint else "", source=source)
        for i, c in enumerate(colours)
    ]


def test_round_trip_of_labels_judgements_rankings_and_their_training_counts(store):
    red, blue, green = batch(store, "a circle", ["red", "blue", "green"], checkpoint="v1-5-pruned")
    liked = store.add_label(red, True, source="gallery")
    store.add_label(blue, False, source="gallery")
    judged = store.add_judgement(red, [blue, green], source="gallery", group="batch-1")
    ranked = store.add_ranking([green, blue, red], source="curate", human=False)

    entries = store.list(newest_first=False)
    assert [(e.kind, e.images) for e in entries] == [
        ("label", (red,)), ("label", (blue,)), ("judgement", (red, blue, green)), ("ranking", (green, blue, red))
    ]
    assert entries[0].liked is True and entries[1].liked is False and entries[2].group == "batch-1"
    assert entries[3].human is False and entries[0].prompt == "a circle" and entries[0].checkpoint == "v1-5-pruned"
    record = store.image(red)
    assert (record.seed, record.settings, record.width, record.ext) == (0, {"steps": 20}, 16, "png")
    assert store.image_file(red).read_bytes().startswith(b"\x89PNG")

    counts = store.counts()
    assert (counts["entries"], counts["labels"], counts["judgements"], counts["rankings"], counts["images"]) == (4, 2, 1, 1, 3)
    # the later ranking green > blue > red decides all three pairs; the likes add no pair beyond them
    assert counts["dpo_pairs"] == 3 and counts["listwise_rankings"] == 1 and counts["listwise_m"] == 3
    # explicit likes decide red (win) and blue (lose); green only ever won or lost through judgements: both
    assert (counts["kto_desirable"], counts["kto_undesirable"], counts["kto_intersections"]) == (2, 1, 1)

    assert store.undo(ranked) is True and store.undo(ranked) is False
    after = store.counts()
    assert after["entries"] == 3 and after["listwise_rankings"] == 0
    assert after["dpo_pairs"] == 2  # red > blue, red > green from the judgement
    assert store.counts(PreferenceFilter(include_undone=True))["entries"] == 4
    assert store.entry(liked).liked is True
    with pytest.raises(NotInStore, match="entry_id"):
        store.undo(999)


def test_filters_select_by_source_checkpoint_prompt_date_and_human(store):
    a = batch(store, "A Red Circle on blue", ["red", "blue"], checkpoint="dreamshaper_8")
    b = batch(store, "a square", ["white", "black"], source="curate")
    store.add_judgement(a[0], [a[1]], source="gallery")
    store.add_judgement(b[0], [b[1]], source="curate", human=False)
    time.sleep(0.02)
    middle = time.time()
    time.sleep(0.02)
    store.add_label(b[0], True, source="rank-refine")

    def ids(**kw):
        return [e.kind + ":" + e.source for e in store.list(PreferenceFilter(**kw), newest_first=False)]

    assert ids(sources="gallery,curate") == ["judgement:gallery", "judgement:curate"]
    assert ids(sources=("rank-refine",)) == ["label:rank-refine"]
    assert ids(prompt="red circle") == ["judgement:gallery"]  # case-insensitive substring
    assert ids(checkpoint="DREAMSHAPER") == ["judgement:gallery"]
    assert ids(checkpoint="ab12") == ["judgement:gallery"]  # a hash prefix
    assert ids(since=middle) == ["label:rank-refine"]
    assert ids(until=middle) == ["judgement:gallery", "judgement:curate"]
    assert ids(human=False) == ["judgement:curate"]
    day = time.strftime("%Y-%m-%d")
    assert len(ids(since=day)) == 3 and ids(until=day) == []
    assert store.sources() == ["curate", "gallery", "rank-refine"]
    assert store.checkpoints() == ["dreamshaper_8"]
    with pytest.raises(PreferenceError, match="since: 'yesterday' is not a date"):
        PreferenceFilter(since="yesterday")
    with pytest.raises(PreferenceError) as unknown:
        PreferenceFilter.from_dict({"colour": "red"})
    assert unknown.value.field == "colour"


def test_images_are_stored_once_by_content_with_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        store = PreferenceStore(tmp_path / "store")
        first = store.add_image(png_bytes("red"), prompt="a circle", source="gallery")
        again = store.add_image(png_bytes("red"), prompt="a circle", source="curate", path="/outputs/x.png")
        from_pil = store.add_image(png("red"), prompt="", source="gallery")
        other = store.add_image(png_bytes("blue"), prompt="a circle", source="gallery")
        jpeg = io.BytesIO()
        png("green").save(jpeg, format="JPEG")
        as_jpeg = store.add_image(jpeg.getvalue(), prompt="a circle", source="gallery")
        file = tmp_path / "image.bmp"
        png("yellow").save(file, format="BMP")
        from_bmp = store.add_image(file, prompt="a circle", source="gallery")
    finally:
        os.umask(old)
    assert first == again == from_pil and other != first
    files = sorted(p.relative_to(store.root / "images").as_posix() for p in (store.root / "images").rglob("*") if p.is_file())
    assert len(files) == 4 and f"{first[:2]}/{first}.png" in files and f"{as_jpeg[:2]}/{as_jpeg}.jpg" in files
    assert store.image(from_bmp).ext == "png"  # other formats are kept as PNG
    assert store.image(first).path == "/outputs/x.png" and store.image(first).source == "gallery"
    assert os.stat(store.image_file(first)).st_mode & 0o777 == 0o640
    assert os.stat(store.db_path).st_mode & 0o777 == 0o640
    assert not [p for p in store.root.rglob("*.tmp")]


def test_bad_input_is_refused_with_the_field_named(store):
    red, blue = batch(store, "a circle", ["red", "blue"])
    with pytest.raises(PreferenceError, match="^image: the image bytes is not a readable image"):
        store.add_image(b"not an image", prompt="x", source="gallery")
    with pytest.raises(PreferenceError, match="^source: a non-empty string"):
        store.add_image(png("red"), prompt="x", source="")
    with pytest.raises(NotInStore) as missing:
        store.add_judgement(red, ["0" * 64], source="gallery")
    assert missing.value.field == "loser_ids"
    with pytest.raises(PreferenceError, match="^loser_ids: the winner cannot also be a loser"):
        store.add_judgement(red, [red, blue], source="gallery")
    with pytest.raises(PreferenceError, match="^image_ids: a ranking orders at least two"):
        store.add_ranking([red], source="curate")
    with pytest.raises(PreferenceError, match="^liked: true or false"):
        store.add_label(red, "yes", source="gallery")  # type: ignore[arg-type]
    assert store.counts()["entries"] == 0


WRITER = r"""
import sys
from PIL import Image
from lib_alignment.preferences import PreferenceStore
store = PreferenceStore(sys.argv[1])
tag, count = sys.argv[2], int(sys.argv[3])
for i in range(count):
    image = store.add_image(Image.new("RGB", (8, 8), (i % 256, i // 256, len(tag))), prompt=f"{tag} {i}", seed=i, source=tag)
    entry = store.add_label(image, i % 2 == 0, source=tag)
    print(entry, image, flush=True)  # acknowledged: the call returned
"""


def _writer(root: Path, tag: str, count: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), tag, str(count)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_kill_9_while_labelling_loses_nothing_acknowledged(tmp_path):
    root = tmp_path / "store"
    PreferenceStore(root).close()
    proc = _writer(root, "gallery", 100_000)
    acknowledged = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acknowledged.append(line.split())
        if len(acknowledged) == 40:
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the writer is inside its next add
            break
    proc.wait(timeout=30)
    acknowledged += [line.split() for line in proc.stdout.read().splitlines()]  # printed before the kill landed
    assert proc.returncode == -signal.SIGKILL
    store = PreferenceStore(root)
    entries = {e.id: e for e in store.list()}
    for entry_id, image_id in acknowledged:
        assert int(entry_id) in entries and entries[int(entry_id)].images == (image_id,)
        assert store.image_file(image_id).is_file()
    assert len(entries) in (len(acknowledged), len(acknowledged) + 1)  # at most the unprinted last one
    for entry in entries.values():  # no row names a missing file
        assert store.image_file(entry.images[0]).is_file()


def test_two_writer_processes_at_once_lose_nothing(tmp_path):
    root = tmp_path / "store"
    PreferenceStore(root).close()
    procs = [_writer(root, tag, 60) for tag in ("gallery", "curate")]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    printed = [line.split() for out in outputs for line in out.splitlines()]
    assert len(printed) == 120
    store = PreferenceStore(root)
    entries = {e.id: e for e in store.list()}
    assert len(entries) == 120 and {int(i) for i, _ in printed} == set(entries)
    assert store.counts(PreferenceFilter(sources="curate"))["labels"] == 60


def test_threads_share_one_store_object(store):
    import threading

    red, blue = batch(store, "a circle", ["red", "blue"])
    errors: list[BaseException] = []

    def label(n: int) -> None:
        try:
            for i in range(10):
                store.add_label(red if (n + i) % 2 else blue, bool(i % 2), source=f"thread-{n}")
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=label, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and store.counts()["labels"] == 40


def test_export_every_layout_reads_back_and_imports_into_a_new_store(store, tmp_path):
    from lib_alignment.training.data import load_preference_data
    from lib_alignment.training.data.rankings import load_rankings

    a = batch(store, "a red circle", ["red", "orange", "pink"])
    b = batch(store, "a blue square", ["blue", "navy", "cyan"], source="curate")
    store.add_judgement(a[0], [a[1], a[2]], source="gallery")
    store.add_ranking(b, source="curate")
    store.add_label(a[0], True, source="gallery")
    store.add_label(a[2], False, source="gallery")
    counts = store.counts()
    assert counts["dpo_pairs"] == 5

    out = tmp_path / "exports"
    for layout in LAYOUTS:
        export_store(store, out / layout, layout)
    assert load_preference_data(out / "all" / "pairs.csv", "dpo", resolution=16).report.counts["pairs"] == 5
    assert len(load_preference_data(out / "pickapic" / "pairs.parquet", "dpo", resolution=16)) == 5
    assert len(load_preference_data(out / "folder-pairs", "dpo", resolution=16)) == 5
    kto = load_preference_data(out / "kto-csv" / "kto.csv", "kto", resolution=16)
    assert (kto.report.counts["desirable"], kto.report.counts["undesirable"]) == (counts["kto_desirable"], counts["kto_undesirable"])
    labeled = load_preference_data(out / "folder-labeled", "kto", resolution=16)
    assert len(labeled) == counts["kto_labels"]
    assert len(load_rankings(out / "rankings-csv" / "rankings.csv", 16)) == 1
    exported = next((out / "all" / "images").iterdir())
    assert os.stat(exported).st_nlink == 1  # a copy: editing an export never changes the store
    with pytest.raises(PreferenceError, match="^out_dir: .* exists"):
        export_store(store, out / "all", "all")

    fresh = PreferenceStore(tmp_path / "fresh")
    first = import_data(fresh, out / "pickapic" / "pairs.parquet")
    assert first.kind == "pairs" and first.entries == 5
    assert import_data(fresh, out / "pickapic" / "pairs.parquet").already == 5  # idempotent
    assert import_data(fresh, out / "kto-csv" / "kto.csv").entries == counts["kto_labels"]
    assert import_data(fresh, out / "rankings-csv").kind == "rankings"
    again = fresh.counts()
    assert again["dpo_pairs"] == 5 and again["images"] == 6
    assert {r.prompt for r in fresh.images(i for e in fresh.list() for i in e.images).values()} == {"a red circle", "a blue square"}
    assert import_data(fresh, out / "folder-labeled", source="folder").entries == counts["kto_labels"]
    assert fresh.counts(PreferenceFilter(sources="folder"))["labels"] == counts["kto_labels"]


def test_import_of_bad_data_names_the_row_and_adds_nothing(store, tmp_path):
    from lib_alignment.training.data import DatasetValidationError

    (tmp_path / "a.png").write_bytes(png_bytes("red"))
    table = tmp_path / "pairs.csv"
    table.write_text("caption,image_0,image_1,label_0\ncircle,a.png,missing.png,1\n")
    with pytest.raises(DatasetValidationError) as bad:
        import_data(store, table)
    assert "row 2" in bad.value.report.format_text() and "missing.png" in bad.value.report.format_text()
    assert store.counts()["entries"] == 0


def test_dataset_spec_round_trips_filters():
    spec = make_spec(source=["gallery", "curate"], prompt="a cat, sitting", since="2026-12-01", human=True)
    filters, named = parse_spec(spec)
    assert filters.sources == ("gallery", "curate") and filters.prompt == "a cat, sitting" and filters.human is True
    assert filters.since is not None and named is None
    assert parse_spec("@preferences?store=/tmp/x")[1] == "/tmp/x"
    with pytest.raises(PreferenceError) as bad:
        parse_spec("@preferences?colour=red")
    assert bad.value.field == "colour"


def test_default_store_lives_in_the_data_dir(tmp_path):
    from lib_alignment.ui.context import AppContext

    assert store_root(tmp_path) == tmp_path / "alignment" / "preferences"
    ctx = AppContext(host="standalone", model_source=lambda: "tiny", backend_factory=lambda: None, output_dir=tmp_path / "out", lora_dir=tmp_path / "l")
    assert default_store(ctx) is default_store(ctx)  # one shared object per context
    assert default_store(ctx).root == tmp_path / "out" / "preferences"


def test_rank_and_refine_rounds_reach_the_store_once_and_leave_it_on_undo(store, tmp_path):
    import json

    from lib_alignment.preferences.refine_sync import sync_all

    session = tmp_path / "out" / "refine" / ("ab" * 16)
    rounds = {1: ([2, 0, 1, 3], "human"), 2: ([1], "scorer"), 3: (None, None)}
    for number, (order, source) in rounds.items():
        folder = session / "rounds" / f"{number:04d}"
        folder.mkdir(parents=True)
        names = [f"candidate-{i}.png" for i in range(4)]
        for i, name in enumerate(names):
            png((40 * i, 10 * number, 0)).save(folder / name)
        record = {"round": number, "images": names, "prompt": "a red circle", "negative_prompt": "", "seed": 7,
                  "settings": {"steps": 20}, "model": "tiny", "order": order, "source": source}
        (folder / "round.json").write_text(json.dumps(record))
    (session / "session.json").write_text(json.dumps({"rounds": [1, 2, 3]}))

    import threading

    added: list[int] = []
    threads = [threading.Thread(target=lambda: added.append(sync_all(store, tmp_path / "out"))) for _ in range(3)]
    for thread in threads:  # the tab's counts and the API may sync at the same moment: each round lands once
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(added) == 2, added
    entries = store.list(newest_first=False)
    assert [(e.kind, e.source, e.human, len(e.images)) for e in entries] == [("ranking", "rank-refine", True, 4), ("judgement", "rank-refine", False, 4)]
    first = store.images(entries[0].images)
    assert [first[i].path.endswith(f"candidate-{n}.png") for i, n in zip(entries[0].images, [2, 0, 1, 3])] == [True] * 4
    assert store.image(entries[0].images[0]).checkpoint == "tiny" and store.image(entries[0].images[0]).seed == 7
    assert sync_all(store, tmp_path / "out") == 0  # idempotent
    record_file = session / "rounds" / "0002" / "round.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**record, "order": None}))  # what Undo leaves
    assert sync_all(store, tmp_path / "out") == 0
    assert [e.kind for e in store.list()] == ["ranking"] and store.counts()["dpo_pairs"] == 6
