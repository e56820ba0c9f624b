"""The reuse waterfall: total -> eligible -> candidate -> realized -> missed, with causes, money and evidence.

All set-based work is DuckDB SQL over the dataset (``sql/units.sql``, ``sql/per_request.sql``,
``sql/stages.sql``); compiled passes find the shared prefixes (``levels``), the block pairs whose token overlap
counts (``siblings``) and LRU stack depths (``capacity``), and Python computes token-exact overlaps inside the
first differing block (numpy, on those few pairs). Definitions live in ``DEFINITIONS`` and travel with every result.
The per-request table goes from DuckDB to a Parquet file (``per_request.py``) that the summary and every consumer
scan: after the levels pass nothing holds one row a request in memory.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from zumik_cli.analysis.block_pool import VLLM_EVICTION, namespaced_prompts, own_tier_hits, token_prompts
from zumik_cli.analysis.kv_memory import kv_shape, memory
from zumik_cli.analysis.per_request import PerRequest
from zumik_cli.analysis.timeline import Timeline
from zumik_cli.core.errors import ZumikError
from zumik_cli.dataset.schema import SESSION_LABEL
from zumik_cli.dataset.spark import ENGINES
from zumik_cli.dataset.store import Dataset
from zumik_cli.ingest.pipeline import UNLOGGED_PREFIX_METHOD
from zumik_cli.rules.pack import RulesPack, resolve_packs
from zumik_cli.rules.prices import Cost, Tokens, Unpriced, price

if TYPE_CHECKING:  # the modules with compiled kernels load numba: imported where a kernel runs
    from zumik_cli.analysis import shards
    from zumik_cli.analysis.levels import Workload
from zumik_cli.rules.targets import register_target_rules

MAX_SIBLINGS = 64
# An estimated row (proxy tokenizer scaled to the reported total, or coarse hash blocks) can overshoot by rounding;
# reported reads above its candidate by at most this share of its input are noted apart from real over-realization.
OVER_REALIZED_TOLERANCE = 0.05
CAPACITY_LADDER = (16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216, None)
EVIDENCE_ORDER = ("measured", "replayed", "simulated", "estimated")

DEFINITIONS = {
    "total_input_tokens": "Prompt tokens of every request: as the provider reported them (Anthropic input + cache "
    "reads + cache writes; OpenAI prompt_tokens, cached included), else as counted by zumik.",
    "eligible": "Per request, the longest token-exact prefix it shares with any earlier request of the same "
    "materialization family (same tokenizer and prompt compiler), whatever the model, tenant or time gap.",
    "candidate": "The part of eligible a cache could have served under the rules pack of the target the request "
    "went to: only earlier requests with the same KV compatibility key (model, revision, engine, tenant), only "
    "prefixes last used within the TTL (refreshed on use; up to a 1-hour breakpoint, an hour), above the minimum "
    "cacheable length, rounded down to the "
    "target's granularity or breakpoints, and within capacity for engines with a bounded KV cache (LRU).",
    "realized": "Cache-read tokens the provider reported (measured); requests whose log has no cache field are "
    "unknown, not zero, and left out of realized and missed.",
    "missed": "Candidate minus realized, per request, summed over requests whose realized is known; requests whose "
    "realized exceeds candidate are counted separately as over-realized.",
    "rates": "Headline rates are token-weighted: stage tokens over total input tokens. Request-weighted means "
    "average each request's own rate.",
    "second_tier": "With --second-tier-tokens, each engine's block pool has a second tier behind it (CPU memory or "
    "disk, as vLLM's KV offloading or LMCache add one): a block whose last copy the pool evicts moves there, the "
    "least recently used leaves it when it is full, and a prompt's leading blocks found there are served from it and "
    "loaded back into the pool. Per request, the candidate's leading tokens are counted to the first tier up to what "
    "the pool itself held, the rest to the second tier. Simulated: no engine here measured it.",
    "capacity_curve": "Candidate rate under the ideal rules (same KV key, no TTL) with an LRU cache of the given "
    "size, shared by all targets; a request's hits are its leading blocks present when it starts, then its blocks "
    "are touched first to last (Mattson stack distances, one pass for every capacity). Content traces count whole "
    "content blocks, in each request's provider tokens like the stages, and its unbounded point is the stages' "
    "token-exact same-KV-key level; hash-id traces count their own blocks. Under a "
    "pack with vLLM's eviction the curve is vLLM's block pool, one per target, as the bounded candidate is. For "
    "content traces the unbounded point equals the candidate under `--rules ideal --ttl none`.",
    "unlogged_prefix": "Per session whose log leaves out what every call sends first (a Claude Code transcript's "
    "system prompt and tool definitions): the tokens of the one leading block that stands for it in every call of "
    "the session, estimated as the least gap between a call's reported and counted prompt tokens. It is eligible "
    "from the session's second call on, like a system prompt, and is not scaled; only the counted rest of a prompt "
    "is scaled to what is left of the reported total.",
}

CAUSE_LABELS = {
    "other_model": "other model or target",
    "other_tenant": "other tenant (isolation)",
    "expired": "expired (TTL)",
    "below_minimum": "below minimum cacheable length",
    "granularity": "granularity or breakpoints",
    "evicted": "evicted (capacity)",
    "provider_miss_unexplained": "provider miss (unexplained)",
}


@dataclass(frozen=True)
class WaterfallOptions:
    rules: str | None = None
    ttl_seconds: float | None = None
    ttl_none: bool = False
    capacity_tokens: int | None = None
    by: tuple[str, ...] = ()
    rules_files: tuple[str, ...] = ()
    capacities: tuple[int | None, ...] = CAPACITY_LADDER
    curves: bool = True
    kv_model: str | None = None  # a shipped model name or a config.json: the curve in GiB of KV memory
    kv_dtype: str | None = None
    second_tier_tokens: int | None = None  # a second cache tier (CPU memory or disk) behind each engine's pool
    engine: str = "duckdb"  # or "spark": the levels on a Spark cluster (same figures; analysis/spark_levels.py)
    curve_sample_rate: float | None = None  # the curve from a SHARDS sample of the blocks (analysis/shards.py)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ZumikError(f"unknown engine {self.engine!r}: use one of {', '.join(ENGINES)}")
        # a TTL or a cache of nothing would turn every candidate into a cause without anyone asking for it
        if self.ttl_seconds is not None and not self.ttl_seconds > 0:
            raise ZumikError(f"a TTL must be above 0 seconds, not {self.ttl_seconds:g}: pass none for no expiry")
        for size in (self.capacity_tokens, self.second_tier_tokens, *self.capacities):
            if size is not None and size <= 0:
                raise ZumikError(f"a cache capacity must be above 0 tokens, not {size:,}")


@dataclass
class Waterfall:
    """The result: ``summary`` is the JSON object of docs/waterfall-json.md; ``per_request`` one row a request, in a
    file that consumers scan (``analysis/per_request.py``) rather than a table in memory."""

    summary: dict[str, Any]
    per_request: PerRequest = field(repr=False)


def weakest(levels: Iterable[str]) -> str:
    present = [lv for lv in levels if lv]
    return max(present, key=EVIDENCE_ORDER.index) if present else "measured"


def _pack_table(con: duckdb.DuckDBPyConnection, options: WaterfallOptions) -> dict[str, RulesPack]:
    """Register ``packs_in``: each target's rules with the options' TTL applied. Returns the packs loaded."""
    packs, forced = resolve_packs(options.rules, options.rules_files)
    register_target_rules(con, "packs_in", packs, forced, ttl_seconds=options.ttl_seconds, ttl_none=options.ttl_none)
    return packs


# Per request, only what the computation reads (numbers and a few short codes): the descriptive text of each
# request joins the result at the end (``sql/stages.sql``), once, instead of travelling through every table.
REQ_SQL = """
CREATE OR REPLACE TEMP TABLE req AS
SELECT r.rid, r.seq, o.ord, r.timestamp AS ts, r.tokenizer_exact, r.block_granularity > 0 AS hashid, r.n_blocks,
       CASE WHEN p.gran_kind = 'breakpoints' THEN r.breakpoints END AS breakpoints,
       (r.prompt_tokens_counted IS NULL AND r.block_granularity = 0) AS usage_only,
       coalesce(r.prompt_tokens_counted, r.prompt_tokens_reported, 0) AS counted,
       coalesce(r.unlogged_prefix_tokens, 0) AS prefix,
       r.prompt_tokens_reported AS reported, r.cached_tokens_reported AS cached,
       r.cache_write_tokens_reported AS writes,
       CASE WHEN list_contains(r.breakpoint_ttls, '1h') THEN '1h' ELSE '5m' END AS write_ttl,
       p.pack,
       -- a block lives as long as the longest-lived breakpoint at or after its end: up to the last 1-hour
       -- breakpoint for an hour (long_until, ttl_long), past it for the pack's TTL (ttl), like the provider's entries
       p.ttl,
       CASE WHEN NOT p.ttl_fixed AND p.ttl_1h IS NOT NULL THEN p.ttl_1h ELSE p.ttl END AS ttl_long,
       CASE WHEN NOT p.ttl_fixed AND p.ttl_1h IS NOT NULL
            THEN list_max(list_filter(r.breakpoints, lambda x, i: r.breakpoint_ttls[i] = '1h')) END AS long_until,
       p.min_tokens, p.gran_kind, p.block_size, p.recompute_last, p.inc_first, p.inc_step, p.lookback,
       fam.id AS fam_id, tgt.id AS tgt_id, kvc.id AS kvc_id
FROM requests r
-- the request order is numbered on these three columns alone and joined back by seq (unique: ingest numbers
-- every request once across runs): a window over the whole row sorted every column with it
JOIN (SELECT seq, row_number() OVER (ORDER BY timestamp NULLS LAST, seq, rid) AS ord FROM requests) o USING (seq)
-- dense_rank() over each key, computed on its few distinct values and joined back: three windows over every
-- request sorted the million strings three times (about 5 s of the 1M-request waterfall)
JOIN (SELECT v, row_number() OVER (ORDER BY v) AS id
      FROM (SELECT DISTINCT materialization_family AS v FROM requests)) fam
  ON fam.v IS NOT DISTINCT FROM r.materialization_family
JOIN (SELECT v, row_number() OVER (ORDER BY v) AS id
      FROM (SELECT DISTINCT target_key AS v FROM requests)) tgt
  ON tgt.v IS NOT DISTINCT FROM r.target_key
JOIN (SELECT v, row_number() OVER (ORDER BY v) AS id
      FROM (SELECT DISTINCT kv_compatibility_key AS v FROM requests)) kvc
  ON kvc.v IS NOT DISTINCT FROM r.kv_compatibility_key
JOIN packs_in p ON p.provider IS NOT DISTINCT FROM r.provider AND p.engine IS NOT DISTINCT FROM r.engine
               AND p.model IS NOT DISTINCT FROM r.model
"""

BREAKPOINT_SQL = """
CREATE OR REPLACE TEMP TABLE bp_hits AS
WITH marks AS (
    SELECT u.rid, u.pos, u.chain, u.kvc_id, u.ord
    FROM units u JOIN req r USING (rid)
    WHERE r.gran_kind = 'breakpoints'
      AND (list_contains(r.breakpoints, u.end_token) OR (len(r.breakpoints) = 0 AND u.pos = r.n_blocks - 1))
)
SELECT u.rid, max(u.end_token) AS t_bp
FROM units u
JOIN req r ON r.rid = u.rid AND r.gran_kind = 'breakpoints'
JOIN levels l ON l.rid = u.rid AND u.pos < l.n_warm
JOIN marks written ON written.kvc_id = u.kvc_id AND written.chain = u.chain AND written.ord < u.ord
JOIN marks mine ON mine.rid = u.rid AND mine.pos >= u.pos AND mine.pos - u.pos < r.lookback
GROUP BY u.rid
"""
EMPTY_BREAKPOINTS_SQL = (
    "CREATE OR REPLACE TEMP TABLE bp_hits AS SELECT NULL::BIGINT AS rid, 0::BIGINT AS t_bp WHERE false"
)


def _sql(name: str) -> str:
    return resources.files("zumik_cli.analysis.sql").joinpath(name).read_text()


def common_prefix_length(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading token ids two blocks share: the token-exact step inside the first block that differs."""
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


def _partials(con: duckdb.DuckDBPyConnection, has_content: bool) -> None:
    """Token-exact overlap inside the first block a request does not share, against its siblings.

    Only content blocks have tokens to compare: without them (hash-id traces) the siblings are not looked for.
    """
    if has_content:
        from zumik_cli.analysis.siblings import sibling_pairs

        pairs = sibling_pairs(con, MAX_SIBLINGS)
    else:
        pairs = pa.table({"rid": pa.array([], pa.int64())})
    if pairs.num_rows:
        con.register("pair_blocks", pairs)
        token_rows = con.execute("""
            SELECT block_id, token_ids FROM tokens
            WHERE block_id IN (SELECT a FROM pair_blocks UNION SELECT b FROM pair_blocks)
        """).fetchall()
        tokens = {bid: np.asarray(ids, dtype=np.int32) for bid, ids in token_rows}
        empty = np.zeros(0, dtype=np.int32)
        cache: dict[tuple[int, int], int] = {}
        lcps = []
        for a, b in zip(pairs.column("a").to_pylist(), pairs.column("b").to_pylist(), strict=True):
            key = (a, b)
            if key not in cache:
                cache[key] = common_prefix_length(tokens.get(a, empty), tokens.get(b, empty))
            lcps.append(cache[key])
        con.register("pair_lcp", pairs.append_column("lcp", pa.array(lcps, pa.int64())))
        source = "pair_lcp"
    else:
        source = "(SELECT NULL::BIGINT AS rid, NULL::VARCHAR AS level, 0::BIGINT AS lcp WHERE false)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE partial AS
        SELECT rid,
               max(CASE WHEN level = 'fam' THEN lcp END) AS p_fam,
               max(CASE WHEN level = 'tgt' THEN lcp END) AS p_tgt,
               max(CASE WHEN level = 'kvc' THEN lcp END) AS p_kvc,
               max(CASE WHEN level = 'warm' THEN lcp END) AS p_warm
        FROM {source} GROUP BY rid
    """)


def _uniform_block(con: duckdb.DuckDBPyConnection) -> int | None:
    """Hash-id traces have one block size: capacity then counts whole blocks, as their reference figures do."""
    sizes = con.execute("SELECT DISTINCT block_granularity FROM requests").fetchall()
    return int(sizes[0][0]) if len(sizes) == 1 and sizes[0][0] else None


def _sized_units(workload: Workload) -> npt.NDArray[np.integer]:
    """Unit ids for the token-weighted LRU, which needs one size per unit.

    A hash-id trace's partial last block shares its id with the full block a later request holds; a block cache
    never caches a partial block, so each (unit, size) pair counts as its own unit. Content blocks have one size
    each, so for them this changes nothing.
    """
    key = workload.units.astype(np.int64) * (int(workload.sizes.max(initial=0)) + 1) + workload.sizes
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def _capacity_hits(
    con: duckdb.DuckDBPyConnection,
    workload: Workload,
    capacity_tokens: int | None,
    model: CacheModel,
    second_tier_tokens: int | None = None,
    figures: LruFigures | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """``cap_hits``: per request, the leading tokens a bounded cache of ``capacity_tokens`` still holds; with a second
    tier, what each tier served is returned.

    Under a pack whose eviction is vLLM's, that is the engine's block pool (``block_pool.predict``, the model replay
    predicts with: ``exact``), and a request it served as fully as an unbounded pool would have is left uncut (so
    that proxy-scaled counts round as the unbounded candidate's do); otherwise the reference LRU over the dataset's
    own blocks, whose last shared block may still be followed by shared tokens the block count cannot see; those
    hits come in ``figures`` when a Spark task computed them where the blocks are."""
    if capacity_tokens is None:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE cap_hits AS "
            "SELECT NULL::BIGINT AS rid, 0::BIGINT AS t_cap, false AS exact WHERE false"
        )
        return None
    rids = workload.rids
    tiers = None
    uncut = None
    if figures is not None and figures.hits is not None:
        rids, hits = figures.hits.column("rid").to_numpy(), figures.hits.column("t_cap").to_numpy()
    elif model.pools is not None:
        tiers = model.pool_hits(capacity_tokens, second_tier_tokens)
        hits = tiers[0] + tiers[1]
        uncut = hits >= model.pool_hits(None)[0]
    else:
        hits = _lru_hits(workload, capacity_tokens, model.uniform_block)
    table = pa.table(
        {
            "rid": pa.array(rids, pa.int64()),
            "t_cap": pa.array(hits, pa.int64(), mask=uncut),
            "exact": pa.array(np.full(len(rids), model.pools is not None), pa.bool_()),
        }
    )
    con.register("cap_in", table)
    con.execute("CREATE OR REPLACE TEMP TABLE cap_hits AS SELECT * FROM cap_in")
    return tiers if second_tier_tokens else None


def _lru_hits(workload: Workload, capacity_tokens: int, uniform_block: int | None) -> npt.NDArray[np.int64]:
    """Per workload request, its leading tokens a reference LRU of ``capacity_tokens`` still holds."""
    from zumik_cli.analysis import capacity

    if uniform_block:
        return capacity.streamed_request_hits(
            workload.batches(),
            workload.timeline.n,
            workload.n_units,
            len(workload.rids),
            capacity_tokens // uniform_block,
        )
    return capacity.request_hits(workload.offsets, _sized_units(workload), workload.sizes, capacity_tokens)


def _lru_curve(
    workload: Workload, capacities: tuple[int | None, ...], uniform_block: int | None, scales: Scales | None
) -> list[tuple[int | None, int]]:
    """The reference LRU's hits at each capacity: whole blocks of one size (hash-id traces), else each access counted
    in its request's provider tokens (``scales``), the cache holding counted tokens."""
    from zumik_cli.analysis import capacity

    if uniform_block:
        return capacity.streamed_capacity_curve(
            workload.batches(), workload.timeline.n, workload.n_units, list(capacities), uniform_block
        )
    sizes = workload.sizes
    hit_tokens = sizes if scales is None else _provider_sizes(workload, scales)
    return capacity.token_capacity_curve(
        workload.offsets, _sized_units(workload), sizes, list(capacities), hit_tokens=hit_tokens
    )


@dataclass(frozen=True)
class LruFigures:
    """The reference LRU's figures of one run, computed where its timeline is: the exact curve's hits (None when it
    was not asked for, or sampled), each request's hits in the bounded cache (``rid``, ``t_cap``), the sampled curve,
    and the timeline's tokens (what the sampled curve's ratios are shares of)."""

    curve: list[tuple[int | None, int]] | None
    hits: pa.Table | None
    sampling: shards.SampledCurve | None
    block_tokens: int

    def to_json(self) -> str:
        """Everything but the per-request hits (which travel as rows) as one short JSON text."""
        sampling = None if self.sampling is None else asdict(self.sampling)
        return json.dumps({"curve": self.curve, "sampling": sampling, "block_tokens": self.block_tokens})

    @classmethod
    def from_json(cls, text: str, hits: pa.Table | None) -> LruFigures:
        found = json.loads(text)
        sampling = None
        if found["sampling"] is not None:
            from zumik_cli.analysis import shards

            points = [(cap, ratio) for cap, ratio in found["sampling"].pop("points")]
            sampling = shards.SampledCurve(points=points, **found["sampling"])
        curve = None if found["curve"] is None else [(cap, hit) for cap, hit in found["curve"]]
        return cls(curve, hits, sampling, int(found["block_tokens"]))


@dataclass(frozen=True)
class LruJob:
    """What one run asks of the reference LRU (one cache over every (KV key, chain) unit), decided before the levels
    pass: a plain value, so that the Spark engine runs it in the task that holds the timeline, through the same
    helpers as the embedded engine."""

    capacities: tuple[int | None, ...]
    curve: bool
    sample_rate: float | None  # with ``curve``: the curve from a SHARDS sample
    capacity_tokens: int | None
    uniform_block: int | None

    def run(self, workload: Workload, scales: Scales) -> LruFigures:
        sampled = self.curve and self.sample_rate is not None
        curve = (
            _lru_curve(workload, self.capacities, self.uniform_block, scales) if self.curve and not sampled else None
        )
        hits = None
        if self.capacity_tokens is not None:
            t_cap = _lru_hits(workload, self.capacity_tokens, self.uniform_block)
            hits = pa.table({"rid": pa.array(workload.rids, pa.int64()), "t_cap": pa.array(t_cap, pa.int64())})
        sampling = None
        if sampled and self.uniform_block:
            sampling = _sampled_curve(workload, self.uniform_block, self.capacities, float(self.sample_rate or 1.0))
        return LruFigures(curve, hits, sampling, workload.block_tokens)


def _lru_job(con: duckdb.DuckDBPyConnection, packs: dict[str, RulesPack], options: WaterfallOptions) -> LruJob | None:
    """The run's reference-LRU job, or None when no bounded figure is asked for or vLLM's block pool is the model."""
    if not (options.curves or options.capacity_tokens is not None) or _block_pool_pack(con, packs) is not None:
        return None
    uniform = _uniform_block(con)
    sample_rate = options.curve_sample_rate if options.curves and options.curve_sample_rate else None
    if sample_rate and not uniform:
        raise _not_sampled()
    return LruJob(options.capacities, options.curves, sample_rate, options.capacity_tokens, uniform)


@dataclass(frozen=True)
class CacheModel:
    """Which model every bounded figure of one run uses, decided once: vLLM's block pool (``pools``: each target's
    token prompts, loaded once for the candidate and the curve), else the reference LRU over hash-id blocks of one
    size (``uniform_block``) or over content blocks."""

    pools: BlockPools | None
    pool_block: int
    uniform_block: int | None
    n_requests: int = 0  # the workload's requests, which the pools' positions index

    def pool_hits(
        self, capacity_tokens: int | None, second_tier_tokens: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``_block_pool_hits`` of this model's pools; the unbounded pool, which both the bounded candidate and the
        curve read, is run once (it evicts nothing, so a second tier behind it serves nothing)."""
        if capacity_tokens is None:
            return self._unbounded_pool_hits
        return _block_pool_hits(self.pools or [], self.n_requests, self.pool_block, capacity_tokens, second_tier_tokens)

    @functools.cached_property
    def _unbounded_pool_hits(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        return _block_pool_hits(self.pools or [], self.n_requests, self.pool_block, None)


def _cache_model(
    con: duckdb.DuckDBPyConnection, workload: Workload, packs: dict[str, RulesPack], needed: bool
) -> CacheModel:
    """The run's model; a block pool's prompts are loaded only when a bounded figure or the curve ``needed`` them."""
    pack = _block_pool_pack(con, packs)
    if pack is None or not needed:
        return CacheModel(None, 0, _uniform_block(con) if pack is None else None)
    size = pack.granularity.block_size
    return CacheModel(_block_pools(con, workload, size), size, None, len(workload.rids))


def _block_pool_pack(con: duckdb.DuckDBPyConnection, packs: dict[str, RulesPack]) -> RulesPack | None:
    """The pack every request is judged under, when there is one and its eviction is vLLM's block pool."""
    names = [row[0] for row in con.execute("SELECT DISTINCT pack FROM req").fetchall()]
    if len(names) != 1 or names[0] not in packs:
        return None
    pack = packs[names[0]]
    return pack if pack.eviction == VLLM_EVICTION and pack.granularity.kind == "blocks" else None


BlockPools = list[tuple[npt.NDArray[np.int64], list[np.ndarray]]]


def _block_pools(con: duckdb.DuckDBPyConnection, workload: Workload, block_size: int) -> BlockPools:
    """Per target (an engine of its own): the positions of its requests in the workload, in time order, and their
    token prompts behind one namespace block per KV key, as replay sends them."""
    rids = [int(r) for r in workload.rids]
    prompts = token_prompts(con, rids)
    keys = {rid: (target, key) for rid, target, key in con.execute("SELECT rid, tgt_id, kvc_id FROM req").fetchall()}
    by_target: dict[int, list[int]] = {}
    for i, rid in enumerate(rids):
        by_target.setdefault(keys[rid][0], []).append(i)
    pools = []
    for positions in by_target.values():
        tokens = [prompts.get(rids[i], np.zeros(0, dtype=np.int64)) for i in positions]
        spaced = namespaced_prompts(tokens, [str(keys[rids[i]][1]) for i in positions], block_size)
        pools.append((np.asarray(positions, dtype=np.int64), spaced))
    return pools


def _block_pool_hits(
    pools: BlockPools, n: int, block_size: int, capacity_tokens: int | None, second_tier_tokens: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Each request's cached tokens in a block pool of ``capacity_tokens`` per target (None: unbounded), from the
    pool itself and from a second tier of ``second_tier_tokens`` behind it."""
    first, second = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    blocks = None if capacity_tokens is None else capacity_tokens // block_size
    tier2 = None if second_tier_tokens is None else second_tier_tokens // block_size
    for positions, spaced in pools:
        first[positions], second[positions] = own_tier_hits(spaced, block_size, blocks, tier2)
    return first, second


def _block_pool_curve(
    model: CacheModel,
    capacities: list[int | None],
    scales: Scales,
    second_tier_tokens: int | None = None,
) -> list[CurveHits]:
    """The curve under the block pool, in provider tokens (with a second tier, also what it served); a capacity too
    small for the longest prompt (which an engine refuses) has no point."""
    block_size = model.pool_block
    longest = max((len(p) for _, spaced in model.pools or [] for p in spaced), default=0)
    points: list[CurveHits] = []
    for cap in capacities:
        if cap is not None and cap // block_size < -(-longest // block_size):
            continue
        first, second = model.pool_hits(cap, second_tier_tokens)
        both = int(provider_tokens(first + second, scales).sum())
        tier2 = both - int(provider_tokens(first, scales).sum()) if second_tier_tokens else None
        points.append((cap, both, tier2))
    return points


CurveHits = tuple[int | None, int, int | None]  # capacity, hit tokens, of which a second tier served (None: none)


def _start_curve(
    con: duckdb.DuckDBPyConnection,
    workload: Workload,
    capacities: tuple[int | None, ...],
    pool: ThreadPoolExecutor,
    model: CacheModel,
    second_tier_tokens: int | None = None,
) -> Future[list[Any]]:
    """The capacity curve's hits, computed on a worker (the kernel releases the GIL) while DuckDB runs SQL.

    A hit counts in the request's own provider tokens (its counted sizes times the scale that the stages apply), so
    that the curve and the stages measure the same tokens and no point can pass eligible; the cache holds counted
    tokens, as a bounded candidate does."""
    if model.pools is not None:  # the engine's own model, as the bounded candidate under the same pack
        scales = _request_scales(con, workload)
        return pool.submit(
            _block_pool_curve,
            model,
            list(capacities),
            scales,
            second_tier_tokens,
        )
    hit_scales = None if model.uniform_block else _request_scales(con, workload)
    return pool.submit(_lru_curve, workload, capacities, model.uniform_block, hit_scales)


# A request's scale from counted to reported tokens, as the stages apply it (per_request.sql): 1 where the count is
# exact; else what is left of the reported total once the estimated unlogged prefix (already in provider tokens) is
# taken out, over what is left of the counted total.
REQUEST_SCALE_SQL = """
CASE WHEN r.reported IS NOT NULL AND NOT r.tokenizer_exact AND NOT r.hashid AND r.counted > r.prefix
     THEN greatest(r.reported - r.prefix, 0)::DOUBLE / (r.counted - r.prefix) ELSE 1.0 END
"""
Scales = tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]


def _request_scales(con: duckdb.DuckDBPyConnection, workload: Workload) -> Scales:
    """Each workload request's scale and unlogged prefix tokens (which are not scaled), in workload order."""
    con.register(
        "curve_rids", pa.table({"rid": pa.array(workload.rids, pa.int64()), "i": np.arange(len(workload.rids))})
    )
    found = con.execute(
        f"SELECT {REQUEST_SCALE_SQL} AS scale, r.prefix FROM curve_rids c JOIN req r USING (rid) ORDER BY c.i"
    ).fetchnumpy()
    return np.asarray(found["scale"], dtype=np.float64), np.asarray(found["prefix"], dtype=np.int64)


def provider_tokens(counted: npt.NDArray[np.integer], scales: Scales) -> npt.NDArray[np.int64]:
    """Leading counted tokens in provider tokens: the unlogged prefix as it is, the rest scaled and rounded."""
    factor, prefix = scales
    rest = np.maximum(counted - prefix, 0)
    return (np.minimum(counted, prefix) + np.floor(rest * factor + 0.5)).astype(np.int64)


def _provider_sizes(workload: Workload, scales: Scales) -> npt.NDArray[np.integer]:
    """Each access's tokens scaled to its request's reported total where a proxy tokenizer counted them."""
    factor, prefix = scales
    if np.all(factor == 1.0):
        return workload.sizes
    # cumulative within each request, rounded as the stages round (half away from zero), then differenced: a run of
    # leading hits then counts exactly the rounded scaled prefix that the stages count
    repeat = np.diff(workload.offsets)
    per_access = (np.repeat(factor, repeat), np.repeat(prefix, repeat))
    starts = np.repeat(workload.offsets[:-1], repeat)
    running = np.cumsum(workload.sizes, dtype=np.int64)
    before = np.concatenate(([0], running[:-1])) - np.concatenate(([0], running))[starts]
    after = before + workload.sizes
    return provider_tokens(after, per_access) - provider_tokens(before, per_access)


def _curve(
    con: duckdb.DuckDBPyConnection,
    hits_future: Future[list[Any]],
    total: int,
    model: CacheModel,
) -> list[dict[str, Any]]:
    """The curve's points; for content traces under the reference LRU, the unbounded point is the stages' own
    "same KV key, any age" level (token-exact: the candidate under ``--rules ideal --ttl none``), which the
    whole-block bounded points never pass."""
    if not total:
        return []
    hits = hits_future.result()
    if model.pools is None and not model.uniform_block:
        same_key = con.execute("SELECT coalesce(sum(same_key), 0) FROM stages WHERE NOT hashid").fetchall()[0][0]
        hits = [(cap, int(same_key) if cap is None else h) for cap, h in hits]
    points = []
    for cap, h, *tier in hits:
        point: dict[str, Any] = {"capacity_tokens": cap, "rate": round(min(h / total, 1.0), 6)}
        if tier and tier[0] is not None:
            point["second_tier_rate"] = round(min(tier[0] / total, 1.0), 6)
        points.append(point)
    return points


def _levels_coincide(con: duckdb.DuckDBPyConnection) -> bool:
    """True when every family has one target and every target one key: the three first uses are then one."""
    rows = con.execute("SELECT count(DISTINCT fam_id) = count(DISTINCT kvc_id) FROM req").fetchall()
    return bool(rows and rows[0][0])


def compute_waterfall(dataset: Dataset, options: WaterfallOptions | None = None) -> Waterfall:
    options = options or WaterfallOptions()
    con = dataset.connect()
    n = con.execute("SELECT count(*) FROM requests").fetchone()
    if not n or not n[0]:
        raise ZumikError(f"the dataset at {dataset.root} has no requests: ingest traces first with `zumik ingest`")
    packs = _pack_table(con, options)
    with _one_thread(con):  # on one thread DuckDB made ``req`` with 90 MB less at 1M requests (docs/benchmarks.md)
        con.execute(REQ_SQL)
    if con.execute("SELECT count(*) FROM req").fetchall()[0][0] != n[0]:
        raise ZumikError(
            f"the dataset at {dataset.root} numbers two requests with the same seq, which ingest never does: "
            "ingest the traces again into a new dataset"
        )
    con.execute(_sql("units.sql"))
    lru = _lru_job(con, packs, options) if options.engine == "spark" else None
    workload, figures = _levels_engine(options, lru)(con, _levels_coincide(con), dataset.parts("request_blocks"))
    kinds = con.execute("SELECT bool_or(NOT hashid), bool_or(gran_kind = 'breakpoints') FROM req").fetchall()[0]
    model = _cache_model(con, workload, packs, options.capacity_tokens is not None or options.curves)
    tier2 = options.second_tier_tokens
    if tier2 is not None and model.pools is None:
        raise ZumikError(
            "a second cache tier is modelled behind vLLM's block pool: judge every request under a pack with vLLM's "
            "eviction (`--rules vllm`)"
            + (
                ""
                if options.capacity_tokens is not None or options.curves
                else ", with --capacity-tokens for the first tier"
            )
        )
    if figures is not None:  # the reference LRU ran in the Spark task that holds the timeline
        sampling = figures.sampling
    elif options.curves and options.curve_sample_rate:
        if not model.uniform_block:
            raise _not_sampled()
        sampling = _sampled_curve(workload, model.uniform_block, options.capacities, options.curve_sample_rate)
    else:
        sampling = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zumik-curve") as pool:
        exact = options.curves and sampling is None
        curve: Future[list[Any]] | None
        if not exact:
            curve = None
        elif figures is not None and figures.curve is not None:
            curve = Future()
            curve.set_result(figures.curve)
        else:
            curve = _start_curve(con, workload, options.capacities, pool, model, tier2)
        _partials(con, has_content=bool(kinds[0]))
        con.execute(BREAKPOINT_SQL if kinds[1] else EMPTY_BREAKPOINTS_SQL)
        tier_hits = _capacity_hits(con, workload, options.capacity_tokens, model, tier2, figures)
        block_tokens = workload.block_tokens if figures is None else figures.block_tokens
        workload = _without_blocks(workload, curve)
        per_request = _per_request(con, dataset, int(n[0]))
        per_request.register(con, "stages")
        summary = _summarise(con, options, packs, workload, model, curve)
    if tier_hits is not None:
        summary["second_tier"] = _tiers(con, workload, per_request, tier_hits, options, summary)
    if sampling is not None:
        summary.update(_sampled_summary(sampling, block_tokens, summary["total_input_tokens"]["tokens"]))
    return Waterfall(summary=summary, per_request=per_request)


def _without_blocks(workload: Workload, curve: Future[Any] | None) -> Workload:
    """The workload less its time-ordered blocks (6 to 8 bytes a block, or their files) once the curve that reads
    them is done.

    What the waterfall does after the bounded candidate needs only the requests, and what comes next, DuckDB's
    sort of the per-request table into its file, takes up to its memory limit: waiting for the curve here gives up
    the curve's overlap with that query and keeps the blocks (180 MB at 1M Mooncake requests) out of the peak."""
    if curve is not None:
        wait([curve])
    # new empty arrays: an empty slice would keep the whole array it views
    return replace(workload, timeline=Timeline(np.empty(0, np.int32), np.empty(0, workload.timeline.sizes_dtype)))


def _tiers(
    con: duckdb.DuckDBPyConnection,
    workload: Workload,
    per_request: PerRequest,
    tier_hits: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    options: WaterfallOptions,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """The bounded candidate split by the tier that served it: each request's leading tokens up to what the pool
    itself held (in provider tokens) from the first tier, the rest from the second; all of it from the first where
    the second served nothing."""
    table = per_request.to_table(columns=["rid", "candidate"])
    order = {int(rid): i for i, rid in enumerate(table.column("rid").to_pylist())}
    candidate = np.nan_to_num(table.column("candidate").to_numpy(zero_copy_only=False).astype(np.float64))
    candidate = candidate[[order[int(rid)] for rid in workload.rids]].astype(np.int64)
    first_tier, second_tier = tier_hits
    held = provider_tokens(first_tier, _request_scales(con, workload))
    first = np.where(second_tier > 0, np.minimum(candidate, held), candidate)
    total = summary["total_input_tokens"]["tokens"]
    evidence = summary["candidate"]["evidence"]
    tiers = {"first": int(first.sum()), "second": int((candidate - first).sum())}
    return {
        "first_tier_capacity_tokens": options.capacity_tokens,
        "capacity_tokens": options.second_tier_tokens,
        **{f"{tier}_tier": _stage(tokens, total, evidence) for tier, tokens in tiers.items()},
        "requests_served_by_second_tier": int(((candidate - first) > 0).sum()),
        "evidence": evidence,
    }


def _not_sampled() -> ZumikError:
    return ZumikError(
        "a sampled curve (--curve-sample) is for hash-id traces of one block size, under a pack without vLLM's "
        "block pool: leave it out for this dataset, whose exact curve is computed"
    )


def _sampled_curve(
    workload: Workload, uniform_block: int, capacities: tuple[int | None, ...], rate: float
) -> shards.SampledCurve:
    """The curve from a spatial sample of the blocks, for hash-id traces of one block size (the large ones)."""
    from zumik_cli.analysis import shards

    return shards.sampled_curve(workload.offsets, workload.units, workload.sizes, list(capacities), rate, uniform_block)


def _sampled_summary(sampling: shards.SampledCurve, block_tokens: int, total: int) -> dict[str, Any]:
    """The sampled curve's points as the exact curve's (a share of all input tokens), with its rate and bound."""
    scale = block_tokens / total if total else 0.0
    points = [{"capacity_tokens": cap, "rate": round(min(ratio * scale, 1.0), 6)} for cap, ratio in sampling.points]
    info = sampling.to_json()
    info["error_bound"] = round(max(sampling.bounds, default=0.0) * scale, 6)
    info["point_bounds"] = [round(b * scale, 6) for b in sampling.bounds]
    return {"capacity_curve": points, "capacity_curve_sampling": info}


LevelsPass = Callable[[duckdb.DuckDBPyConnection, bool, list[str]], tuple["Workload", LruFigures | None]]


def _levels_engine(options: WaterfallOptions, lru: LruJob | None) -> LevelsPass:
    """Where the levels pass runs; every step after it is the same for both engines. On Spark the blocks stay on the
    executors: the reference LRU's figures (``lru``) come back computed there, and the driver's workload holds only
    the requests."""
    if options.engine == "spark":
        from zumik_cli.analysis.spark_levels import compute_levels_spark

        return lambda con, coincide, parts: compute_levels_spark(
            con, coincide, parts, lru, _lru_requests(con) if lru is not None else None
        )
    from zumik_cli.analysis.levels import compute_levels

    return lambda con, coincide, parts: (compute_levels(con, coincide, parts), None)


def _lru_requests(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Every request's order, rid and scale to provider tokens (with its unlogged prefix): what a Spark task needs,
    beside the blocks, to compute the reference LRU's figures as the embedded engine does."""
    return con.sql(
        f"SELECT r.ord, r.rid, {REQUEST_SCALE_SQL} AS scale, r.prefix FROM req r ORDER BY r.ord"
    ).to_arrow_table()


@contextlib.contextmanager
def _one_thread(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    threads = int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
    con.execute("SET threads = 1")
    try:
        yield
    finally:
        con.execute(f"SET threads = {threads}")


def _per_request(con: duckdb.DuckDBPyConnection, dataset: Dataset, requests: int) -> PerRequest:
    """The per-request table (``sql/stages.sql``), written by DuckDB to a Parquet file in ``ord`` order: DuckDB sorts
    and writes in bounded memory, and nothing after it holds the whole table (300 MB a million requests as Arrow)."""
    con.execute(_sql("per_request.sql"))
    rows = PerRequest()
    query = _sql("stages.sql").replace("$over_tolerance", str(OVER_REALIZED_TOLERANCE))
    if rows.write(con, query) != requests:
        raise ZumikError(f"the dataset at {dataset.root} changed while the waterfall read it: run the command again")
    return rows


def _stage(tokens: int | None, total: int, evidence: str) -> dict[str, Any]:
    """One waterfall bar; ``None`` tokens means the trace cannot say (never shown as zero)."""
    if tokens is None:
        return {"tokens": None, "rate": None, "evidence": evidence}
    return {"tokens": int(tokens), "rate": round(tokens / total, 6) if total else 0.0, "evidence": evidence}


TOTALS_SQL = """
SELECT count(*) AS requests,
       sum(total) AS total,
       sum(eligible) AS eligible,
       sum(candidate) AS candidate,
       sum(realized) AS realized,
       sum(missed) AS missed,
       sum(CASE WHEN realized IS NOT NULL THEN candidate END) AS candidate_known,
       count(*) FILTER (WHERE over_realized > over_tolerance) AS over_requests,
       sum(over_realized) FILTER (WHERE over_realized > over_tolerance) AS over_tokens,
       count(*) FILTER (WHERE over_realized > 0 AND over_realized <= over_tolerance) AS over_within_requests,
       sum(over_realized) FILTER (WHERE over_realized > 0 AND over_realized <= over_tolerance) AS over_within_tokens,
       count(*) FILTER (WHERE usage_only) AS usage_only,
       sum(total) FILTER (WHERE usage_only) AS usage_only_tokens,
       count(*) FILTER (WHERE realized IS NULL) AS realized_unknown,
       count(*) FILTER (WHERE reported IS NULL) AS unreported,
       bool_or(hashid) AS any_hashid,
       bool_or(scaled) AS any_scaled,
       bool_or(NOT tokenizer_exact AND NOT hashid) AS any_proxy,
       count(*) FILTER (WHERE ts IS NULL) AS no_time, min(ts) AS first_ts, max(ts) AS last_ts,
       sum(coalesce(writes, 0)) AS writes,
       count(*) FILTER (WHERE writes IS NOT NULL) AS writes_known,
       sum(same_target) AS same_target, sum(same_key) AS same_key, sum(warm) AS warm,
       sum(above_minimum) AS above_minimum, sum(granular) AS granular,
       sum(candidate_ttl_300) AS ttl300, sum(candidate_ttl_3600) AS ttl3600,
       avg(eligible / nullif(total, 0)) AS rw_eligible,
       avg(candidate / nullif(total, 0)) AS rw_candidate,
       avg(realized / nullif(total, 0)) AS rw_realized,
       avg(missed / nullif(total, 0)) AS rw_missed
FROM stages
"""

CAUSES_SQL = """
SELECT cause, sum(tokens) AS tokens, count(*) FILTER (WHERE tokens > 0) AS requests FROM (
    SELECT 'other_model' AS cause, eligible - same_target AS tokens FROM stages
    UNION ALL SELECT 'other_tenant', same_target - same_key FROM stages
    UNION ALL SELECT 'expired', same_key - warm FROM stages
    UNION ALL SELECT 'below_minimum', warm - above_minimum FROM stages
    UNION ALL SELECT 'granularity', above_minimum - granular FROM stages
    UNION ALL SELECT 'evicted', granular - candidate FROM stages
) GROUP BY cause
"""

PROVIDER_CAUSES_SQL = """
SELECT coalesce(nullif(miss_reason, ''), 'provider_miss_unexplained') AS cause, sum(missed) AS tokens,
       count(*) AS requests
FROM stages WHERE missed > 0 GROUP BY ALL ORDER BY tokens DESC, cause
"""

UNLOGGED_PREFIX_SQL = f"""
SELECT {SESSION_LABEL} AS session, source_path AS source, max(unlogged_prefix_tokens) AS tokens, count(*) AS calls
FROM requests WHERE unlogged_prefix_tokens IS NOT NULL GROUP BY ALL ORDER BY session, source
"""

BREAKDOWN_SQL = """
SELECT {key} AS key{also}, count(*) AS requests, sum(total) AS total, sum(eligible) AS eligible,
       sum(candidate) AS candidate, sum(realized) AS realized, sum(missed) AS missed
FROM stages GROUP BY ALL ORDER BY missed DESC NULLS LAST, total DESC, key LIMIT ?
"""

BREAKDOWN_KEYS = {
    "model": "model",
    "alias": "alias",
    "release": "alias_release",
    "tenant": "tenant",
    # a session is its tenant's: shown as "tenant / session" and grouped by both, so two tenants never merge
    "session": SESSION_LABEL,
    "day": "CASE WHEN ts IS NULL THEN '' ELSE strftime(to_timestamp(ts), '%Y-%m-%d') END",
    "provider": "provider",
    "rules": "pack",
}
BREAKDOWN_ALSO = {"session": ", tenant, session_id"}


# One row per pack, model, write TTL and day (prices are dated): the tokens each part of the bill is made of.
MONEY_SQL = """
SELECT s.pack, s.model, s.write_ttl,
       CASE WHEN s.ts IS NOT NULL THEN strftime(to_timestamp(s.ts), '%Y-%m-%d') END AS day,
       count(*) AS requests, sum(s.total) AS total, sum(coalesce(s.realized, 0)) AS realized,
       sum(coalesce(s.writes, 0)) AS writes, sum(coalesce(s.missed, 0)) AS missed,
       sum(coalesce(o.output, 0)) AS output, count(*) FILTER (WHERE o.output IS NULL) AS output_unknown
FROM stages s LEFT JOIN (SELECT rid, output_tokens_reported AS output FROM requests) o USING (rid)
GROUP BY ALL ORDER BY ALL
"""

MONEY_FIGURES = (
    "billed",
    "billed_input",
    "billed_output",
    "without_cache",
    "realized_savings",
    "missed_savings",
    "cache_write_cost",
)


def _money(con: duckdb.DuckDBPyConnection, packs: dict[str, RulesPack]) -> dict[str, Any]:
    """The recorded traffic at list prices (``rules.prices.price``), by the pack each request was judged under."""
    totals = dict.fromkeys(MONEY_FIGURES, 0.0)
    priced = output_unknown = 0
    unpriced: dict[str, int] = {}
    dates = set()
    for name, model, write_ttl, day, n, total, realized, writes, missed, output, no_output in con.execute(
        MONEY_SQL
    ).fetchall():
        pack, model = packs[name], model or ""
        written = Tokens(cache_write_1h=writes) if write_ttl == "1h" else Tokens(cache_write_5m=writes)
        uncached = max(total - realized - writes, 0)
        billed = price(
            pack,
            model,
            Tokens(uncached, realized, written.cache_write_5m, written.cache_write_1h, output),
            day,
        )
        if isinstance(billed, Unpriced):
            unpriced[billed.reason] = unpriced.get(billed.reason, 0) + n
            continue
        full = _cost(price(pack, model, Tokens(input=total, output=output), day))
        missed_full = _cost(price(pack, model, Tokens(input=missed), day))
        missed_read = _cost(price(pack, model, Tokens(cache_read=missed), day))
        priced += n
        output_unknown += no_output
        dates.add((pack.price_table(day) or pack.price_tables[-1]).effective_from or pack.prices_as_of)
        totals["billed"] += billed.billed_usd
        totals["billed_input"] += billed.billed_input_usd
        totals["billed_output"] += billed.output_usd
        totals["without_cache"] += full.billed_usd
        totals["realized_savings"] += full.billed_usd - billed.billed_usd
        totals["missed_savings"] += missed_full.billed_usd - missed_read.billed_usd
        totals["cache_write_cost"] += billed.cache_write_usd
    figures: dict[str, float | None] = {k: round(v, 6) if priced else None for k, v in totals.items()}
    return {
        "currency": "USD",
        **figures,
        "evidence": "estimated",
        "prices_as_of": ", ".join(sorted(d for d in dates if d)) or None,
        "unpriced_requests": sum(unpriced.values()),
        "unpriced": [{"reason": reason, "requests": count} for reason, count in sorted(unpriced.items())],
        "output_unknown_requests": output_unknown,
        "note": "list prices from the rules pack each request was judged under: billed is input (uncached at the "
        "input price, cache reads and writes at their multipliers, as reported) plus output tokens; without_cache "
        "is the same with every input token at the input price; requests without a list price are left out and "
        "counted as unpriced, with the reason",
    }


def _cost(cost: Cost | Unpriced) -> Cost:
    # the same pack and model priced once already: a second price cannot be missing
    return cost if isinstance(cost, Cost) else Cost()


def _summarise(
    con: duckdb.DuckDBPyConnection,
    options: WaterfallOptions,
    packs: dict[str, RulesPack],
    workload: Workload,
    model: CacheModel,
    curve: Future[list[tuple[int | None, int]]] | None = None,
) -> dict[str, Any]:
    cursor = con.execute(TOTALS_SQL)
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone() or (), strict=True))
    t = {k: (v or 0) for k, v in row.items()}
    total = int(t["total"])
    known = t["realized_unknown"] < t["requests"]
    content = t["usage_only"] < t["requests"]
    counted_evidence = "estimated" if t["any_hashid"] or t["any_proxy"] else "simulated"
    total_evidence = "measured" if t["unreported"] == 0 else weakest(["measured", counted_evidence])
    realized_evidence = "measured"
    missed_evidence = weakest([counted_evidence, realized_evidence])
    causes = []
    cause_rows = dict((c, (tok, req)) for c, tok, req in con.execute(CAUSES_SQL).fetchall())
    for cause in ("other_model", "other_tenant", "expired", "below_minimum", "granularity", "evicted"):
        tokens, requests = cause_rows.get(cause, (0, 0))
        causes.append(
            {
                "stage": "eligible->candidate",
                "cause": cause,
                "label": CAUSE_LABELS[cause],
                "tokens": int(tokens or 0),
                "requests": int(requests or 0),
                "evidence": counted_evidence,
            }
        )
    for cause, tokens, requests in con.execute(PROVIDER_CAUSES_SQL).fetchall():
        measured = cause != "provider_miss_unexplained"
        causes.append(
            {
                "stage": "candidate->realized",
                "cause": cause,
                "label": CAUSE_LABELS.get(cause, f"provider diagnostic: {cause}"),
                "tokens": int(tokens),
                "requests": int(requests),
                "evidence": "measured" if measured else missed_evidence,
            }
        )
    cannot = []
    if t["realized_unknown"]:
        cannot.append(
            {
                "row": "realized",
                "reason": f"{t['realized_unknown']} of {t['requests']} requests have no "
                "reported cache reads (unknown, not zero): realized and missed cover only the others",
            }
        )
    if t["usage_only"]:
        cannot.append(
            {
                "row": "eligible",
                "reason": f"{t['usage_only']} of {t['requests']} requests ({t['usage_only_tokens']:,} tokens) come "
                "from usage-only logs with no content to compare: eligible, candidate and missed cover only the "
                "others" + ("" if content else ", and there are none, so those rows are not computed"),
            }
        )
    if t["no_time"]:
        cannot.append(
            {
                "row": "candidate",
                "reason": f"{t['no_time']} requests have no timestamp: TTL expiry could "
                "not be applied to them (order taken from the log)",
            }
        )
    prefixes = [
        {
            "session": session,
            "source": source,
            "tokens": int(tokens),
            "calls": int(calls),
            "evidence": "estimated",
            "method": UNLOGGED_PREFIX_METHOD,
        }
        for session, source, tokens, calls in con.execute(UNLOGGED_PREFIX_SQL).fetchall()
    ]
    if prefixes:
        sizes = sorted(p["tokens"] for p in prefixes)
        cannot.append(
            {
                "row": "eligible",
                "reason": f"{len(prefixes)} sessions' logs leave out the system prompt and tool definitions: every "
                f"call of such a session starts with one estimated block for them ({sizes[0]:,} to {sizes[-1]:,} "
                "tokens a session, see unlogged_prefix), and only the rest of its prompt is scaled",
            }
        )
    if t["any_scaled"]:
        cannot.append(
            {
                "row": "eligible",
                "reason": "some tokens were counted with a proxy tokenizer and scaled to "
                "the provider's reported totals: those figures are estimated",
            }
        )
    by = list(options.by)
    breakdowns = {}
    for key in by:
        if key not in BREAKDOWN_KEYS:
            raise ZumikError(f"cannot break down by {key!r}: use one of {', '.join(BREAKDOWN_KEYS)}")
        cursor = con.execute(BREAKDOWN_SQL.format(key=BREAKDOWN_KEYS[key], also=BREAKDOWN_ALSO.get(key, "")), [1000])
        cols = [d[0] for d in cursor.description]
        breakdowns[key] = [dict(zip(cols, r, strict=True)) for r in cursor.fetchall()]
    used = [r[0] for r in con.execute("SELECT DISTINCT pack FROM req ORDER BY 1").fetchall()]
    rules = [
        {"name": p.name, "version": p.version, "effective_from": p.effective_from, "source": p.source}
        for p in (packs[name] for name in used)
    ]
    ttl_curve = [
        {"ttl_seconds": 300, "rate": round(t["ttl300"] / total, 6) if total else 0.0},
        {"ttl_seconds": 3600, "rate": round(t["ttl3600"] / total, 6) if total else 0.0},
        {"ttl_seconds": None, "rate": round(t["same_key"] / total, 6) if total else 0.0},
    ]
    capacity_curve = _curve(con, curve, total, model) if curve is not None else []
    return {
        "requests": int(t["requests"]),
        "period": {
            "first": _utc(row["first_ts"]),
            "last": _utc(row["last_ts"]),
            "requests_without_time": int(t["no_time"]),
        },
        "total_input_tokens": _stage(total, total, total_evidence),
        "eligible": _stage(t["eligible"] if content else None, total, counted_evidence),
        "candidate": _stage(t["candidate"] if content else None, total, counted_evidence),
        "realized": _stage(t["realized"] if known else None, total, realized_evidence),
        "missed": _stage(t["missed"] if known and content else None, total, missed_evidence),
        "request_weighted": {
            k: round(float(row[f"rw_{k}"]), 6) if row[f"rw_{k}"] is not None else None
            for k in ("eligible", "candidate", "realized", "missed")
        },
        "over_realized": {
            "requests": int(t["over_requests"]),
            "tokens": int(t["over_tokens"]),
            "evidence": missed_evidence,
            "explanation": "requests whose reported cache reads exceed zumik's candidate: the rules pack is "
            "stricter than the provider, the log misses an earlier request that warmed the cache, or a proxy "
            "tokenizer's scaling is off; shown, never hidden",
            "within_estimate_requests": int(t["over_within_requests"]),
            "within_estimate_tokens": int(t["over_within_tokens"]),
            "tolerance": f"on estimated rows, an excess of at most {OVER_REALIZED_TOLERANCE:.0%} of the request's "
            "input is rounding of the estimate and is counted apart (within_estimate_*)",
        },
        "cache_writes": {"tokens": int(t["writes"]), "evidence": "measured", "requests_known": int(t["writes_known"])},
        "cross_tenant_opportunity": {
            "tokens": int(t["same_target"] - t["same_key"]),
            "evidence": counted_evidence,
            "note": "prefix shared with another tenant on the same target; isolation forbids reuse, so it is never "
            "candidate",
        },
        "causes": causes,
        "money": _money(con, packs),
        "capacity_curve": capacity_curve,
        "kv_memory": memory(capacity_curve, kv_shape(options.kv_model, options.kv_dtype)) if options.kv_model else None,
        "ttl_sensitivity": ttl_curve,
        "breakdowns": breakdowns,
        "cannot_compute": cannot,
        "unlogged_prefix": prefixes,
        "rules": rules,
        "options": assumptions(options),
        "definitions": DEFINITIONS,
    }


def _utc(seconds: float | None) -> str | None:
    """A request time (Unix seconds) as an ISO 8601 UTC instant, to the second."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assumptions(options: WaterfallOptions) -> dict[str, Any]:
    """What the figures were computed under, as values and as the phrases every renderer shows.

    A run that forces a rules pack, adds pack files, overrides the TTL or bounds the cache is a what-if: its figures
    are not what happened under the recorded rules, and everything that shows them says so. The waterfall always
    follows the recorded routing decisions of every release (``simulate`` and ``replay`` are where a policy or a
    release is chosen)."""
    ttl: str | float = "none" if options.ttl_none else "pack" if options.ttl_seconds is None else options.ttl_seconds
    phrases = [f"rules pack {options.rules} for every request" if options.rules else "recorded rules"]
    if options.rules_files:
        phrases.append(f"rules packs added from {', '.join(options.rules_files)}")
    if ttl == "pack":
        phrases.append("pack TTLs")
    elif ttl == "none":
        phrases.append("no TTL expiry")
    else:
        phrases.append(f"TTL {ttl:,g} s for every request")
    cap = options.capacity_tokens
    phrases.append("unbounded cache" if cap is None else f"LRU cache of {cap:,} tokens")
    if options.second_tier_tokens is not None:
        phrases.append(f"a second tier of {options.second_tier_tokens:,} tokens behind it")
    return {
        "rules": options.rules,
        "rules_files": list(options.rules_files),
        "ttl_seconds": options.ttl_seconds,
        "ttl_none": options.ttl_none,
        "ttl": ttl,
        "capacity_tokens": cap,
        "second_tier_tokens": options.second_tier_tokens,
        "policy": "recorded",
        "release": None,
        "what_if": bool(
            options.rules or options.rules_files or ttl != "pack" or cap is not None or options.second_tier_tokens
        ),
        "assumptions": phrases,
    }
