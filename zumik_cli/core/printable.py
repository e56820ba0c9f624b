"""Names from the data made safe to show: the one function the terminal and the report pass every string through.

A tenant, session or model name is whatever a log said. Bidirectional overrides and isolates (U+202A-U+202E,
U+2066-U+2069) reorder the text after them, so that a name can read as another (the "Trojan Source" trick), and
control characters move the cursor, clear the line or ring the bell. Each such character is shown as its escape
(``\\u202e``), visible and harmless; newlines and tabs stay unless the name must stay on one line.
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL; bidi marks, embeddings, overrides and isolates; zero-width characters that hide
# inside a name; the line and paragraph separators
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")
_UNSAFE_ONE_LINE = re.compile(_UNSAFE.pattern[:-1] + "\t\n]")


def printable(text: object, *, one_line: bool = False) -> str:
    """``text`` with every character that could reorder, hide or control what is shown replaced by its escape."""
    value = "" if text is None else str(text)
    pattern = _UNSAFE_ONE_LINE if one_line else _UNSAFE
    return pattern.sub(_escaped, value) if pattern.search(value) else value


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\t": "\\t"}.get(char) or f"\\u{ord(char):04x}"
