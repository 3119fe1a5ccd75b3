"""Text safe to print on a terminal: names from the ledger may hold escape sequences or other controls.

A task name such as ``"\\x1b]0;pwned\\x07"`` would retitle the terminal, clear it or hide the lines
around it if printed as is. Every human-readable output passes such text through :func:`printable`
(JSON output escapes control characters by itself).
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every non-printable character (controls, bidi overrides, lone surrogates) escaped."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
