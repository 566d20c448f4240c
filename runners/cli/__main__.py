"""`python -m runners.cli` is `tfxt`."""

from runners.cli.main import main

main()
