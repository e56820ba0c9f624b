"""The words a reader of the report meets, each with a one-line explanation, and plain names for loss causes.

A term is shown with its explanation on hover (and on focus, for a keyboard), and every explanation is listed
again in the glossary at the end of the page, where a phone, which has no hover, finds it. The explanations are
written for someone who pays for the traffic, not for someone who runs the cache.
"""

from __future__ import annotations

from zumik_cli.render.report.html import Markup, card, join, tag

GLOSSARY = {
    "input tokens": "The text sent to a model with each request (instructions, tools, conversation), counted in "
    "tokens, the unit providers bill by.",
    "prefix": "The opening part of a request's input. A cache can only reuse an opening that is identical, "
    "token for token, to one it has seen.",
    "prompt cache": "A provider keeps the processed opening of recent requests for a while, and bills a request "
    "that repeats it at a fraction of the input price.",
    "eligible": "Input that repeats the opening of an earlier request, whatever the model, customer or time gap: "
    "the most any cache could ever reuse.",
    "candidate": "The part of eligible input a cache could have served under the provider's published rules "
    "(same model and customer, not expired, long enough).",
    "realized": "Input the provider reports it actually served from its cache.",
    "missed": "Candidate input that was not served from cache: the reuse the rules allowed and the traffic did "
    "not get.",
    "over-realized": "Requests the provider served more from cache than zumik's reading of its rules allows; "
    "counted as reported, and listed so that nobody mistakes them for an error in the totals.",
    "TTL": "Time to live: how long a cached opening is kept after its last use before it expires (5 minutes or "
    "1 hour at most providers).",
    "cache capacity": "How many tokens a self-hosted engine can keep cached at once; when it is full, the entry "
    "used longest ago is dropped (LRU).",
    "tenant": "A customer or team whose cached text must never serve another one's requests (isolation).",
    "target": "The provider, model, region and engine one request was actually sent to.",
    "alias": "The name callers use for a model (for example 'coder'); a release changes the model behind it.",
    "release": "One setting of which model and provider an alias points to, from a given time.",
    "routing policy": "The rule that picks a target for each request; zumik replays the same traffic under each "
    "one to compare cost and reuse.",
    "decision churn": "How often a policy sends a request somewhere other than where it actually went.",
    "rules pack": "zumik's record of one provider's published caching rules and list prices, with its version "
    "and the date it took effect.",
    "provider diagnostic": "The reason for a cache miss that the provider itself wrote into the log, where it "
    "writes one.",
    "materialization family": "Requests whose text is turned into tokens the same way (same tokenizer and "
    "prompt format), so that their openings can be compared token for token.",
    "KV compatibility key": "What must match for a cache entry to be usable: model, model revision, engine and tenant.",
    "granularity": "Providers cache whole blocks of tokens (or only up to marked breakpoints): the last partial "
    "block of a repeated opening cannot be reused.",
    "evidence": "How a number is known: measured by the provider, replayed on a real engine, simulated from exact "
    "tokens, or estimated from approximate counts.",
    "replay": "Sending recorded requests again to a real inference engine to measure what its cache reuses.",
}

# Plain names for the causes the waterfall attributes losses to; a cause not listed keeps the label it came with.
CAUSE_NAMES = {
    "other_model": "sent to another model or target",
    "other_tenant": "belongs to another tenant",
    "expired": "expired before reuse (TTL)",
    "below_minimum": "too short to cache",
    "granularity": "partial cache block",
    "evicted": "dropped: cache full",
    "provider_miss_unexplained": "provider missed, no reason given",
}
PROVIDER_REASON = "provider diagnostic: "


def cause_name(cause: object, label: object) -> str:
    """A loss cause in plain words: a known id by its name, a provider's own reason said as the provider's."""
    if isinstance(cause, str) and cause in CAUSE_NAMES:
        return CAUSE_NAMES[cause]
    text = str(label or cause or "unknown cause")
    if text.startswith(PROVIDER_REASON):
        return f"provider's reason: {text.removeprefix(PROVIDER_REASON)}"
    return text


def term(text: str, key: str | None = None) -> Markup:
    """``text`` marked as a glossary term that explains itself on hover or focus."""
    meaning = GLOSSARY[key or text]
    return tag("dfn", text, title=meaning, tabindex="0", class_="term")


def glossary_card() -> Markup:
    """Every term and its explanation, for screens without hover and for print."""
    pairs = join(join([tag("dt", word), tag("dd", meaning)]) for word, meaning in GLOSSARY.items())
    return card(tag("dl", pairs, class_="defs"))
