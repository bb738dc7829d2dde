"""``python -m sealgate`` runs the same command as the ``sealgate`` script."""

from sealgate.cli import main

main()
