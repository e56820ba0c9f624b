"""Images and documents in prompts: counted by each provider's published rule, matched by their bytes."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from zumik_cli.analysis.media import media_share
from zumik_cli.analysis.waterfall import WaterfallOptions, compute_waterfall
from zumik_cli.core.media import from_base64
from zumik_cli.dataset.store import Dataset
from zumik_cli.diagnosis.divergence import compute_divergence
from zumik_cli.ingest.pipeline import ingest
from zumik_cli.rules import load_packs


def picture(width: int, height: int, fmt: str = "PNG", shade: int = 0) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (shade % 256, 40, 90)).save(out, format=fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rule(pack: str) -> Any:
    return load_packs()[pack].media


@pytest.mark.parametrize(
    ("pack", "width", "height", "detail", "tokens"),
    [
        # Anthropic's vision guide: tokens = width x height / 750 (its table: 200x200 ~54, 1000x1000 ~1334)
        ("anthropic", 200, 200, "", 54),
        ("anthropic", 1000, 1000, "", 1334),
        # long edge to 1568, then at most ~1.15 megapixels: 3000x1500 -> 1516x758 -> 1,149,128 px
        ("anthropic", 3000, 1500, "", 1533),
        # OpenAI's worked examples: 1024x1024 high is 765; 2048x4096 high is 1105; low is always 85
        ("openai", 1024, 1024, "high", 765),
        ("openai", 2048, 4096, "high", 1105),
        ("openai", 4096, 8192, "low", 85),
        # Gemini: 258 up to 384 px on both sides, else 258 per 768x768 tile
        ("gemini", 384, 300, "", 258),
        ("gemini", 1280, 800, "", 4 * 258),
    ],
)
def test_each_provider_counts_an_image_by_its_published_rule(
    pack: str, width: int, height: int, detail: str, tokens: int
) -> None:
    media = from_base64(b64(picture(width, height)), "image/png", detail)
    assert (media.width, media.height, media.format) == (width, height, "PNG")
    assert rule(pack).tokens(media) == tokens


@pytest.mark.parametrize(
    ("model", "width", "height", "detail", "tokens"),
    [
        # OpenAI's patch rule: ceil(w/32) x ceil(h/32) patches times the model's multiplier, rounded up; the
        # gpt-5-mini figures are usage measured on the API (1.2 a patch, as the pricing page's calculator says)
        ("gpt-5-mini", 256, 256, "high", 77),
        ("gpt-5-mini-2025-08-07", 1024, 1024, "high", 1229),
        ("gpt-5-mini", 2048, 768, "low", 1844),
        ("gpt-4.1-nano", 540, 360, "auto", 502),
        # over 1536 patches the image shrinks by the guide's algorithm: 4000x1474 is 2348 on gpt-4.1-mini, the
        # figure of OpenAI's own calculator
        ("gpt-4.1-mini", 4000, 1474, "high", 2348),
        # a model billed by tiles is not affected
        ("gpt-4o", 1024, 1024, "high", 765),
    ],
)
def test_openai_models_billed_by_patches_count_patches_times_their_multiplier(
    model: str, width: int, height: int, detail: str, tokens: int
) -> None:
    media = from_base64(b64(picture(width, height)), "image/png", detail)
    assert rule("openai").tokens(media, model) == tokens


def test_the_packs_say_which_unknown_size_figures_are_nominal_estimates() -> None:
    for name in ("anthropic", "openai", "gemini"):
        assert "Nominal estimate" in rule(name).nominal
        assert rule(name).describe()["nominal"] == rule(name).nominal


def test_an_image_in_url_safe_base64_is_sized_as_googles_sdks_send_it() -> None:
    # the Google GenAI SDK writes inlineData.data in the URL-safe alphabet without padding (as recorded in
    # pydantic-ai's Gemini cassettes); the standard decoder drops "-" and "_" and reads garbage
    image = next(p for shade in range(64) if "/" in b64(p := picture(540, 360, "JPEG", shade)))
    url_safe = base64.urlsafe_b64encode(image).decode().rstrip("=")
    media = from_base64(url_safe, "image/jpeg")
    assert (media.width, media.height, media.format, media.problem) == (540, 360, "JPEG", "")
    assert media.sha256 == from_base64(b64(image), "image/jpeg").sha256


def test_every_image_rule_names_its_source_and_date() -> None:
    for name in ("anthropic", "openai", "gemini"):
        media = rule(name)
        assert media.source.startswith("https://") and media.as_of[:2] == "20"


def test_image_sizes_are_read_from_png_jpeg_gif_and_webp_headers() -> None:
    for fmt in ("PNG", "JPEG", "GIF", "WEBP"):
        media = from_base64(b64(picture(321, 123, fmt)), f"image/{fmt.lower()}")
        assert (media.width, media.height, media.format) == (321, 123, fmt)


# --- the four request shapes, ingested -------------------------------------------------------------------------

SHOT = picture(1280, 800)
OTHER = picture(1280, 800, shade=200)


def anthropic_call(images: list[bytes], n: int, session: str = "s1") -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": "What is on the screen now?"}]
    for image in images:
        content.append({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(image)}})
    return {
        "timestamp": f"2026-03-02T11:00:{n:02d}Z",
        "metadata": {"session_id": session},
        "request": {
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": content}],
        },
        "response": {
            "id": f"msg_{session}_{n}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "A window."}],
            "usage": {"input_tokens": 3000, "output_tokens": 3, "cache_read_input_tokens": 0},
        },
    }


def openai_chat_call(image: bytes, detail: str, n: int) -> dict[str, Any]:
    url = f"data:image/png;base64,{b64(image)}"
    return {
        "timestamp": f"2026-03-02T10:00:{n:02d}Z",
        "request": {
            "model": "gpt-4o",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe it."},
                        {"type": "image_url", "image_url": {"url": url, "detail": detail}},
                    ],
                }
            ],
        },
        "response": {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 1772445600 + n,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "A box."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 800, "completion_tokens": 3, "total_tokens": 803},
        },
    }


def responses_call(image: bytes, n: int) -> dict[str, Any]:
    return {
        "request": {
            "model": "gpt-4.1",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Describe it."},
                        {"type": "input_image", "image_url": f"data:image/jpeg;base64,{b64(image)}", "detail": "low"},
                    ],
                }
            ],
        },
        "response": {
            "id": f"resp_{n}",
            "object": "response",
            "created_at": 1772445600 + n,
            "model": "gpt-4.1",
            "output": [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A box."}]}
            ],
            "usage": {"input_tokens": 100, "output_tokens": 3, "total_tokens": 103},
        },
    }


def gemini_call(image: bytes, n: int) -> dict[str, Any]:
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "Describe it."}, {"inline_data": {"mime_type": "image/png", "data": b64(image)}}],
            }
        ]
    }
    return {
        "request_id": f"req-{n}",
        "request_created_at": f"2026-03-02T12:00:{n:02d}Z",
        "provider": "google",
        "model": "gemini-2.5-flash",
        "request_body": body,
        "response_body": {"usageMetadata": {"promptTokenCount": 1040, "candidatesTokenCount": 3}},
    }


def ingested(tmp_path: Path, records: list[dict[str, Any]], name: str = "calls.jsonl") -> Dataset:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ingest([path], tmp_path / "data")
    return Dataset(tmp_path / "data")


def media_blocks(dataset: Dataset) -> list[tuple[str, int, str]]:
    return (
        dataset.connect()
        .execute("SELECT kind, n_tokens, text FROM blocks WHERE kind = 'image' ORDER BY text")
        .fetchall()
    )


def test_an_anthropic_image_counts_its_pixel_area_and_never_its_base64(tmp_path: Path) -> None:
    dataset = ingested(tmp_path, [anthropic_call([SHOT], 1)])
    # 1280 x 800 / 750 = 1365.3, rounded up
    assert media_blocks(dataset) == [("image", 1366, "[image 1280x800 PNG, 1,366 tokens]")]
    texts = dataset.connect().execute("SELECT string_agg(text, '') FROM blocks").fetchone()[0]
    assert b64(SHOT)[:40] not in texts
    counted = dataset.connect().execute("SELECT prompt_tokens_counted FROM requests").fetchone()[0]
    assert 1366 < counted < 1366 + 50


def test_openai_chat_images_count_tiles_by_detail(tmp_path: Path) -> None:
    dataset = ingested(tmp_path, [openai_chat_call(SHOT, "high", 1), openai_chat_call(OTHER, "low", 2)])
    # high: 1280x800 -> short side 768 -> 1228x768 -> 3 x 2 tiles -> 85 + 6 x 170 = 1105; low: 85
    assert sorted(n for _, n, _ in media_blocks(dataset)) == [85, 1105]


def test_openai_responses_input_images_are_counted(tmp_path: Path) -> None:
    dataset = ingested(tmp_path, [responses_call(picture(640, 480, "JPEG"), 1)])
    assert media_blocks(dataset) == [("image", 85, "[image 640x480 JPEG, 85 tokens]")]


def test_gemini_inline_images_are_counted_per_tile(tmp_path: Path) -> None:
    dataset = ingested(tmp_path, [gemini_call(SHOT, 1)], "helicone.jsonl")
    assert media_blocks(dataset) == [("image", 1032, "[image 1280x800 PNG, 1,032 tokens]")]


def test_the_same_image_in_two_calls_is_one_shared_block(tmp_path: Path) -> None:
    dataset = ingested(tmp_path, [anthropic_call([SHOT], 1), anthropic_call([SHOT, OTHER], 2)])
    con = dataset.connect()
    assert con.execute("SELECT count(*) FROM blocks WHERE kind = 'image'").fetchone()[0] == 2
    shared = con.execute("""
        SELECT count(DISTINCT rb.rid) FROM request_blocks rb JOIN blocks b USING (block_id)
        WHERE b.text = '[image 1280x800 PNG, 1,366 tokens]'
    """).fetchone()[0]
    assert shared == 2
    # the second call's prefix chain runs through the first call's image
    chains = con.execute(
        "SELECT list(chain ORDER BY pos) FROM request_blocks GROUP BY rid ORDER BY min(rid)"
    ).fetchall()
    first, second = sorted((c[0] for c in chains), key=len)
    assert second[: len(first)] == first


def test_an_image_replays_as_a_run_of_stand_in_tokens_of_its_counted_length(tmp_path: Path) -> None:
    dataset = ingested(tmp_path, [anthropic_call([SHOT], 1)])
    ids = (
        dataset.connect()
        .execute("SELECT t.token_ids FROM tokens t JOIN blocks b USING (block_id) WHERE b.kind = 'image'")
        .fetchone()[0]
    )
    assert len(ids) == 1366 and len(set(ids)) > 100


def test_a_document_or_an_image_by_url_is_counted_as_unknown_size_and_marked_estimated(tmp_path: Path) -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Pages >>\n2 0 obj << /Type /Page >>\n3 0 obj << /Type /Page >>\n%%EOF"
    call = anthropic_call([], 1)
    call["request"]["messages"][0]["content"] += [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(pdf)}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/shot.png"}},
    ]
    path = tmp_path / "calls.jsonl"
    path.write_text(json.dumps(call) + "\n")
    summary = ingest([path], tmp_path / "data")
    con = Dataset(tmp_path / "data").connect()
    rows = con.execute(
        "SELECT kind, n_tokens, text FROM blocks WHERE kind IN ('image', 'document') ORDER BY kind"
    ).fetchall()
    assert rows == [
        ("document", 2 * 2250, "[document application/pdf, 2 pages, size unknown, about 4,500 tokens]"),
        ("image", 1534, "[image by reference unknown type, size unknown, about 1,534 tokens]"),
    ]
    assert con.execute("SELECT tokenizer_exact FROM requests").fetchone()[0] is False
    assert any("no size to read" in note for note in summary.notes)


# --- a computer-use session -------------------------------------------------------------------------------------


def computer_use_session() -> list[dict[str, Any]]:
    """Six calls of an agent that looks at the screen: each call resends the history and adds a screenshot; calls 4
    and 6 resend a history whose latest screenshot was retaken (the screen changed under it)."""
    screens = [picture(1280, 800, shade=10 * i) for i in range(8)]
    calls = []
    history: list[dict[str, Any]] = []
    for n in range(1, 7):
        if n in (4, 6):  # the screenshot the last call ended with is replaced by a fresh one
            history[-1] = _screenshot_turn(screens[n + 1], n - 1)
        history = [*history, _screenshot_turn(screens[n], n)]
        call = anthropic_call([], n, session="cu")
        call["request"]["messages"] = [m for turn in history for m in turn]
        call["request"]["messages"][-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
        calls.append(call)
    return calls


def _screenshot_turn(image: bytes, n: int) -> list[dict[str, Any]]:
    shot = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(image)}}
    return [
        {"role": "user", "content": [{"type": "text", "text": f"step {n}"}, shot]},
        {"role": "assistant", "content": [{"type": "text", "text": f"clicked {n}"}]},
    ]


def test_a_computer_use_session_shows_images_share_and_names_changed_screenshots(tmp_path: Path) -> None:
    dataset = ingested(tmp_path, computer_use_session())
    waterfall = compute_waterfall(dataset, WaterfallOptions(curves=False, capacities=()))
    share = media_share(dataset, waterfall)
    # six screenshots of 1,366 tokens are most of every prompt: of eligible and of missed (no cache read was
    # reported, so everything eligible under the pack was missed) they are the bulk
    assert share.of_eligible > 0.8 * share.eligible
    assert 0 < share.of_missed <= share.missed and share.of_missed > 0.8 * share.missed
    assert share.of_total > 0.8 * share.total
    divergence = compute_divergence(dataset, waterfall=waterfall)
    changed = [b for b in divergence.breaks if b.cause == "image_changed"]
    assert [b.index for b in changed] == [4, 6]
    assert all(b.detail["history"]["kind"] == "image" for b in changed)


def test_no_output_shows_an_images_base64_only_its_label(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from zumik_cli.cli import app

    records = computer_use_session()
    dataset = ingested(tmp_path, records)
    encoded = {
        part["source"]["data"][:32]
        for r in records
        for m in r["request"]["messages"]
        for part in m["content"]
        if isinstance(part, dict) and part.get("type") == "image"
    }
    runner = CliRunner()
    report = tmp_path / "report.html"
    outputs = [
        runner.invoke(app, ["report", "--data", str(dataset.root), "-o", str(report), "--include-text"]),
        runner.invoke(app, ["divergence", "--data", str(dataset.root), "--json"]),
        runner.invoke(app, ["requests", "--data", str(dataset.root), "--json"]),
        runner.invoke(app, ["waterfall", "--data", str(dataset.root), "--by", "session"]),
    ]
    assert all(result.exit_code == 0 for result in outputs), [r.stderr for r in outputs]
    shown = report.read_text() + "".join(r.stdout + r.stderr for r in outputs)
    assert encoded and not any(piece in shown for piece in encoded)
    divergence = json.loads(outputs[1].stdout)
    assert "[image 1280x800 PNG, 1,366 tokens]" in json.dumps(divergence) or "image_changed" in json.dumps(divergence)
