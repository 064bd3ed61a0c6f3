"""Site rules: a binary decision rule chosen for one site on a labelled sample, recorded on the version.

`renalmae site-rule` predicts a site's labelled sample with a registered version, chooses the threshold
there (`renalmae.evaluate.site_rule`) and records it on that version as tags `renalmae.site.<site>.*`:
the threshold, how it was chosen, the sample's size (images, anomalous, normal, patients / series) and
the sensitivity and specificity it reaches there with their intervals, who recorded it and when.
`renalmae predict --site <site>` then labels images at that site's rule and says so in `decision_rule`;
without `--site` the version's own rule (compare's) applies.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from renalmae.errors import ModelError, ParamsError
from renalmae.operating_point import DecisionRule
from renalmae.registry.audit import utc_now
from renalmae.registry.connection import actor, service_errors

SITE_TAG = "renalmae.site."
SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NUMBERS = ("threshold", "n", "anomalous", "normal", "clusters")
INTERVALS = ("sensitivity", "specificity")


def check_site(site: str) -> str:
    """`site` if it can name tags (letters, digits, `-`, `_`, `.`; 64 at most); ParamsError otherwise."""
    if not SITE_NAME.match(site):
        raise ParamsError(
            f"site name {site!r}: use letters, digits, '-', '_' or '.' (at most 64, starting with a letter "
            "or digit), e.g. --site clinic-b"
        )
    return site


def site_tags(rule: dict[str, Any]) -> dict[str, str]:
    """The version tags that record one site's rule (`renalmae.evaluate.site_rule`'s dict)."""
    prefix = f"{SITE_TAG}{check_site(rule['site'])}."
    tags = {f"{prefix}{key}": str(rule[key]) for key in NUMBERS}
    for name in INTERVALS:
        interval = rule[name]
        tags |= {f"{prefix}{name}": str(interval["estimate"]), f"{prefix}{name}_low": str(interval["low"]),
                 f"{prefix}{name}_high": str(interval["high"])}  # fmt: skip
    return tags | {
        f"{prefix}method": rule["method"],
        f"{prefix}chosen_on": rule["chosen_on"],
        f"{prefix}recorded_by": actor(),
        f"{prefix}recorded_at": utc_now(),
    }


def record_site_rule(client: Any, uri: str, name: str, version: str, rule: dict[str, Any]) -> None:
    """Set the site rule's tags on model version `name` v`version`."""
    with service_errors(uri):
        for key, value in site_tags(rule).items():
            client.set_model_version_tag(name, str(version), key, value)


def recorded_sites(tags: dict[str, str]) -> list[str]:
    """The sites a version carries a rule for, sorted."""
    return sorted({key[len(SITE_TAG) :].rsplit(".", 1)[0] for key in tags if key.startswith(SITE_TAG)})


def site_decision_rule(tags: dict[str, str], site: str, model: str) -> DecisionRule:
    """The recorded rule of `site` on a version with `tags`; ModelError naming the recorded sites and the
    command that records one when there is none."""
    prefix = f"{SITE_TAG}{check_site(site)}."
    if f"{prefix}threshold" not in tags:
        known = ", ".join(recorded_sites(tags)) or "none"
        raise ModelError(
            f"{model} carries no rule for site {site} (sites with a rule: {known}); choose one on a labelled "
            f"sample of that site: `renalmae site-rule --model {model} --site {site} SAMPLE.csv`"
        )
    threshold = float(tags[f"{prefix}threshold"])
    sensitivity = ", ".join(
        f"{tags[f'{prefix}sensitivity{part}']}" for part in ("", "_low", "_high")
    )  # estimate, low, high
    chosen_on = f"site {site}: {tags[f'{prefix}chosen_on']} (sensitivity, low, high: {sensitivity})"
    return DecisionRule(threshold=float(np.float64(threshold)), chosen_on=chosen_on)


def site_rule_for(model_uri: str, tracking_uri: str, site: str) -> DecisionRule:
    """The rule `renalmae site-rule` recorded for `site` on the version `model_uri` names."""
    from renalmae.registry.connection import mlflow_client
    from renalmae.registry.serving import registered_version

    client = mlflow_client(tracking_uri, read_only=True)
    name, version = registered_version(client, tracking_uri, model_uri)
    with service_errors(tracking_uri):
        tags = client.get_model_version(name, version).tags
    return site_decision_rule(tags, site, f"models:/{name}/{version}")


def choose_site_rule(
    model_uri: str, tracking_uri: str, site: str, manifest, data, settings, max_pixels: int
) -> dict[str, Any]:
    """Predict a site's labelled sample (a manifest: image,label[,patient_id|series_id]) with the version
    `model_uri` names, choose its rule there and record it on that version; returns the rule's record.

    `data`: the params' data section (classes, negative class, group column); `settings`: the evaluate
    section (threshold method, target sensitivity, confidence, resamples, seed). Raises `DataError` for a
    bad sample, `ModelError` for a multiclass model (a site rule is a threshold on P(anomaly)).
    """
    from pathlib import Path

    from renalmae.data.sources import bad_files_message, list_manifest
    from renalmae.errors import DataError
    from renalmae.evaluate.site_rule import site_rule
    from renalmae.registry.connection import mlflow_client
    from renalmae.registry.serving import predict_files, registered_version

    check_site(site)
    listing = list_manifest(Path(manifest), list(data.classes), data.group_column)
    if listing.problems:
        raise DataError(bad_files_message(listing.problems))
    table = predict_files(model_uri, tracking_uri, [item.source for item in listing.items], max_pixels)
    columns = [column for column in table.columns if column.startswith("prob_")]
    if len(columns) != 2:
        raise ModelError(
            f"{model_uri} is a {len(columns)}-class model; a site rule is a threshold on P(anomaly) of a "
            "binary model: name a binary version (…-binary)"
        )
    anomalous = np.array([item.label != data.negative_class for item in listing.items], dtype=int)
    groups = np.array([item.group or item.source for item in listing.items])
    rule = site_rule(
        site, anomalous, table[columns[1]].to_numpy(), settings.threshold, settings.target_sensitivity,
        groups, settings.confidence, settings.bootstrap_resamples, settings.seed,
    )  # fmt: skip
    client = mlflow_client(tracking_uri)
    name, version = registered_version(client, tracking_uri, model_uri)
    record_site_rule(client, tracking_uri, name, version, rule)
    return rule | {"model": name, "version": version}
