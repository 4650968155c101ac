"""Issue 14: scorer-assisted and auto rounds, the variety choice and step schedule, per-user sessions."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

API = "/alignment/v1/refine"
SMALL = {"steps": 2, "width": 64, "height": 64, "m": 4}


# ----- the step schedule (no model) ----------------------------------------------------------


def _line_round_keeping_current(opt):
    """Rank round (any order), then a line round where the current point is put first (no step helped)."""
    opt.ask()
    opt.tell([0])
    opt.ask()
    opt.tell([opt.roles.index("current")])


def test_step_shrinks_while_rounds_do_not_improve_and_survives_state():
    from lib_alignment.zo import MIN_STEP_SCALE, RankSGD

    opt = RankSGD(torch.randn(4, 8, 8), m=4, lr=2.0, shrink=0.5, seed=1)
    assert opt.step == 2.0
    _line_round_keeping_current(opt)
    assert opt.step == pytest.approx(1.0)
    # the next line round tries steps along the shrunk scale
    state = opt.state_dict()
    again = RankSGD(torch.randn(4, 8, 8), m=4, lr=2.0, shrink=0.5, seed=9)
    again.load_state_dict(state)
    assert again.step == pytest.approx(1.0) and again.shrink == 0.5
    for _ in range(6):
        _line_round_keeping_current(opt)
    assert opt.step == pytest.approx(2.0 * MIN_STEP_SCALE)  # bounded below
    constant = RankSGD(torch.randn(4, 8, 8), m=4, lr=2.0, shrink=1.0, seed=1)
    _line_round_keeping_current(constant)
    assert constant.step == 2.0
    old = {key: value for key, value in state.items() if key not in ("shrink", "step_scale")}  # saved before the schedule
    again.load_state_dict(old)
    assert again.step == 2.0 and again.shrink == 1.0
    with pytest.raises(ValueError, match="shrink"):
        RankSGD(torch.randn(2), shrink=0)


# ----- the engine: scorer order, auto rounds, sources, export ---------------------------------


@pytest.fixture
def backend(tiny_random_pipe):
    from lib_alignment.generation import DiffusersBackend

    return DiffusersBackend(tiny_random_pipe, model_name="tiny-random")


def _settings():
    from lib_alignment.generation import GenerationSettings

    return GenerationSettings(prompt="a red circle", steps=2, cfg_scale=5.0, width=64, height=64, sampler="DDIM")


def test_scorer_pre_ranks_rounds_auto_rounds_are_marked_and_export_says_who_ranked(backend, tmp_path):
    from lib_alignment.oracles import make_oracle, rank_images
    from lib_alignment.refine import RefineSession, export_preferences

    scorer = make_oracle("brightness")
    session = RefineSession.create(tmp_path / "s", backend, _settings(), 3, m=4, scorer="brightness", owner="alice")
    session.scorer = scorer
    first = session.start()
    assert first.scorer_order == rank_images(scorer, first.images, "a red circle")
    human = list(reversed(first.scorer_order))  # the user corrects the scorer
    session.rank(human)
    last = session.auto(2)
    log = session.round_log()
    assert [entry["source"] for entry in log] == ["human", "scorer", "scorer", None]
    assert log[0]["scorer_order"] == first.scorer_order and log[0]["order"] == human
    assert all(entry["order"] == entry["scorer_order"] for entry in log[1:3])  # auto rounds take the scorer's order
    assert last.id == log[-1]["round"] and last.scorer_order is not None
    # reopened: the pending round keeps its scorer order, the owner stays
    again = RefineSession.load(tmp_path / "s", backend)
    assert again.current_round.scorer_order == last.scorer_order and again.owner == "alice"
    assert again.params.scorer == "brightness" and again.params.shrink < 1
    out = export_preferences([again], tmp_path / "prefs")
    with open(out.pairs_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    per_round = 4 * 3 // 2  # a full ranking of 4 implies 6 pairs
    assert [row["human"] for row in rows] == ["1"] * per_round + ["0"] * 2 * per_round
    with open(out.kto_csv, newline="", encoding="utf-8") as handle:
        assert {row["human"] for row in csv.DictReader(handle)} == {"0", "1"}
    with pytest.raises(ValueError, match="scorer"):
        RefineSession.create(tmp_path / "t", backend, _settings(), 3, m=4).auto(1)


def test_old_sessions_keep_a_constant_step_and_belong_to_everyone(backend, tmp_path):
    from lib_alignment.refine import RefineSession

    session = RefineSession.create(tmp_path / "old", backend, _settings(), 5, m=4)
    session.start()
    path = tmp_path / "old" / "session.json"
    data = json.loads(path.read_text())
    for key in ("shrink", "auto_rounds", "scorer"):
        del data["params"][key]
    del data["owner"]
    path.write_text(json.dumps(data))
    old = RefineSession.load(tmp_path / "old", backend)
    assert old.params.shrink == 1.0 and old.owner is None and old.params.scorer is None


# ----- HTTP API: scorer, auto rounds, variety, and users under --api-auth ----------------------


@pytest.fixture
def webui_client(webui_app, fake_webui):
    """The extension in the fake A1111 with two API users."""
    from fastapi.testclient import TestClient

    fake_webui.shared.cmd_opts.api_auth = "alice:secret,bob:other"
    return TestClient(webui_app())


ALICE, BOB = ("alice", "secret"), ("bob", "other")


def test_api_sessions_belong_to_their_user(webui_client, fake_webui):
    client = webui_client
    body = {"prompt": "p", "seed": 2, "sampler_name": "Euler", "steps": 2, "m": 3}
    started = client.post(API, json=body, auth=ALICE)
    assert started.status_code == 200, started.text
    sid = started.json()["id"]
    for call in (
        lambda auth: client.get(f"{API}/{sid}", auth=auth),
        lambda auth: client.post(f"{API}/{sid}/rank", json={"order": [0]}, auth=auth),
        lambda auth: client.post(f"{API}/{sid}/params", json={"m": 4}, auth=auth),
        lambda auth: client.get(f"{API}/{sid}/rounds", auth=auth),
    ):
        assert call(BOB).status_code == 404
    assert [s["id"] for s in client.get(API, auth=BOB).json()["sessions"]] == []
    listed = client.get(API, auth=ALICE).json()["sessions"]
    assert [s["id"] for s in listed] == [sid] and listed[0]["owner"] == "alice"
    assert client.post(f"{API}/{sid}/rank", json={"order": [0]}, auth=ALICE).json()["round"] == 2
    # a session saved without an owner (before ownership existed) is everybody's
    path = Path(fake_webui.paths.data_path) / "outputs" / "alignment" / "refine" / sid / "session.json"
    data = json.loads(path.read_text())
    del data["owner"]
    path.write_text(json.dumps(data))
    from lib_alignment.ui import webui_tabs
    from lib_alignment.ui.refine_sessions import for_context

    for_context(webui_tabs.webui_context())._open.clear()  # as after a restart
    assert client.get(f"{API}/{sid}", auth=BOB).status_code == 200


def test_api_scorer_assisted_and_auto_rounds(webui_client):
    client = webui_client
    body = {"prompt": "p", "seed": 3, "sampler_name": "Euler", "steps": 2, "m": 3}
    assert client.post(API, json={**body, "scorer": "nonsense"}, auth=ALICE).status_code == 422
    refused = client.post(API, json={**body, "auto_rounds": 2}, auth=ALICE)
    assert refused.status_code == 422 and "auto_rounds" in refused.json()["detail"]
    clash = client.post(API, json={**body, "variety": "bold", "mu": 0.01}, auth=ALICE)
    assert clash.status_code == 422 and "variety" in clash.json()["detail"]
    started = client.post(API, json={**body, "scorer": "brightness", "auto_rounds": 1, "variety": "bold"}, auth=ALICE)
    assert started.status_code == 200, started.text
    first = started.json()
    sid = first["id"]
    assert sorted(first["scorer_order"]) == [0, 1, 2]
    from lib_alignment.zo import VARIETY

    assert client.get(f"{API}/{sid}?images=false", auth=ALICE).json()["params"]["mu"] == VARIETY["bold"]
    corrected = list(reversed(first["scorer_order"]))
    nxt = client.post(f"{API}/{sid}/rank", json={"order": corrected, "round": first["round"]}, auth=ALICE).json()
    assert nxt["round"] == 3  # the person's round, then one auto round
    log = client.get(f"{API}/{sid}/rounds", auth=ALICE).json()["rounds"]
    assert [(e["source"], e["order"] == e["scorer_order"]) for e in log[:2]] == [("human", False), ("scorer", True)]
    assert log[0]["order"] == corrected and log[0]["scorer_order"] == first["scorer_order"]
    more = client.post(f"{API}/{sid}/auto", json={"rounds": 2}, auth=ALICE).json()
    assert more["round"] == 5
    off = client.post(f"{API}/{sid}/params", json={"scorer": "none", "auto_rounds": 0}, auth=ALICE).json()
    assert off["params"]["scorer"] is None and off["params"]["auto_rounds"] == 0
    plain = client.post(f"{API}/{sid}/rank", json={"order": [0]}, auth=ALICE).json()
    assert plain["round"] == 6 and plain["scorer_order"] is None  # no scorer: nothing pre-ranked
    assert client.post(f"{API}/{sid}/auto", json={"rounds": 1}, auth=ALICE).status_code == 422


# ----- the tab: one user's sessions under --gradio-auth -----------------------------------------


def test_tab_shows_and_ranks_only_the_users_sessions(tmp_path):
    from ui_handlers import build_app, handler

    demo = build_app(tmp_path)
    alice, bob = SimpleNamespace(username="alice"), SimpleNamespace(username="bob")

    def run(name, request, **values):
        entry = handler(demo, "rank_refine_tab", name)
        args = [values.get(getattr(c, "elem_id", None), getattr(c, "value", None)) for c in entry.inputs]
        import inspect

        extra = {"progress": lambda *a, **k: None} if "progress" in inspect.signature(entry.fn).parameters else {}
        return entry.fn(*args, request=request, **extra)

    ids = "alignment_rank_refine"
    small = {f"{ids}_steps": 2, f"{ids}_width": 64, f"{ids}_height": 64, f"{ids}_m": 3}
    html, sid, _, choices = run("on_start", alice, **small, **{f"{ids}_scorer": "colourfulness", f"{ids}_auto_rounds": 1})
    assert sid and 'data-suggested="' in html and "pre-ranked by colourfulness" in html
    assert any(label.startswith(sid) for label in choices["choices"])
    html, kept, _ = run("on_next", bob, **{f"{ids}_session": sid, f"{ids}_order": "[0]"})
    assert f'data-session="{sid}"' not in html and "no refine session" in html
    html, kept, _ = run("on_next", alice, **{f"{ids}_session": sid, f"{ids}_order": "[0]"})
    assert f'data-session="{sid}"' in html and "scorer ranked 1 more round" in html
    resumed = run("on_resume", bob, **{f"{ids}_session": sid})
    assert resumed[1] == "" and resumed[-1]["choices"] == []
    resumed = run("on_resume", alice, **{f"{ids}_session": sid})
    assert resumed[1] == sid and "colourfulness" in resumed
