"""The one project CLI, `tfxt` (`runners.cli.main:main`); one module per command group."""
