"""Deferrable sensors: hold downstream work until a green window, or while a carbon budget is spent."""
