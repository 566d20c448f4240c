"""The Jinja2 environment over `pipeline/ops/report_templates/`, for the run report and the model card.

Called by `pipeline.ops.report` and `pipeline.ops.model_card`.
"""

from typing import Any


def template_environment():
    """Jinja2 over `report_templates/`, HTML-escaping every value not marked safe (not in Markdown)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.ops", "report_templates"),
        autoescape=jinja2.select_autoescape(["html", "html.j2"], default_for_string=False),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["num"] = number
    return environment


def number(value: Any, digits: int = 3) -> str:
    """A metric for display: fixed digits, "-" when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"
