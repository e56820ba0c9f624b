"""``zumik export``: a dataset as an anonymised Mooncake or Bailian hash-id trace (the core is ``export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zumik_cli.cli.options import DataOpt, JsonOpt, err, handles_errors, output_file, print_json


def export(
    to: Annotated[str, typer.Option("--to", help="Trace shape to write: mooncake or bailian.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write.")],
    data: DataOpt = Path("data/zumik"),
    block_size: Annotated[
        int | None, typer.Option("--block-size", help="Tokens per hash block (default: 512 mooncake, 16 bailian).")
    ] = None,
    salt: Annotated[
        str | None,
        typer.Option(
            "--salt", help="Secret that keys the block ids; the same salt gives the same ids (default: random)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export the dataset as salted, prefix-chained hash-id blocks with times and lengths, and no content."""
    from zumik_cli.dataset.export import export_trace
    from zumik_cli.dataset.store import Dataset

    with output_file(output) as target:
        summary = export_trace(Dataset(data), to, target, block_size=block_size, salt=salt)
    if as_json:
        print_json(summary.to_json())
    else:
        err.print(
            f"Wrote {summary.requests} requests ({summary.blocks} blocks of {summary.block_size} tokens, "
            f"{summary.unique_blocks} distinct) to {output}; eligible at that granularity: "
            f"{summary.eligible_tokens} of {summary.input_tokens} tokens"
        )
    skipped = summary.skipped_usage_only + summary.skipped_hashid
    if skipped:
        err.print(
            f"Skipped {skipped} requests without token ids ({summary.skipped_usage_only} usage-only, "
            f"{summary.skipped_hashid} hash-id)"
        )
    if salt is None:
        err.print(f"Salt (keep it to export again with the same ids): {summary.salt}")


def register(app: typer.Typer) -> None:
    """Add ``export`` to the app, with zumik's one-place error handling."""
    app.command()(handles_errors(export))
