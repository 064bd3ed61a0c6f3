"""Grouped, stratified assignment of labelled images to an external set, a holdout test set and k folds.

How `split`, `fold` and groups combine (the README's data contract says the same):
1. External first. A row is external when its given `split` is `external` or its given `fold` is one of
   `split.external_folds` (e.g. the source folds of another site). External images are never trained
   on, selected on, thresholded on or pretrained on; they are only predicted and reported.
2. Holdout test. Of the other rows, a given `split` of `test` marks the internal holdout (every other
   row then says `train`); without a given split a holdout of about `split.test_fraction` is drawn.
3. Folds. The development rows (neither external nor test) take their given `fold` values, mapped in
   sorted order to 0..k-1, or are drawn into k folds.
A group is a patient / series joined with every group that shares a near-duplicate cluster with it
(table column `near_group`, renalmae.data.near_duplicates), so near-copies stay together too.
Draws use scikit-learn's `StratifiedGroupKFold` (shuffled, seeded), so every group (patient / series)
lands in exactly one part and each part keeps roughly the class mix of the whole. The final
assignment, drawn or given, is checked: a group in two parts (external, test or a fold), or a class
found in fewer development groups than folds, is refused. A part that still lacks a class (possible
with few groups) is reported as a warning and in `missing_classes`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from renalmae.data.near_duplicates import merge_groups
from renalmae.errors import DataError, ParamsError

TEST = -1  # the `part` of a holdout test row; development rows carry their fold index 0..k-1
EXTERNAL = -2  # the `part` of an external row (another site, device or period)
GIVEN_SPLITS = ("train", "test", "external")
_EXAMPLES = 5


@dataclass(frozen=True)
class SplitAssignment:
    """Which part each labelled image belongs to: `part[i]` is TEST or the validation fold of `ids[i]`."""

    ids: list[str]
    labels: list[str]
    groups: list[str]
    part: np.ndarray
    k_folds: int
    given_columns: tuple[str, ...]

    @property
    def origin(self) -> str:
        return "given" if self.given_columns else "drawn"

    def ids_in(self, part: int) -> list[str]:
        return [image_id for image_id, p in zip(self.ids, self.part, strict=True) if p == part]

    def class_counts(self, part: int, classes: Sequence[str]) -> dict[str, int]:
        labels = pd.Series(self.labels)[self.part == part]
        return {name: int((labels == name).sum()) for name in classes}

    def folds_missing_classes(self, classes: Sequence[str]) -> dict[str, list[str]]:
        """Validation folds (and the test set) with no image of some class, e.g. {"fold 3": ["mcdk"]}."""
        missing = {}
        parts = [EXTERNAL] if (self.part == EXTERNAL).any() else []
        for part in [*parts, TEST, *range(self.k_folds)]:
            absent = [name for name, count in self.class_counts(part, classes).items() if count == 0]
            if absent:
                missing[_part_name(part)] = absent
        return missing

    def to_json(self, seed: int, classes: Sequence[str]) -> dict[str, Any]:
        """The `splits.json` payload (see renalmae.data.splits) plus class counts per part for humans."""
        return {
            "k_folds": self.k_folds,
            "seed": seed,
            "origin": self.origin,
            "given_columns": list(self.given_columns),
            "test": self.ids_in(TEST),
            "external": self.ids_in(EXTERNAL),
            "folds": [{"fold": fold, "val": self.ids_in(fold)} for fold in range(self.k_folds)],
            "groups": dict(zip(self.ids, self.groups, strict=True)),
            "missing_classes": self.folds_missing_classes(classes),
            "counts": {
                "external": self.class_counts(EXTERNAL, classes),
                "test": self.class_counts(TEST, classes),
                "folds": [{"fold": f, "val": self.class_counts(f, classes)} for f in range(self.k_folds)],
            },
        }


def copies_of_development_images(labelled: pd.DataFrame, assignment: SplitAssignment) -> dict[str, int]:
    """How many holdout test and external images are copies of development (training) images.

    A copy has the same decoded pixels (sha256) or, where ingest clustered near-duplicates (a `near_group`
    column), the same near-duplicate cluster. Grouping keeps both at 0 once validation passed; the count
    is the check a reader sees, measured rather than assumed.
    """
    table = labelled.reset_index(drop=True)
    development = assignment.part >= 0
    keys = [column for column in ("sha256", "near_group") if column in table.columns]
    counts = {}
    for name, part in (("test", TEST), ("external", EXTERNAL)):
        held_out = assignment.part == part
        is_copy = np.zeros(len(table), dtype=bool)
        for key in keys:
            seen = set(table.loc[development, key].dropna())
            is_copy |= table[key].isin(seen).to_numpy() & table[key].notna().to_numpy()
        counts[name] = int((is_copy & held_out).sum())
    return counts


def assign_splits(
    labelled: pd.DataFrame,
    classes: Sequence[str],
    k_folds: int,
    test_fraction: float,
    seed: int,
    use_given: bool,
    external_folds: Sequence[int] = (),
) -> SplitAssignment:
    """Assign every labelled row (columns id, label, group, fold, split) to external, holdout test or a fold.

    `external_folds`: given `fold` values whose rows are external. Raises DataError (leakage, classes
    too small, inconsistent given columns) or ParamsError (given folds that do not match k or
    `external_folds`), naming the rows or the key.
    """
    if labelled.empty:
        raise DataError(
            "there are no labelled images to split; check `data.source` and run `renalmae ingest`"
        )
    table = labelled.reset_index(drop=True)
    labels = table["label"].astype(str).to_numpy()
    groups = table["group"].where(table["group"].notna(), table["id"]).astype(str).to_numpy()
    groups = merge_groups(groups, table["near_group"].to_numpy() if "near_group" in table else None)
    given_split = _given(table, "split") if use_given else None
    given_fold = _given(table, "fold") if use_given else None
    split_values = _check_split_values(given_split)
    is_external = _external_rows(table, split_values, given_fold, external_folds)
    if given_fold is not None:
        # checked before the holdout draw too: a drawn test set could otherwise hide the leak by chance
        with_fold = given_fold.notna().to_numpy()
        given_names = np.asarray([f"given fold {value}" for value in given_fold[with_fold]])
        check_no_group_leakage(groups[with_fold], given_names, ("fold",))
    is_test, internal = np.zeros(len(table), dtype=bool), ~is_external
    internal_split = None if split_values is None else split_values[internal]
    if internal_split is not None and internal_split.notna().any():
        is_test[internal] = _check_given_split(table[internal], internal_split)
    else:
        is_test[internal] = draw_holdout(labels[internal], groups[internal], test_fraction, seed)
    development = ~is_test & ~is_external
    check_class_sizes(labels[development], groups[development], classes, k_folds)

    part = np.full(len(table), TEST, dtype=int)
    part[is_external] = EXTERNAL
    if given_fold is not None:
        part[development] = _map_given_folds(table, given_fold, development, k_folds)
    else:
        part[development] = draw_folds(labels[development], groups[development], k_folds, seed)
    given_columns = tuple(
        name for name, given in (("split", given_split), ("fold", given_fold)) if given is not None
    )
    check_no_group_leakage(groups, np.asarray([_part_name(p) for p in part]), given_columns)
    empty = [fold for fold in range(k_folds) if not (part == fold).any()]
    if empty:
        raise DataError(
            f"folds {empty} received no images ({len(set(groups[development]))} groups for "
            f"k={k_folds} folds); lower split.folds or add data"
        )
    assignment = SplitAssignment(
        ids=table["id"].astype(str).tolist(),
        labels=labels.tolist(),
        groups=groups.tolist(),
        part=part,
        k_folds=k_folds,
        given_columns=given_columns,
    )
    missing = assignment.folds_missing_classes(classes)
    if missing:
        warnings.warn(
            f"parts without some class (their per-class metrics are undefined): {missing}",
            UserWarning,
            stacklevel=2,
        )
    return assignment


def draw_holdout(labels: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a grouped, stratified holdout of about `test_fraction` of the rows."""
    n_splits = max(2, round(1.0 / test_fraction))
    _check_enough_groups(groups, n_splits, f"a holdout test of {test_fraction:.0%} (split.test_fraction)")
    _, test_rows = next(_grouped_stratified_folds(labels, groups, n_splits, seed))
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_rows] = True
    return is_test


def selection_split(
    labels: np.ndarray,
    groups: np.ndarray,
    fraction: float,
    seed: int,
    min_groups_per_class: int = 0,
    min_images_per_class: int = 0,
) -> np.ndarray:
    """Boolean mask of the inner selection split of a fold's training images (epoch selection and early
    stopping look only at it, never at the validation fold): about `fraction` of the groups of each class.

    Stratified over groups, not images: each group (patient / series) counts once under its most common
    label, and scikit-learn's `StratifiedKFold` (shuffled, seeded) deals them into round(1 / fraction)
    folds; the first fold holding every class is the selection split. Stratifying images instead lets one
    long clip stand for a whole class (on the kidney frames: one hydronephrosis series of 149 frames
    against 39 normal ones, an AUC that measured one patient). Raises DataError when there are fewer
    groups than folds.

    The floor: a class with fewer than `min_groups_per_class` groups or `min_images_per_class` images in
    the split takes more of its groups (seeded order) until it has them, but never more than half of the
    class's groups, so training keeps at least as many as selection. Whether the floor was reached is the
    caller's to check (`renalmae.train.selection`): with few groups it cannot be.
    """
    n_splits = max(2, round(1.0 / fraction))
    frame = pd.DataFrame({"label": np.asarray(labels), "group": np.asarray(groups)})
    group_label = frame.groupby("group", sort=True)["label"].agg(
        lambda values: values.value_counts().index[0]
    )
    n_groups = len(group_label)
    if n_groups < n_splits:
        raise DataError(
            f"a fold's training images hold only {n_groups} groups (patients / series), too few to hold out "
            f"{fraction:.0%} of them to pick the epoch (train.selection_fraction needs at least {n_splits} "
            "groups); add data, use fewer folds, or set train.selection_fraction: 0 to pick the epoch on the "
            "validation fold"
        )
    # scikit-learn deals into at most as many folds as the largest class has groups: with fewer, a larger
    # share than `fraction` is held out (run.json's epoch_selection gives the image count)
    n_splits = max(2, min(n_splits, int(group_label.value_counts().max())))
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # a class with fewer groups than folds is absent from some folds: the first fold holding it is taken
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        held_groups = [
            set(group_label.index[rows])
            for _, rows in splitter.split(np.zeros(len(group_label)), group_label.to_numpy())
        ]
    every_class = set(frame["label"])
    chosen = next(
        (held for held in held_groups if set(frame.loc[frame["group"].isin(held), "label"]) == every_class),
        held_groups[0],
    )
    chosen = _raise_to_floor(
        frame, group_label, set(chosen), min_groups_per_class, min_images_per_class, seed
    )
    return frame["group"].isin(chosen).to_numpy()


def _raise_to_floor(
    frame: pd.DataFrame, group_label: pd.Series, chosen: set, min_groups: int, min_images: int, seed: int
) -> set:
    """`chosen` with more groups of each class below the floor, at most half of that class's groups."""
    order = np.random.default_rng(seed).permutation(len(group_label))
    shuffled = group_label.iloc[order]
    for label in sorted(set(frame["label"])):
        own_groups = list(shuffled.index[shuffled.to_numpy() == label])
        cap = len(own_groups) // 2
        for group in own_groups:
            held = frame[frame["group"].isin(chosen) & (frame["label"] == label)]
            own_held = sum(held_group in chosen for held_group in own_groups)
            if (held["group"].nunique() >= min_groups and len(held) >= min_images) or own_held >= cap:
                break
            chosen.add(group)
    return chosen


def draw_folds(labels: np.ndarray, groups: np.ndarray, k_folds: int, seed: int) -> np.ndarray:
    """Validation fold (0..k-1) of each row: grouped and stratified."""
    _check_enough_groups(groups, k_folds, f"k={k_folds} folds (split.folds)")
    fold = np.empty(len(labels), dtype=int)
    for index, (_, val_rows) in enumerate(_grouped_stratified_folds(labels, groups, k_folds, seed)):
        fold[val_rows] = index
    return fold


def check_class_sizes(
    development_labels: np.ndarray, development_groups: np.ndarray, classes: Sequence[str], k_folds: int
) -> None:
    """Refuse a class found in fewer development (non-test) groups than folds: some fold would lack it.

    Groups, not images, are counted: a group never splits, so ten images of two patients fill two folds.
    """
    present = list(dict.fromkeys([*classes, *sorted(set(development_labels))]))
    frame = pd.DataFrame({"label": development_labels, "group": development_groups})
    groups_per_class = frame.groupby("label")["group"].nunique()
    counts = {name: int(groups_per_class.get(name, 0)) for name in present}
    too_small = {name: count for name, count in counts.items() if count < k_folds}
    if too_small:
        raise DataError(
            f"class(es) {too_small} (number of groups) have fewer images outside the holdout test than "
            f"k={k_folds} folds (counted in patients / series, since a group never splits); add images of "
            "that class, lower split.folds, or lower split.test_fraction"
        )


def check_no_group_leakage(groups: np.ndarray, parts: np.ndarray, given_columns: Sequence[str] = ()) -> None:
    """Refuse an assignment in which a group has images in two parts (e.g. two folds, or train and test)."""
    frame = pd.DataFrame({"group": groups, "part": parts})
    parts_per_group = frame.groupby("group", sort=True)["part"].unique()
    leaking = parts_per_group[parts_per_group.map(len) > 1]
    if leaking.empty:
        return
    examples = "; ".join(
        f"group '{group}' in {', '.join(sorted(parts))}" for group, parts in leaking.head(_EXAMPLES).items()
    )
    fix = (
        f"fix the input's {'/'.join(given_columns)} column(s) so each group sits in one part, "
        "or set split.use_given: false to draw a grouped split (groups joined by near-duplicates "
        "count as one: see data.near_duplicate_bits)"
        if given_columns
        else "this is a bug in the split: please report it"
    )
    raise DataError(f"{len(leaking)} group(s) cross folds or the train/test line ({examples}); {fix}")


def _part_name(part: int) -> str:
    return {TEST: "test", EXTERNAL: "external"}.get(part, f"fold {part}")


def _grouped_stratified_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int):
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # small classes are reported by check_class_sizes with a message that says what to do
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        yield from splitter.split(np.zeros(len(labels)), labels, groups)


def _check_enough_groups(groups: np.ndarray, n_splits: int, purpose: str) -> None:
    n_groups = len(set(groups))
    if n_groups < n_splits:
        raise DataError(
            f"only {n_groups} groups (patients / series) for {purpose}, which needs at least {n_splits}; "
            "add data, lower split.folds, or raise split.test_fraction"
        )


def _given(table: pd.DataFrame, column: str) -> pd.Series | None:
    """The given values of `column`, or None when the input brings none."""
    if column not in table.columns or table[column].isna().all():
        return None
    return table[column]


def _check_split_values(given_split: pd.Series | None) -> pd.Series | None:
    """The given `split` values, lower-cased; refuses a value outside GIVEN_SPLITS."""
    if given_split is None:
        return None
    values = given_split.astype("string").str.strip().str.lower()
    bad = sorted(set(values.dropna()) - set(GIVEN_SPLITS))
    if bad:
        raise DataError(f"unknown `split` value(s) {bad}; allowed: {', '.join(GIVEN_SPLITS)}")
    return values


def _external_rows(
    table: pd.DataFrame,
    split_values: pd.Series | None,
    given_fold: pd.Series | None,
    external_folds: Sequence[int],
) -> np.ndarray:
    """Rows given `split = external` or whose given fold is in `external_folds`."""
    is_external = np.zeros(len(table), dtype=bool)
    if split_values is not None:
        is_external |= (split_values == "external").fillna(False).to_numpy(dtype=bool)
    if external_folds:
        if given_fold is None:
            raise ParamsError(
                f"split.external_folds is {list(external_folds)} but the input gives no `fold` column (or "
                "split.use_given is false); give folds in the manifest or set split.external_folds: []"
            )
        present = set(given_fold.dropna().astype(int).tolist())
        absent = sorted(set(external_folds) - present)
        if absent:
            raise ParamsError(
                f"split.external_folds names folds {absent} that the input does not give (its folds: "
                f"{sorted(present)}); fix split.external_folds"
            )
        by_fold = given_fold.isin(list(external_folds)).fillna(False).to_numpy(dtype=bool)
        if split_values is not None:
            contradicted = by_fold & split_values.isin(["train", "test"]).fillna(False).to_numpy(dtype=bool)
            if contradicted.any():
                examples = table.loc[contradicted, "id"].head(_EXAMPLES).tolist()
                raise DataError(
                    f"{int(contradicted.sum())} images (e.g. {examples}) are in split.external_folds but "
                    "their given `split` says train or test; make the split column say external, or change "
                    "split.external_folds"
                )
        is_external |= by_fold
    return is_external


def _check_given_split(table: pd.DataFrame, given_split: pd.Series) -> np.ndarray:
    """Is-test mask of the non-external rows from their given split (train / test, every row given)."""
    missing = table.loc[given_split.isna().to_numpy(), "id"].tolist()
    if missing:
        raise DataError(
            f"{len(missing)} labelled images (e.g. {missing[:_EXAMPLES]}) have no `split` while others do; "
            "give train/test for every non-external row or none, or set split.use_given: false"
        )
    return (given_split == "test").to_numpy()


def _map_given_folds(
    table: pd.DataFrame, given_fold: pd.Series, development: np.ndarray, k_folds: int
) -> np.ndarray:
    """Given fold values of the development rows, mapped in sorted order to 0..k-1."""
    folds = given_fold[development]
    missing = table.loc[development & given_fold.isna().to_numpy(), "id"].tolist()
    if missing:
        raise DataError(
            f"{len(missing)} development images (e.g. {missing[:_EXAMPLES]}) have no `fold` while others do; "
            "give a fold for every row or none, or set split.use_given: false"
        )
    distinct = sorted(folds.unique().tolist())
    if len(distinct) != k_folds:
        raise ParamsError(
            f"the input gives {len(distinct)} distinct folds {distinct} but split.folds asks for "
            f"k={k_folds}; set split.folds to {list(range(len(distinct)))} to use them, "
            "or set split.use_given: false"
        )
    index = {value: position for position, value in enumerate(distinct)}
    return folds.map(index).to_numpy(dtype=int)
