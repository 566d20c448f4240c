"""The model card of a pushed model, in Markdown and HTML from the same data.

`pipeline.ops.report.write_report` calls `write_model_cards` for every run that
pushed a model: the card goes next to the report and into the pushed version's
`assets.extra/`, where it travels with the model (TF Serving ignores the files
there, and the Pusher's duplicate check hashes only saved_model.pb and
variables/, so a card never makes an identical model look new).
Google's model-card-toolkit is archived; the card is a Jinja2 template
(`report_templates/model_card.*.j2`) over `pipeline.ops.report_data.ReportData`.
"""

import posixpath
from typing import Any, Dict, List, Optional

from pipeline.ops.report_data import ReportData, per_class
from pipeline.ops.report_render import template_environment

CARD_FILES = {"md": "model_card.md", "html": "model_card.html"}


def card_values(data: ReportData) -> Dict[str, Any]:
    """What the card says: intended use, data, features, metrics, thresholds, limitations, lineage."""
    from models import features

    summary = data.summary
    return {
        "model": data.pipeline_name, "version": summary.pushed_version,
        "pushed_path": summary.pushed_path, "run": data.run, "intended_use": data.intended_use,
        "limitations": data.limitations, "label": features.LABEL_KEY, "classes": data.class_names,
        "numeric_features": list(features.NUMERIC_FEATURE_KEYS),
        "categorical_features": list(features.CATEGORICAL_FEATURE_KEYS),
        "examples": {split: _example_count(stats) for split, stats in data.statistics.items()},
        "metrics": dict(sorted(summary.metrics.items(), key=lambda kv: (kv[0] != "Overall", kv[0]))),
        "per_class": per_class(data), "thresholds": data.thresholds, "blessed": summary.blessed,
        "lineage": data.lineage, "edge_blessed": (data.edge_blessing or {}).get("blessed"),
    }


def _example_count(statistics: Dict[str, Any]) -> Optional[int]:
    first = next(iter(statistics.values()), None)
    return first.count + first.missing if first else None


def render_cards(data: ReportData) -> Dict[str, str]:
    """{"md": markdown text, "html": html text} of the card."""
    values = card_values(data)
    environment = template_environment()
    return {kind: environment.get_template(f"model_card.{kind}.j2").render(**values)
            for kind in CARD_FILES}


def write_model_cards(data: ReportData, report_directory: str) -> List[str]:
    """Writes the card next to the report and into the pushed version's assets.extra/.

    Does nothing for a run that pushed no model. A version that was already
    served (an unchanged re-run) keeps the card of the run that pushed it.
    Returns the paths written.
    """
    from tfx.dsl.io import fileio

    summary = data.summary
    if not summary.pushed_version:
        return []
    cards = render_cards(data)
    targets = [report_directory]
    assets = posixpath.join(summary.pushed_path, "assets.extra") if summary.pushed_path else None
    # A version folder deleted since its push gets no card: writing one would create a folder
    # holding only assets.extra/, which a server would take for a version and fail to load.
    if assets and not summary.pushed_missing and (
            not summary.already_serving or not fileio.exists(posixpath.join(assets, CARD_FILES["md"]))):
        targets.append(assets)
    written = []
    for directory in targets:
        fileio.makedirs(directory)
        for kind, name in CARD_FILES.items():
            path = posixpath.join(directory, name)
            with fileio.open(path, "w") as f:
                f.write(cards[kind])
            written.append(path)
    return written
