"""Options and config parsing shared by every `tfxt` command group.

In its own module so that the groups in `runners.cli.edge`, `runners.cli.serving` and
`runners.cli.runs` can import it without importing `runners.cli.main`, which
imports them (that cycle breaks `python -m runners.cli.main`).
"""

from typing import Optional, Tuple

import click

from pipeline.config import ConfigError, load_config

CONFIG_OPTION = click.option(
    "--config", "config_path", envvar="TFXT_CONFIG", type=click.Path(dir_okay=False),
    help="YAML or JSON config file (default: $TFXT_CONFIG, else built-in defaults).")
SET_OPTION = click.option(
    "--set", "overrides", multiple=True, metavar="FIELD=VALUE",
    help="Override a config field, e.g. --set hyperparameters.train_steps=50 (repeatable).")


def parse_overrides(overrides: Tuple[str, ...]) -> dict:
    """`--set` FIELD=VALUE items as a nested dict (`a.b=1` -> {"a": {"b": "1"}})."""
    values: dict = {}
    for item in overrides:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not FIELD=VALUE", param_hint="--set")
        field, value = item.split("=", 1)
        target = values
        *parents, leaf = field.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return values


class ConfigUsageError(click.ClickException):
    """A bad config: one line (`Error: ...`) and exit code 2, like the runner files."""

    exit_code = 2


def config_from_options(config_path: Optional[str], overrides: Tuple[str, ...],
                        require_schema: bool = True, check_features: bool = False):
    """The validated config from a file plus FIELD=VALUE overrides (dots nest).

    With `check_features` (commands that build the pipeline), models/features.py is checked too.
    """
    try:
        config = load_config(config_path, parse_overrides(overrides), require_schema=require_schema)
        if check_features:
            from pipeline.training.feature_check import check_features as check

            check()
        return config
    except ConfigError as e:
        raise ConfigUsageError(str(e)) from None
