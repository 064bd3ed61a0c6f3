"""What picked a fold model's epoch, how big it was, and whether the choice can carry weight (run.json).

Each fold model's epoch is chosen by the AUC of its selection split (`train.selection_fraction`: an inner
grouped split of its training folds; with 0, its validation fold). That choice is only as good as the
split: `selection_record` writes its size (images and groups, in all and per class) beside the floor
(`train.selection_min_groups_per_class`, `train.selection_min_images_per_class`), and `selection_flags`
names what a reader must know before trusting the fold model:

- `below_floor`: some class of the split has fewer groups or images than the floor (the split could not
  grow enough: the class has too few groups in the fold's training images);
- `first_epoch`: of several epochs trained, the first was kept (the selection AUC never improved on it,
  so the kept model is barely trained: the pretrained encoder after one epoch, or a CNN after one pass);
- `unranked`: the selection AUC was undefined at every epoch, so no epoch was chosen on data at all.

Torch-free, so the comparison can read the same definitions (`SELECTION_FLAGS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from renalmae.params import TrainParams

SELECTION_FLAGS = {
    "below_floor": "its epoch was chosen on a selection split below the floor "
    "(train.selection_min_groups_per_class / train.selection_min_images_per_class)",
    "first_epoch": "it was kept at its first epoch: the selection AUC never rose after it",
    "unranked": "no epoch could be ranked: the selection AUC was undefined at every epoch",
}
"""Flag code → the sentence a report gives (each fold model's run.json holds the codes)."""


def selection_record(
    split: str,
    classes: Sequence[str],
    targets: np.ndarray,
    groups: np.ndarray,
    train: TrainParams,
) -> dict:
    """run.json's `selection`: the split that picked the epoch, its size and the floor it was held to.

    `targets` are the split's class indices into `classes`, `groups` its images' group ids (both [N]).
    `below_floor` lists the classes short of the floor, whichever split chose (empty when it holds).
    """
    targets, groups = np.asarray(targets), np.asarray(groups)
    per_class = {
        name: {"images": int((targets == index).sum()), "groups": len(set(groups[targets == index]))}
        for index, name in enumerate(classes)
    }
    floor = {
        "groups_per_class": train.selection_min_groups_per_class,
        "images_per_class": train.selection_min_images_per_class,
    }
    short = [
        name
        for name, size in per_class.items()
        if size["groups"] < floor["groups_per_class"] or size["images"] < floor["images_per_class"]
    ]
    return {
        "split": split,
        "images": len(targets),
        "groups": len(set(groups)),
        "per_class": per_class,
        "floor": floor,
        "below_floor": short,
    }


def selection_flags(
    record: dict, best_epoch: int | None, best_value: float | None, epochs_run: int
) -> list[str]:
    """The `SELECTION_FLAGS` codes that apply to a fold model, in that order ([] when none does)."""
    flags = []
    if record["below_floor"]:
        flags.append("below_floor")
    unranked = best_value is None or not math.isfinite(best_value)
    if epochs_run > 1 and best_epoch == 0 and not unranked:
        flags.append("first_epoch")
    if unranked:
        flags.append("unranked")
    return flags
