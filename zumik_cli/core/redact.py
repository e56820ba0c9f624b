"""Redaction: the one function that removes credentials from text before it leaves the dataset.

Every boundary where logged text is shown or stored outside the prompt tables (quarantine excerpts and reasons,
report samples, terminal tables, ``--json`` examples, error messages) passes it through ``redact``.

What a credential looks like is not kept here by hand: the shapes are detect-secrets' regex detectors (AWS, Stripe,
GitHub, GitLab, Slack, private keys, basic-auth URLs, ...) and the secret-sounding field names are its keyword
detector's list, both maintained upstream. A few shapes that detect-secrets 1.5 does not know, or cuts short, are
added below, with the names of credentials that logs carry in headers (``authorization``, ``cookie``, ``*token``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

MARK = "[redacted]"
_NOT_CREDENTIALS = {"Public IP (ipv4)", "Private Key"}

# Shapes detect-secrets 1.5 lacks: GitHub fine-grained and Hugging Face tokens, Google OAuth tokens and API keys,
# provider API keys in ``sk-`` form, Stripe keys longer than its 24 characters, whole JWTs (its pattern stops before
# the signature), npm tokens outside ``.npmrc``, and credentials after an HTTP authorization scheme.
_EXTRA_SHAPES = [
    re.compile(r"\bgithub_pat_\w{20,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{30,}"),
    re.compile(r"\bya29\.[\w.-]{20,}"),
    re.compile(r"\b1//0[\w-]{30,}"),
    re.compile(r"\bAIza[\w-]{20,}"),
    re.compile(r"\b(?:sk|pk|rk)[-_](?=[\w-]*\d)[\w-]{16,}"),
    re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"),
    re.compile(r"\bxox[a-z]-[\w-]{10,}"),
    re.compile(r"\bnpm_[A-Za-z0-9]{36}"),
    re.compile(r"\b[Bb]earer\s+[\w.~+/=-]+|\bBasic\s+[\w+/=]{8,}|\b[Tt]oken\s+[\w.~+/=-]{16,}"),
]


@functools.cache
def _detectors() -> tuple[list[re.Pattern[str]], re.Pattern[str]]:
    """detect-secrets' shapes (a private key extended to its end) and field names, loaded on first use: importing
    every detector takes a tenth of a second that ``zumik --help`` need not pay."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.keyword import DENYLIST
    from detect_secrets.plugins.private_key import PrivateKeyDetector

    private_key = re.compile(
        r"(?:-----)?(?:" + "|".join(p.pattern for p in PrivateKeyDetector.denylist) + r")"
        r".*?(?:-----END [A-Z0-9 ]*(?:PRIVATE KEY|KEY BLOCK)-----|\Z)",
        re.DOTALL,
    )
    shapes: list[re.Pattern[str]] = [private_key, *_EXTRA_SHAPES]
    detector: Any
    for detector in get_mapping_from_secret_type_to_class().values():
        # a public IP is no credential; the private key's header alone is replaced by the whole key above
        if issubclass(detector, RegexBasedDetector) and detector.secret_type not in _NOT_CREDENTIALS:
            shapes.extend(detector.denylist)
    return shapes, re.compile("|".join([*DENYLIST, *_HEADER_NAMES]))


# A field is a name, quoted or not (an escaped quote inside a JSON string too), then its value: a JSON or Python
# string (one a cut line ends inside too) or a bare word. The name decides whether the value is a secret; the value
# is looked at, not consumed, so that a field quoted inside another field's string is found too.
_FIELD = re.compile(
    r"""["']?\b([A-Za-z][\w.-]*)\\?["']?\s*(?:=>|:=|[:=])\s*"""
    r"""(?=(?:"((?:[^"\\]|\\.)*)"?|'((?:[^'\\]|\\.)*)'?|([^\s,;&}\]]+)))"""
)
# names detect-secrets' keyword list lacks (it reads code, not HTTP headers); a name is lower-cased, ``-`` as ``_``
_HEADER_NAMES = [r"token$", r"authori[sz]ation$", r"cookie$", r"apikey", r"credentials?$", r"passphrase"]


def redact(text: str, start: int = 0, end: int | None = None) -> str:
    """``text[start:end]`` with every credential that overlaps it replaced by ``[redacted]``.

    Credentials are found in the whole text, so a slice that cuts one in two still loses all of it: cut text
    after redacting, or pass the cut as ``start`` and ``end``."""
    end = len(text) if end is None else max(min(end, len(text)), start)
    out: list[str] = []
    at = start
    for s, e in _merged(_secret_spans(text)):
        if e <= at or s >= end:
            continue
        out.extend((text[at:s], MARK) if s > at else (MARK,))
        at = e
    if at < end:
        out.append(text[at:end])
    return "".join(out)


def _secret_spans(text: str) -> Iterator[tuple[int, int]]:
    shapes, secret_name = _detectors()
    for shape in shapes:
        for match in shape.finditer(text):
            # a group that starts inside the match is the secret; what comes before it is its context (a
            # variable name, ``user:`` of a URL). A group at the start is only a prefix of the secret.
            if shape.groups and match.start(1) > match.start():
                yield match.span(1)
            elif match.end() > match.start():
                yield match.span()
    for match in _FIELD.finditer(text):
        name = match.group(1).lower().replace("-", "_")
        if secret_name.search(name):
            value = next(g for g in (2, 3, 4) if match.group(g) is not None)
            if match.end(value) > match.start(value) and not text.startswith(MARK, match.start(value)):
                yield match.span(value)


def _merged(spans: Iterator[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    current: tuple[int, int] | None = None
    for s, e in sorted(spans):
        if current is not None and s <= current[1]:
            current = (current[0], max(current[1], e))
            continue
        if current is not None:
            yield current
        current = (s, e)
    if current is not None:
        yield current
