"""Preference data for Diffusion-DPO, Diffusion-KTO and MaPO: read, validate, preprocess.

Accepted inputs (details in README.md beside this file):

* Pairs, CSV or parquet (Pick-a-Pic, Rank & Refine): ``caption``, ``image_0`` /
  ``image_1`` (paths relative to the file's folder) or ``jpg_0`` / ``jpg_1``
  (image bytes), ``label_0`` and optionally ``label_1``: 1/0 prefers image_0,
  0/1 image_1, 0.5/0.5 is a tie (dropped, or weighted 0.5 in both orders).
* Labeled, CSV or parquet (Diffusion-KTO, Rank & Refine): ``caption``,
  ``file_name`` or ``file_path``, and ``label`` or ``split`` holding
  ``exclusive_win`` / ``exclusive_lose`` / ``intersections``.
* Folders: ``liked/`` + ``disliked/`` (labeled) or one subfolder per pair with
  ``chosen.*``, ``rejected.*`` and ``prompt.txt`` (see folder.py).

KTO also takes pairs: each distinct image becomes desirable if it only won,
undesirable if it only lost. Images are center-cropped and resized to the
training resolution. Nothing is returned until every row has been checked: one
DatasetValidationError lists every problem with file, row and field. Rows are
CSV line numbers (header = row 1, first data row = row 2), parquet record
numbers from 1; folder items have no row.

    data = load_preference_data("pairs.csv", method="dpo", resolution=512)
"""

from __future__ import annotations

from .dataset import LabeledDataset, LabeledRecord, PairDataset, PairRecord, PreferenceDataset
from .images import DEFAULT_MAX_PIXELS
from .loader import load_preference_data, validate_preference_data
from .report import DatasetValidationError, Problem, SkippedRow, ValidationReport

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DatasetValidationError",
    "LabeledDataset",
    "LabeledRecord",
    "PairDataset",
    "PairRecord",
    "PreferenceDataset",
    "Problem",
    "SkippedRow",
    "ValidationReport",
    "load_preference_data",
    "validate_preference_data",
]
