"""Rank & Refine sessions: ZO-RankSGD over the initial noise, persisted, with preference-data export.

    from lib_alignment.refine import RefineSession
    session = RefineSession.create(folder, backend, settings, seed=1, m=6, mu=0.1, lr=2.0)
    round = session.start()                 # round.images: candidates in display order
    round = session.rank([3, 0])            # display indices, best first; returns the next round
    round.current_image                     # the image of the current latent
    session.undo(); session.reset(); session.set_params(m=4, mu=0.2, lr=1.0)
    session.export()                        # PNG with infotext + latent that regenerates it
    export_preferences([session], out_dir)  # pairs.csv (DPO) and kto.csv (KTO)
    RefineSession.load(folder, backend)     # resume after a restart

Several seeds side by side are several independent sessions
(`create_sessions(root, backend, settings, seeds)` → root/seed-<seed>/). See
README.md in this folder for the folder layout and the CSV formats.
"""

from __future__ import annotations

from .export import ExportResult, load_refined_latent, regenerate
from .preferences import KTO_COLUMNS, PAIRS_COLUMNS, PreferenceExport, export_preferences, kto_labels, ranked_records
from .session import RefineParams, RefineSession, Round, create_sessions, load_sessions
from .sheet import contact_sheet

__all__ = [
    "KTO_COLUMNS",
    "PAIRS_COLUMNS",
    "ExportResult",
    "PreferenceExport",
    "RefineParams",
    "RefineSession",
    "Round",
    "contact_sheet",
    "create_sessions",
    "export_preferences",
    "kto_labels",
    "load_refined_latent",
    "load_sessions",
    "ranked_records",
    "regenerate",
]
