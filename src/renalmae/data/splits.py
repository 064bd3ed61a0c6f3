"""Reading `splits.json`, the output of the `split` step.

    {"k_folds": 5, "seed": 0, "origin": "drawn" | "given",
     "test": [id, ...], "external": [id, ...],
     "folds": [{"fold": 0, "val": [id, ...]}, ...],
     "groups": {id: group, ...},
     "data": {"duplicates_dropped_at_ingest": n, "copies_of_development_images": {...}, ...}}

Fold `f` trains on every development id (neither test nor external) that is not in `folds[f].val`.
External ids (another site, device or period; empty when there are none) are only ever predicted.
`groups` is the cluster of every image (its patient or series, joined with the groups it shares
near-duplicates with): the unit that every split keeps whole and every statistic resamples together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from renalmae.errors import DataError, ParamsError
from renalmae.io import read_json


@dataclass(frozen=True)
class Splits:
    k_folds: int
    test_ids: list[str]
    val_ids_by_fold: list[list[str]]
    external_ids: list[str] = field(default_factory=list)
    data: dict | None = None
    """What the split saw of the data (duplicates ingest dropped, copies across the split line); None
    for a splits.json written before it was recorded."""
    groups: dict[str, str] | None = None
    """Image id -> its cluster (patient / series); None for a splits.json written before it was recorded."""

    @property
    def development_ids(self) -> list[str]:
        """Every labelled id outside the holdout test and the external set, in fold order."""
        return [image_id for fold_ids in self.val_ids_by_fold for image_id in fold_ids]

    @property
    def evaluation_splits(self) -> dict[str, list[str]]:
        """The sets every trained model predicts besides its validation fold: test, and external if any."""
        return {"test": self.test_ids} | ({"external": self.external_ids} if self.external_ids else {})

    def fold(self, fold: int) -> tuple[list[str], list[str]]:
        """(train ids, validation ids) of fold `fold` (0-based)."""
        if not 0 <= fold < self.k_folds:
            raise ParamsError(
                f"fold {fold} is outside 0..{self.k_folds - 1} (splits have k={self.k_folds} folds)"
            )
        val_ids = self.val_ids_by_fold[fold]
        train_ids = [i for f, ids in enumerate(self.val_ids_by_fold) if f != fold for i in ids]
        return train_ids, list(val_ids)


def load_splits(path: str | os.PathLike) -> Splits:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing; run `renalmae split` first")
    raw = read_json(path)
    folds = sorted(raw["folds"], key=lambda entry: entry["fold"])
    return Splits(
        k_folds=int(raw["k_folds"]),
        test_ids=list(raw["test"]),
        val_ids_by_fold=[list(entry["val"]) for entry in folds],
        external_ids=list(raw.get("external", [])),
        data=raw.get("data"),
        groups=raw.get("groups"),
    )
