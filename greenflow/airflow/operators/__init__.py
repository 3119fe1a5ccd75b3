"""Operators: run a callable or a command in its green window, and the carbon-aware governance gate."""
