"""What every command shares: the two consoles, the error translation, JSON output, progress and options.

Every ``ZumikError`` becomes a one-line ``Error: ...`` and its exit code here, in one place; so do a bad option
value (``ZumikGroup``), a fault of the machine (a full disk, a read-only folder: ``fault_line``) and a damaged
dataset part. Command modules import from here, never from each other, so that they register without cycles.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from typer.core import TyperGroup

from zumik_cli.cli import values
from zumik_cli.core.errors import DatasetError, InputError, ZumikError
from zumik_cli.core.redact import redact
from zumik_cli.core.storage import local_or_uri
from zumik_cli.render.terminal import tables as terminal

out = terminal.console()
err = terminal.console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def location(value: str | Path) -> Path:
    """A path, or a URI on object storage kept as written (``Path`` would fold its ``//``): the core takes both."""
    return local_or_uri(str(value))  # type: ignore[return-value]


DataOpt = Annotated[
    Path,
    typer.Option("--data", "-d", parser=location, help="Dataset folder or URI (Parquet + manifest.json)."),
]
DefinitionsOpt = Annotated[
    bool, typer.Option("--definitions", help="Also print what each waterfall stage counts, word for word.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout instead of tables.")]


def error_line(message: str) -> None:
    """The one line every failure prints on stderr; the message is the user's text, never markup."""
    err.print(f"[bold red]Error:[/] {escape(redact(message))}", highlight=False, markup=True)


def handles_errors(func: F) -> F:
    """Turn zumik's own errors, faults of the machine and damaged dataset parts into one line on stderr and a
    meaningful exit code; anything else is a bug in zumik and keeps its traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ZumikError as exc:
            error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            error_line(fault_line(exc))
            raise typer.Exit(DatasetError.exit_code if exc.errno == errno.ENOSPC else InputError.exit_code) from None
        except Exception as exc:
            line = damaged_part_line(exc)
            if line is None:
                raise
            error_line(line)
            raise typer.Exit(DatasetError.exit_code) from None

    return wrapper  # type: ignore[return-value]


# What the help shows for a value, in words: typer's default is the Python annotation (``<list[Path]>``, ``<bool>``).
TYPE_WORDS = {"Path": "PATH", "str": "TEXT", "int": "INTEGER", "float": "NUMBER"}


def _plain_help_types(command: Any) -> None:
    """Give every parameter of ``command`` and its subcommands a help type in words: its metavar when it has one,
    nothing for a flag, else the word for its type (``PATH...`` for several)."""
    for param in getattr(command, "params", ()):
        param.display_type_rich = functools.partial(_type_word, param)
    made = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = made(ctx)
        if option is not None:
            option.display_type_rich = functools.partial(_type_word, option)
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _plain_help_types(sub)


def _type_word(param: Any, ctx: Any = None) -> str | None:
    if getattr(param, "is_flag", False):
        return None
    if param.metavar and param.param_type_name == "option":
        return str(param.metavar)
    bare = param.bare_type() if hasattr(param, "bare_type") else ""
    inner = bare.removeprefix("list[").removesuffix("]")
    word = TYPE_WORDS.get(inner, inner.upper() or "VALUE")
    return f"{word}..." if param.nargs != 1 else word


FAULT_ADVICE = {
    errno.ENOSPC: "no space left on the disk: free some space and run again (nothing half-written was kept)",
    errno.EDQUOT: "the disk quota is used up: free some space and run again (nothing half-written was kept)",
    errno.EROFS: "the file system is read-only: pass a path on a writable disk",
    errno.EACCES: "permission denied: pass a path you may write, or change its permissions",
    errno.EPERM: "not permitted: pass a path you may write, or change its permissions",
    errno.EISDIR: "is a folder: pass a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: pass a folder",
    errno.EEXIST: "already exists as a file: pass a folder path, or remove the file",
    errno.ENOENT: "does not exist: check the path",
    errno.ENAMETOOLONG: "the name is too long: pass a shorter path",
    errno.ELOOP: "has too many levels of symbolic links: pass the real path",
}


def fault_line(exc: OSError) -> str:
    """What the machine refused, which path, and what to do, in one line."""
    advice = FAULT_ADVICE.get(exc.errno or 0, f"{exc.strerror or exc}: check the path and run again")
    path = exc.filename2 if exc.errno == errno.EXDEV else exc.filename
    return f"{path}: {advice}" if path is not None else f"{exc.strerror or exc}: {advice}"


def damaged_part_line(exc: Exception) -> str | None:
    """A dataset part that DuckDB or Arrow cannot read (cut short, overwritten, deleted) as one line, or None.

    Looked up in ``sys.modules`` so that a command which never loaded DuckDB does not load it to fail."""
    duckdb, arrow = sys.modules.get("duckdb"), sys.modules.get("pyarrow")
    damaged: tuple[type[BaseException], ...] = ()
    if duckdb is not None:
        damaged += (duckdb.IOException, duckdb.InvalidInputException)
    if arrow is not None:
        damaged += (arrow.ArrowInvalid, arrow.ArrowIOError)
    if not damaged or not isinstance(exc, damaged):
        return None
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return (
        f"a dataset part cannot be read ({first[:300]}): it is damaged or missing; ingest the traces again into "
        "a new folder with `zumik ingest`"
    )


class ZumikGroup(TyperGroup):
    """The root command: a usage error (an unknown option, a bad value) is one line too, naming the help to read.

    Click's own display prints the usage, a hint and a framed message over several lines; here the message keeps
    click's wording and the exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_help_types(self)

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.exit(exc.exit_code)  # the help is already printed
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            error_line(exc.format_message().replace("\n", " ") + where)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("Aborted.")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def progress_bar(label: str) -> tuple[Progress, Callable[[int, int], None]]:
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def waterfall_options(
    rules: str | None,
    ttl: float | None,
    capacity_tokens: int | None,
    by: list[str] | None,
    rules_file: list[Path] | None,
) -> Any:
    """The waterfall's options from the command line's (``ttl`` as ``values.duration`` parsed it)."""
    from zumik_cli.analysis.waterfall import WaterfallOptions

    unknown = [key for key in by or () if key not in BY_KEYS]
    if unknown:
        raise InputError(f"cannot break down by {unknown[0]!r}: use one of {', '.join(BY_KEYS)}")
    return WaterfallOptions(
        rules=rules,
        ttl_seconds=None if ttl is None or ttl == math.inf else ttl,
        ttl_none=ttl == math.inf,
        capacity_tokens=capacity_tokens,
        by=tuple(by or ()),
        rules_files=tuple(str(p) for p in rules_file or ()),
    )


# The waterfall's breakdown keys (analysis.waterfall.BREAKDOWN_KEYS, which a test keeps equal), named here so that
# `--help` needs no DuckDB.
BY_KEYS = ("model", "alias", "release", "tenant", "session", "day", "provider", "rules")

RulesOpt = Annotated[
    str | None, typer.Option("--rules", help="Force one rules pack for every request (see `zumik rules`).")
]
TtlOpt = Annotated[
    float | None,
    typer.Option(
        "--ttl",
        parser=values.duration,
        metavar="DURATION",
        help="Override the packs' TTL: 300 (seconds), 5m, 1h, or none for no expiry.",
    ),
]
CapOpt = Annotated[
    int | None,
    typer.Option(
        "--capacity-tokens",
        parser=values.size,
        metavar="TOKENS",
        help="LRU cache capacity in tokens: 1000000, 64k, 1M, 2G.",
    ),
]
SecondTierOpt = Annotated[
    int | None,
    typer.Option(
        "--second-tier-tokens",
        parser=values.size,
        metavar="TOKENS",
        help="A second cache tier (CPU memory or disk) behind each engine's KV cache, for --capacity-tokens and "
        "the curve under a pack with vLLM's eviction (--rules vllm): hits are shown per tier.",
    ),
]
ByOpt = Annotated[
    list[str] | None,
    typer.Option("--by", metavar="KEY", help=f"Break down by {', '.join(BY_KEYS)} (repeatable)."),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="duckdb (this machine) or spark (a Spark cluster: ZUMIK_SPARK_MASTER, default local[*]; needs "
        "pip install 'zumik[spark]' and Java 17). The figures are the same.",
    ),
]
RulesFileOpt = Annotated[
    list[Path] | None, typer.Option("--rules-file", metavar="FILE", help="Add a rules pack file of your own.")
]


def show_notes(notes: Iterable[str]) -> None:
    """What a library call reports without failing (a skipped optional part), as warnings on stderr."""
    for note in notes:
        err.print(f"[yellow]Note:[/] {escape(note)}", highlight=False)


def show_recommendations(console: Console, recommendations: list[dict[str, Any]]) -> None:
    from zumik_cli.diagnosis.diagnose import TOP_RECOMMENDATIONS
    from zumik_cli.render.terminal import diagnosis as terminal_diagnosis

    terminal_diagnosis.recommendations(console, {"recommendations": recommendations}, TOP_RECOMMENDATIONS)


def write_report_of(diagnosis: Any, path: Path, *, generated_at: str | None = None, include_text: bool = False) -> Path:
    """Write the HTML report of a diagnosis; the time is taken here, so that rendering stays deterministic."""
    from datetime import UTC, datetime

    from zumik_cli.render.report.page import ReportInputs, write_report

    when = generated_at or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with output_file(path) as target:
        write_report(ReportInputs.of(diagnosis, when, include_text=include_text), target)
    return path


NOT_FILES = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket"}


@contextlib.contextmanager
def output_file(path: Path) -> Iterator[Path]:
    """Where a command may write ``path`` the way it writes every file (a temporary file renamed over it) without
    replacing what is not a regular file: through a symbolic link to its target, into a device by copying
    (``-o /dev/null`` works, ``-o /dev/full`` fails as a full disk), and never over a folder, a FIFO or a socket."""
    real = Path(os.path.realpath(path))
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        yield real
        return
    except OSError as exc:
        raise InputError(fault_line(exc)) from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path} is a folder: pass the path of a file (in it or elsewhere)")
    kind = NOT_FILES.get(stat.S_IFMT(mode))
    if kind:
        raise InputError(f"{path} is {kind}, not a file: pass a file path")
    if stat.S_ISREG(mode):
        yield real
        return
    with tempfile.TemporaryDirectory(prefix="zumik-output-") as folder:
        staged = Path(folder) / real.name
        yield staged
        try:
            with staged.open("rb") as source, real.open("wb") as device:
                shutil.copyfileobj(source, device)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
