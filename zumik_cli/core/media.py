"""Images and documents in prompts: one content-addressed artifact each, never their base64 text.

A provider counts an image by its pixel size, not by the length of its encoding, and caches it as the bytes it
is. So a content part that carries an image (Anthropic ``image``, OpenAI ``image_url``/``input_image``, Gemini
``inline_data``, GenAI ``blob``) becomes an artifact whose body is a small canonical description: the SHA-256 of
the decoded bytes, the format and size read from the encoded header (Pillow reads the header only) and the
requested ``detail``. Equal bytes give equal bodies wherever they recur; what an image costs in tokens is the
rules pack's business (``rules.media``). A document, or an image given by URL without its bytes, has no size to
read: its description says so, and whoever counts it marks the count estimated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from zumik_cli.core.memo import MISSING, Memo
from zumik_cli.core.model import Artifact, canonical_json

MEDIA_KINDS = ("image", "document")
_DATA_URL = re.compile(r"^data:([^;,]*)(;[^,]*)?,", re.IGNORECASE)
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?!s)")

# Screenshots are resent in every later call of a session: each distinct encoding is decoded and hashed once.
_DESCRIBED: Memo[Media] = Memo(4096, weight_limit=1 << 28)


@dataclass(frozen=True, slots=True)
class Media:
    """What a prompt's image or document is, without its bytes. ``width``/``height`` are 0 when unknown."""

    kind: str  # "image" or "document"
    media_type: str = ""
    sha256: str = ""
    width: int = 0
    height: int = 0
    format: str = ""  # the decoder's name for it: PNG, JPEG, GIF, WEBP
    detail: str = ""  # OpenAI's detail (low, high, auto); empty where the shape has none
    pages: int = 0  # a PDF's page count, read from its page objects; 0 when unknown
    bytes: int = 0
    url: str = ""  # the reference of a part given by URL or file id instead of bytes
    problem: str = ""  # why the size is unknown

    @property
    def sized(self) -> bool:
        return self.kind == "image" and self.width > 0 and self.height > 0

    def body(self) -> str:
        fields = {k: v for k, v in _fields(self).items() if v not in ("", 0)}
        return canonical_json(fields)

    def label(self, tokens: int) -> str:
        """How samples and ``--include-text`` show it: ``[image 1280x800 PNG, 1,229 tokens]``."""
        if self.sized:
            return f"[image {self.width}x{self.height} {self.format}, {tokens:,} tokens]"
        what = self.kind if self.kind == "document" else "image by reference"
        kind = self.media_type or "unknown type"
        pages = f", {self.pages} pages" if self.pages else ""
        return f"[{what} {kind}{pages}, size unknown, about {tokens:,} tokens]"


def _fields(media: Media) -> dict[str, Any]:
    return {name: getattr(media, name) for name in Media.__slots__}


def parse_body(body: str) -> Media:
    """The ``Media`` an artifact body describes (the inverse of ``Media.body``)."""
    raw = json.loads(body)
    return Media(**{k: raw[k] for k in Media.__slots__ if k in raw})  # type: ignore[arg-type]


def media_artifact(role: str, part: dict[str, Any], cache_control: str = "") -> Artifact | None:
    """The artifact of a content part that holds an image or a document, in any wire shape; None for others."""
    media = describe_part(part)
    if media is None:
        return None
    return Artifact(media.kind, role, media.body(), ref=media.sha256, cache_control=cache_control)


def describe_part(part: dict[str, Any]) -> Media | None:
    kind = part.get("type")
    if kind in ("image", "document"):  # Anthropic: {"source": {"type": "base64"|"url"|"file"|"text", ...}}
        source = part.get("source")
        source = source if isinstance(source, dict) else {}
        if source.get("type") == "base64":
            return from_base64(str(source.get("data", "")), str(source.get("media_type", "")), kind=kind)
        if source.get("type") == "text":
            return None  # a plain-text document is text
        reference = str(source.get("url") or source.get("file_id") or "")
        return by_reference(kind, reference, str(source.get("media_type", "")))
    if kind == "image_url":  # OpenAI Chat: {"image_url": {"url": "data:...;base64,..." | "https://...", "detail"}}
        image = part.get("image_url")
        image = image if isinstance(image, dict) else {"url": image}
        return from_url(str(image.get("url") or ""), str(image.get("detail") or ""))
    if kind in (
        "input_image",
        "computer_screenshot",
    ):  # OpenAI Responses: {"image_url": "data:..." | "https://...", "file_id", "detail"}
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        return from_url(str(url or part.get("file_id") or ""), str(part.get("detail") or ""))
    if kind in ("file", "input_file"):  # OpenAI Chat {"file": {"file_data"}} and Responses {"file_data"}
        nested = part.get("file")
        file: dict[str, Any] = nested if isinstance(nested, dict) else part
        data = str(file.get("file_data") or "")
        if data:
            return from_url(data, "", kind="document")
        return by_reference("document", str(file.get("file_id") or file.get("file_url") or ""), "")
    if kind == "blob":  # OTel GenAI: {"type": "blob", "mime_type", "content": base64}
        mime = str(part.get("mime_type") or "")
        return from_base64(str(part.get("content") or ""), mime, kind=_kind_of(mime))
    for key in ("inline_data", "inlineData"):  # Gemini parts
        inline = part.get(key)
        if isinstance(inline, dict):
            mime = str(inline.get("mime_type") or inline.get("mimeType") or "")
            return from_base64(str(inline.get("data") or ""), mime, kind=_kind_of(mime))
    for key in ("file_data", "fileData"):
        ref = part.get(key)
        if isinstance(ref, dict):
            mime = str(ref.get("mime_type") or ref.get("mimeType") or "")
            return by_reference(_kind_of(mime), str(ref.get("file_uri") or ref.get("fileUri") or ""), mime)
    return None


def _kind_of(media_type: str) -> str:
    return "image" if media_type.lower().startswith("image/") else "document"


def from_url(url: str, detail: str = "", kind: str = "image") -> Media:
    """A data URL is decoded; any other URL (or file id) is a reference without bytes."""
    found = _DATA_URL.match(url)
    if found and "base64" in (found.group(2) or "").lower():
        media_type = found.group(1)
        return from_base64(
            url[found.end() :], media_type, detail, kind=kind if kind != "image" else _kind_of(media_type or "image/")
        )
    return by_reference(kind, url, "", detail)


def by_reference(kind: str, reference: str, media_type: str, detail: str = "") -> Media:
    """A part that names its content (URL, file id) instead of carrying it: the same reference, the same block."""
    digest = hashlib.sha256(reference.encode("utf-8", "surrogatepass")).hexdigest()
    return Media(
        kind, media_type, digest, detail=detail, url=reference[:200], problem="given by reference: no bytes to size"
    )


def from_base64(data: str, media_type: str, detail: str = "", kind: str = "image") -> Media:
    key = (data, media_type, detail, kind)
    known = _DESCRIBED.get(key)
    if known is MISSING:
        known = _decode(data, media_type, detail, kind)
        _DESCRIBED.put(key, known, len(data))  # type: ignore[arg-type]
    return known  # type: ignore[return-value]


def _decode(data: str, media_type: str, detail: str, kind: str) -> Media:
    try:
        raw = _base64_bytes(data)
    except (binascii.Error, ValueError):
        digest = hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()
        return Media(kind, media_type, digest, detail=detail, problem="its base64 text does not decode")
    digest = hashlib.sha256(raw).hexdigest()
    if kind == "document":
        pages = len(_PDF_PAGE.findall(raw)) if raw.startswith(b"%PDF") else 0
        return Media(kind, media_type, digest, pages=pages, bytes=len(raw), problem="a document's tokens are not sized")
    size = image_size(raw)
    if size is None:
        return Media(kind, media_type, digest, detail=detail, bytes=len(raw), problem="its header is not an image's")
    width, height, fmt = size
    return Media(kind, media_type, digest, width, height, fmt, detail, bytes=len(raw))


def _base64_bytes(text: str) -> bytes:
    """Standard or URL-safe base64: Google's SDKs send Gemini ``inlineData`` in the URL-safe alphabet, often
    unpadded, which the standard decoder would silently misread (it drops ``-`` and ``_``)."""
    if "-" in text or "_" in text:
        compact = "".join(text.split())
        return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
    return base64.b64decode(text.strip(), validate=False)


def image_size(raw: bytes) -> tuple[int, int, str] | None:
    """Width, height and format from an encoded image's header (Pillow opens lazily: no pixel is decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
            return int(width), int(height), str(image.format or "")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
