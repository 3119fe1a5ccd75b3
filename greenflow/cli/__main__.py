"""``python -m greenflow.cli`` runs the ``greenflow`` command (through the launcher's fast ``run`` path)."""

from greenflow.cli.launcher import entry_point

entry_point()
