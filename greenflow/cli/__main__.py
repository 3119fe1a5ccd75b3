"""``python -m greenflow.cli`` runs the ``greenflow`` command."""

from greenflow.cli.main import app

app()
