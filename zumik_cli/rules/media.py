"""What an image or a document costs in prompt tokens, by each provider's published rule (a pack's ``media``).

Three rule shapes cover the providers: Anthropic's pixel area (``area``: width x height / pixels per token after
the resize limits), OpenAI's tiles (``tiles``: a base plus a price per tile after fitting and scaling, a flat base
for ``detail: low``; the models OpenAI bills by 32-px patches instead are named in ``patch_multipliers``) and
Gemini's (``gemini``: a flat figure up to a small size, else per tile). Content whose size is unknown (a document,
an image by URL) gets the pack's nominal figure, and the caller marks the count estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from zumik_cli.core.errors import RulesError
from zumik_cli.core.media import Media

RULES = ("area", "tiles", "gemini")


@dataclass(frozen=True)
class TileCost:
    base: int
    per_tile: int


@dataclass(frozen=True)
class MediaRules:
    """One provider's image-token rule, with where it is published and when it was read."""

    rule: str
    source: str
    as_of: str
    pixels_per_token: float = 750.0
    max_long_edge: int = 0
    max_pixels: int = 0
    fit_within: int = 0
    short_side: int = 0
    tile: int = 512
    cost: TileCost = field(default_factory=lambda: TileCost(85, 170))
    cost_by_model: dict[str, TileCost] = field(default_factory=dict)
    small_edge: int = 0
    small_tokens: int = 0
    patch: int = 32
    max_patches: int = 1536
    patch_multipliers: dict[str, float] = field(default_factory=dict)
    unknown_image_tokens: int = 0
    document_page_tokens: int = 0
    notes: str = ""
    nominal: str = ""  # what the unknown-size figures are: zumik's estimates unless a provider publishes them

    def describe(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "source": self.source,
            "as_of": self.as_of,
            "unknown_image_tokens": self.unknown_image_tokens,
            "document_page_tokens": self.document_page_tokens,
            "notes": self.notes,
            "nominal": self.nominal,
        }

    def tokens(self, media: Media, model: str = "") -> int:
        """The prompt tokens of one image or document under this rule (nominal when its size is unknown)."""
        if not media.sized:
            if media.kind == "document":
                return self.document_page_tokens * max(media.pages, 1)
            return self.unknown_image_tokens
        if self.rule == "area":
            return self._area(media.width, media.height)
        if self.rule == "tiles" and (multiplier := _by_model(self.patch_multipliers, model)) is not None:
            return self._patches(media.width, media.height, multiplier)
        if self.rule == "tiles":
            return self._tiles(media.width, media.height, media.detail, self._cost(model))
        return self._gemini(media.width, media.height)

    def _area(self, width: int, height: int) -> int:
        scale = 1.0
        if self.max_long_edge:
            scale = min(scale, self.max_long_edge / max(width, height))
        if self.max_pixels:
            scale = min(scale, math.sqrt(self.max_pixels / (width * height)))
        w, h = max(int(width * scale), 1), max(int(height * scale), 1)
        return math.ceil(w * h / self.pixels_per_token)

    def _tiles(self, width: int, height: int, detail: str, cost: TileCost) -> int:
        if detail == "low":
            return cost.base
        w, h = float(width), float(height)
        if self.fit_within and max(w, h) > self.fit_within:
            scale = self.fit_within / max(w, h)
            w, h = w * scale, h * scale
        if self.short_side and min(w, h) > self.short_side:
            scale = self.short_side / min(w, h)
            w, h = w * scale, h * scale
        tiles = math.ceil(int(w) / self.tile) * math.ceil(int(h) / self.tile)
        return cost.base + cost.per_tile * tiles

    def _patches(self, width: int, height: int, multiplier: float) -> int:
        """OpenAI's patch rule: 32-px patches covering the image, shrunk (aspect kept, whole patches) to at most
        ``max_patches``, times the model's multiplier."""
        patches = math.ceil(width / self.patch) * math.ceil(height / self.patch)
        if patches > self.max_patches:
            shrink = math.sqrt(self.patch**2 * self.max_patches / (width * height))
            w, h = width * shrink / self.patch, height * shrink / self.patch
            shrink *= min(math.floor(w) / w, math.floor(h) / h)
            patches = math.ceil(int(width * shrink) / self.patch) * math.ceil(int(height * shrink) / self.patch)
        return math.ceil(patches * multiplier)

    def _gemini(self, width: int, height: int) -> int:
        if width <= self.small_edge and height <= self.small_edge:
            return self.small_tokens
        return math.ceil(width / self.tile) * math.ceil(height / self.tile) * self.small_tokens

    def _cost(self, model: str) -> TileCost:
        cost = _by_model(self.cost_by_model, model)
        return cost if cost is not None else self.cost


def _by_model(table: dict[str, Any], model: str) -> Any:
    """The entry whose key is the longest prefix of the model name (provider prefix ignored), or None."""
    name = model.lower().rsplit("/", 1)[-1]
    best = max((k for k in table if name.startswith(k.lower())), key=len, default=None)
    return table[best] if best is not None else None


def parse_media(raw: Any, origin: str) -> MediaRules | None:
    """A pack's ``media`` object as typed rules; None where the pack has none."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("rule") not in RULES:
        raise RulesError(f"rules pack {origin}: media.rule must be one of {', '.join(RULES)}")
    if not raw.get("source") or not raw.get("as_of"):
        raise RulesError(f"rules pack {origin}: media needs the rule's source and as_of date")
    if (raw.get("unknown_image_tokens") or raw.get("document_page_tokens")) and not raw.get("nominal"):
        raise RulesError(
            f"rules pack {origin}: media.nominal must say where the unknown-size image and document figures come from"
        )
    cost = raw.get("cost") or {}
    return MediaRules(
        rule=str(raw["rule"]),
        source=str(raw["source"]),
        as_of=str(raw["as_of"]),
        pixels_per_token=float(raw.get("pixels_per_token", 750)),
        max_long_edge=int(raw.get("max_long_edge", 0)),
        max_pixels=int(raw.get("max_pixels", 0)),
        fit_within=int(raw.get("fit_within", 0)),
        short_side=int(raw.get("short_side", 0)),
        tile=int(raw.get("tile", 512)),
        cost=TileCost(int(cost.get("base", 85)), int(cost.get("per_tile", 170))),
        cost_by_model={
            str(k): TileCost(int(v["base"]), int(v["per_tile"])) for k, v in (raw.get("cost_by_model") or {}).items()
        },
        small_edge=int(raw.get("small_edge", 0)),
        small_tokens=int(raw.get("small_tokens", 0)),
        patch=int(raw.get("patch", 32)),
        max_patches=int(raw.get("max_patches", 1536)),
        patch_multipliers={str(k): float(v) for k, v in (raw.get("patch_multipliers") or {}).items()},
        unknown_image_tokens=int(raw.get("unknown_image_tokens", 0)),
        document_page_tokens=int(raw.get("document_page_tokens", 0)),
        notes=str(raw.get("notes", "")),
        nominal=str(raw.get("nominal", "")),
    )
