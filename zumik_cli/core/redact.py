"""Redaction: the one function that removes credentials from text before it leaves the dataset.

Every boundary where logged text is shown or stored outside the prompt tables (quarantine excerpts and reasons,
report samples, terminal tables, ``--json``) passes it through ``redact``.
"""

from __future__ import annotations

import re

# Quarantine excerpts and reasons are stored in the dataset, where secrets never go (DESIGN.md section 10). A field
# is a secret's name, quoted or not, then its value: a JSON or Python string (one a truncated line cut off too) or a
# bare word; tokens are secrets by their shape, wherever they are.
_SECRET_NAME = (
    r"(?:proxy-)?authorization|[\w-]*api[_-]?key|(?:set-)?cookie|[\w-]*(?:access|refresh|auth|id|session)[_-]?token|"
    r"[\w-]*secret|password"
)
_SECRET_FIELD = re.compile(
    rf"""(["']?\b(?:{_SECRET_NAME})["']?\s*[:=]\s*)(\[redacted\]|"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^\s,;}}\]]+)""",
    re.IGNORECASE,
)
_SECRET_TOKEN = re.compile(
    r"\b[Bb]earer\s+[\w.~+/=-]+|\bBasic\s+[\w+/=]{8,}|\b(?:sk|pk|rk)-[\w-]{12,}|\bAIza[\w-]{20,}|"
    r"\bgh[pousr]_\w{20,}|\bxox[abprs]-[\w-]{10,}|\bAKIA[0-9A-Z]{16}\b|\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}"
)


def redact(text: str) -> str:
    """The text with secret-shaped tokens and the values of secret-named fields replaced by ``[redacted]``."""
    return _SECRET_FIELD.sub(_redacted_field, _SECRET_TOKEN.sub("[redacted]", text))


def _redacted_field(match: re.Match[str]) -> str:
    quote = match.group(2)[:1] if match.group(2)[:1] in "\"'" else ""
    return f"{match.group(1)}{quote}[redacted]{quote}"
