"""Where a dataset or a trace lives: a local path, or a URI on object storage reached through ``pyarrow.fs``.

A local path stays a ``Path`` and keeps every guarantee of the local store. A URI (``s3://bucket/prefix``,
``gs://``, ``abfss://``, ``hdfs://``: whatever ``pyarrow.fs.FileSystem.from_uri`` knows) becomes a ``Remote``: the
file system pyarrow resolves for it, with credentials and endpoint from the standard environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_PROFILE``; Google's
and Azure's own), and the path inside it. A ``file://`` URI is a local path. Whatever the store refuses comes back
as one ``StorageError`` that says what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from zumik_cli.core.errors import StorageError

SUPPORTED = "local paths and s3://, gs://, abfss:// or hdfs:// URIs (the file systems of pyarrow.fs)"
CHUNK = 1 << 20


def is_uri(value: str | os.PathLike[str]) -> bool:
    """A URI names its scheme; a ``Path`` never holds ``://`` (it folds the double slash)."""
    return isinstance(value, str) and "://" in value


def local_or_uri(value: str | os.PathLike[str]) -> Path | str:
    """A local path (a ``file://`` URI too) as a ``Path``; any other URI as its text, without a trailing slash."""
    if not is_uri(value):
        return Path(value)
    text = str(value)
    if text.split("://", 1)[0].lower() == "file":
        return Path(unquote(urlparse(text).path))
    return text.rstrip("/")


def first_line(exc: BaseException, limit: int = 240) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return text[:limit]


def _has_credentials() -> bool:
    """Whether the standard AWS places name any credentials (an instance role is not visible from here)."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI")
    if any(os.environ.get(name) for name in (*names, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")):
        return True
    files = (os.environ.get("AWS_SHARED_CREDENTIALS_FILE"), os.environ.get("AWS_CONFIG_FILE"))
    return any(Path(f).expanduser().exists() for f in (*files, "~/.aws/credentials", "~/.aws/config") if f)


REFUSED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "AccessDenied", "Forbidden", "403")
UNREACHABLE = ("NETWORK_CONNECTION", "Couldn't connect", "curlCode", "Could not resolve", "Connection refused")


@contextlib.contextmanager
def storage_errors(uri: str) -> Iterator[None]:
    """Turn what the object store refused into one ``StorageError`` naming the URI and what to do."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise refused(uri, exc) from None


def refused(uri: str, exc: BaseException) -> StorageError:
    detail = first_line(exc)
    if "NO_SUCH_BUCKET" in detail or "NoSuchBucket" in detail:
        return StorageError(f"the bucket of {uri} does not exist ({detail}): create it, or check the URI")
    if any(word in detail for word in REFUSED):
        found = "" if _has_credentials() else "; none were found in the environment"
        return StorageError(
            f"{uri}: the object store refused the credentials ({detail}{found}): set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) to a key that may read and write there"
        )
    if any(word in detail for word in UNREACHABLE):
        return StorageError(
            f"cannot reach the object store for {uri} ({detail}): check AWS_ENDPOINT_URL (or the store's own "
            "endpoint setting) and the network"
        )
    return StorageError(f"{uri}: the object store failed ({detail}): check the URI and the credentials, then retry")


@dataclass(frozen=True)
class Remote:
    """A folder on object storage: ``uri`` as the user wrote it, ``fs`` and ``base`` (the path inside ``fs``)."""

    uri: str
    fs: Any  # pyarrow.fs.FileSystem
    base: str

    def path(self, relative: str = "") -> str:
        return f"{self.base}/{relative}" if relative else self.base

    def uri_of(self, relative: str) -> str:
        return f"{self.uri}/{relative}"

    def read(self, relative: str) -> bytes | None:
        """The object's bytes, or None where there is none."""
        import pyarrow.fs as pafs

        with storage_errors(self.uri_of(relative)):
            if self.fs.get_file_info(self.path(relative)).type != pafs.FileType.File:
                return None
            with self.fs.open_input_stream(self.path(relative)) as handle:
                return bytes(handle.read())

    def write(self, relative: str, data: bytes) -> None:
        """One PUT: readers see the whole object or the one before it, never part of it."""
        with storage_errors(self.uri_of(relative)), self.fs.open_output_stream(self.path(relative)) as handle:
            handle.write(data)

    def upload(self, local: Path, relative: str) -> None:
        with (
            local.open("rb") as source,  # a local file that cannot be read is the machine's fault, not the store's
            storage_errors(self.uri_of(relative)),
            self.fs.open_output_stream(self.path(relative)) as handle,
        ):
            for chunk in iter(lambda: source.read(CHUNK), b""):
                handle.write(chunk)

    def files(self, relative: str = "") -> list[Any]:
        """Every object under ``relative`` (recursively), as ``pyarrow.fs.FileInfo`` sorted by path."""
        import pyarrow.fs as pafs

        with storage_errors(self.uri_of(relative) if relative else self.uri):
            selector = pafs.FileSelector(self.path(relative), recursive=True, allow_not_found=True)
            infos = self.fs.get_file_info(selector)
        return sorted((info for info in infos if info.type == pafs.FileType.File), key=lambda info: info.path)

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError), storage_errors(self.uri_of(relative)):
            self.fs.delete_file(self.path(relative))

    def relative(self, path: str) -> str:
        """The path of an object of ``files`` relative to this folder."""
        return path[len(self.base) :].lstrip("/")


def remote(uri: str) -> Remote:
    """The file system and path of ``uri``; refuses an unknown scheme and a bucket that does not exist."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    uri = uri.rstrip("/")
    scheme = uri.split("://", 1)[0]
    try:
        fs, base = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise StorageError(
            f"{uri}: zumik cannot open a {scheme}:// URI ({first_line(exc)}): pass {SUPPORTED}"
        ) from None
    except OSError as exc:
        raise refused(uri, exc) from None
    base = base.rstrip("/")
    bucket = base.split("/", 1)[0]
    if scheme.lower() in ("s3", "gs", "gcs", "abfs", "abfss") and bucket:
        with storage_errors(uri):
            kind = fs.get_file_info(bucket).type
        if kind == pafs.FileType.NotFound:
            where = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
            at = f" at {where}" if where and scheme.lower() == "s3" else ""
            raise StorageError(
                f"the bucket {bucket!r} of {uri} does not exist{at}: create it, or check the URI"
                + (" and AWS_ENDPOINT_URL" if scheme.lower() == "s3" else "")
            )
    return Remote(uri, fs, base)


def download(fs: Any, path: str, uri: str, spool: Path) -> tuple[str, int, int]:
    """Copy one object to ``spool`` while digesting it: its SHA-256, size and number of lines."""
    h = hashlib.sha256()
    size = lines = 0
    with storage_errors(uri), fs.open_input_stream(path) as handle, spool.open("wb") as out:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
    return h.hexdigest(), size, lines


def parquet_files(paths: list[str], root: Remote | None, schema: Any = None) -> Any:
    """One Arrow dataset over Parquet files, local or on object storage (mixed, as a scenario mixes them), in the
    order given and read lazily. Columns of ``schema`` a file lacks read as nulls."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    local = pafs.LocalFileSystem()
    runs: list[tuple[Any, list[str]]] = []
    for path in paths:
        if root is not None and path.startswith(root.uri + "/"):
            fs, inner = root.fs, root.path(path[len(root.uri) + 1 :])
        elif is_uri(path):
            with storage_errors(path):
                fs, inner = pafs.FileSystem.from_uri(path)
        else:
            fs, inner = local, str(Path(path).absolute())
        if runs and runs[-1][0] is fs:
            runs[-1][1].append(inner)
        else:
            runs.append((fs, [inner]))
    uri = root.uri if root is not None else paths[0]
    with storage_errors(uri):
        first = ds.dataset(runs[0][1], filesystem=runs[0][0], format="parquet")
        unified = first.schema if schema is None else pa.unify_schemas([first.schema, schema])
        parts = [ds.dataset(files, filesystem=fs, format="parquet", schema=unified) for fs, files in runs]
    return parts[0] if len(parts) == 1 else ds.dataset(parts)
