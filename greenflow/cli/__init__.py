"""The ``greenflow`` command line."""
