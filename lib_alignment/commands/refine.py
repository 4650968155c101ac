"""`refine`: unattended Rank & Refine, an automatic oracle ranking the candidates each round.

Writes into --out: session/ (the resumable refine session with every round's
images, latents and rankings), scores.csv and scores.json (every candidate's
score per round and the current image's), final.png (with infotext) and
final.safetensors (the latent that regenerates it), contact_sheet.png (one row
per round: current image, then the candidates; the oracle's pick framed green)
and preferences/ (pairs.csv and kto.csv for the DPO/KTO trainers).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..zo import DEFAULT_LR, DEFAULT_MU
from .generation_args import add_generation_arguments, load_backend, settings_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("refine", help="refine an image's initial noise with ZO-RankSGD and an automatic ranker")
    parser.add_argument("--prompt", required=True)
    parser.add_argument(
        "--oracle",
        required=True,
        help="jpeg_size[:smaller|larger], brightness[:darker], colourfulness, color:#rrggbb, clip:DIR, "
        "aesthetic:WEIGHTS,CLIP_DIR, or package.module:function",
    )
    parser.add_argument("--rounds", type=int, default=10, help="rankings to apply (default: 10)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue the session already in --out")
    parser.add_argument("--m", type=int, default=6, help="candidates per round (default: 6)")
    parser.add_argument("--k", type=int, default=None, help="use only the oracle's top k (default: the full ranking)")
    parser.add_argument("--mu", type=float, default=DEFAULT_MU, help=f"perturbation scale (default: {DEFAULT_MU})")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"line-search step (default: {DEFAULT_LR})")
    parser.add_argument("--no-line-search", action="store_true", help="plain ZO-RankSGD steps instead of rank/line rounds")
    parser.add_argument("--no-shell", action="store_true", help="do not keep latents at norm √d")
    parser.add_argument("--optimizer-seed", type=int, default=None, help="seeds perturbations and shuffles (default: --seed)")
    add_generation_arguments(parser)
    parser.add_argument("--max-batch", type=int, default=None, help="render at most this many images per batch")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..oracles import make_oracle, order_from_scores
    from ..refine import RefineParams, RefineSession, contact_sheet, export_preferences

    from . import checks

    if args.rounds < 0:
        raise ValueError(f"--rounds must be at least 0 (got {args.rounds})")
    checks.generation_options(args)
    check_refine_options(args)
    oracle = make_oracle(args.oracle)  # fail on a bad spec before loading the model
    from ..quiet import quiet_libraries

    quiet_libraries()
    backend = load_backend(args)
    out: Path = args.out
    folder = out / "session"
    if args.resume:
        session = RefineSession.load(folder, backend, max_batch=args.max_batch)
    else:
        settings = settings_from_args(args, backend)
        params = RefineParams(
            m=args.m,
            k=args.k,
            mu=args.mu,
            lr=args.lr,
            line_search=not args.no_line_search,
            project_to_shell=not args.no_shell,
            optimizer_seed=args.seed if args.optimizer_seed is None else args.optimizer_seed,
        )
        session = RefineSession.create(folder, backend, settings, args.seed, params, max_batch=args.max_batch)
    prompt = session.settings.prompt
    current = session.start()
    log: list[dict[str, Any]] = []
    sheet_rows, picks, labels = [], [], []
    bar = tqdm(range(args.rounds), desc="refine", unit="round")
    for _ in bar:
        scores = oracle.score(current.images, prompt)
        current_score = oracle.score([current.current_image], prompt)[0]
        order = order_from_scores(scores)
        log.append(
            {
                "round": current.id,
                "type": current.round_type,
                "roles": current.roles,
                "scores": scores,
                "order": order,
                "current_score": current_score,
            }
        )
        sheet_rows.append([current.current_image, *current.images])
        picks.append(1 + order[0])
        labels.append(f"{current.id}{current.round_type[0].upper()}")
        bar.set_postfix(current=f"{current_score:.4g}", best=f"{max(scores):.4g}")
        current = session.rank(order)
    final_score = oracle.score([current.current_image], prompt)[0]
    sheet_rows.append([current.current_image])
    picks.append(None)
    labels.append("end")

    out.mkdir(parents=True, exist_ok=True)
    exported = session.export(out, stem="final")
    rendered_score = oracle.score([exported.image], prompt)[0]
    _write_scores(out, log, final_score, rendered_score, oracle.name)
    from ..paths import atomic_save_image

    atomic_save_image(contact_sheet(sheet_rows, picks, labels), out / "contact_sheet.png")
    prefs = export_preferences([session], out / "preferences")
    first = log[0]["current_score"] if log else final_score
    print(f"{oracle.name}: current image {first:.6g} → {final_score:.6g} after {len(log)} rounds")
    print(f"wrote {exported.image_path}, {exported.latent_path}, {out / 'contact_sheet.png'}, {prefs.pairs_csv} ({prefs.pairs} pairs)")
    return 0


def check_refine_options(args: argparse.Namespace) -> None:
    """--out, --resume and the optimiser's numbers, before the model loads."""
    from ..ui.refine_sessions import LIMITS
    from .checks import output_folder

    out = output_folder(args.out, "--out")
    has_session = (out / "session" / "session.json").is_file()
    if args.resume and not has_session:
        raise ValueError(f"--resume: {out} holds no refine session to continue (no session/session.json)")
    if not args.resume and has_session:
        raise ValueError(f"--out {out} already holds a refine session; add --resume to continue it, or choose another folder")
    problems = []
    for flag, value, (low, high) in (("--m", args.m, LIMITS["m"]), ("--mu", args.mu, LIMITS["mu"]), ("--lr", args.lr, LIMITS["lr"])):
        if not low <= value <= high:
            problems.append(f"{flag} must be in {low:g}..{high:g} (got {value:g})")
    if args.k is not None and not 1 <= args.k <= args.m:
        problems.append(f"--k must be in 1..--m ({args.m}) (got {args.k})")
    if args.max_batch is not None and args.max_batch < 1:
        problems.append(f"--max-batch must be at least 1 (got {args.max_batch})")
    if problems:
        raise ValueError("; ".join(problems))


def _write_scores(out: Path, log: list[dict[str, Any]], final_score: float, rendered_score: float, oracle_name: str) -> None:
    import csv
    import io

    from ..paths import atomic_write_json, atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["round", "type", "index", "role", "score", "rank"])
    for entry in log:
        rank_of = {index: position for position, index in enumerate(entry["order"])}
        writer.writerow([entry["round"], entry["type"], "current", "current", repr(entry["current_score"]), ""])
        for index, (role, score) in enumerate(zip(entry["roles"], entry["scores"])):
            writer.writerow([entry["round"], entry["type"], index, role, repr(score), rank_of[index]])
    atomic_write_text(out / "scores.csv", buffer.getvalue())
    atomic_write_json(
        out / "scores.json",
        {
            "oracle": oracle_name,
            "rounds": log,
            "final_current_score": final_score,
            "final_image_score": rendered_score,
        },
    )
