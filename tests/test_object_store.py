"""A dataset and its inputs on object storage, against a real S3 endpoint (moto's server) on localhost.

One server serves the whole session; each test has a bucket of its own. Credentials and the endpoint come from
the standard AWS environment variables, as they would for a user. The server runs as a process of its own, as a
real endpoint would: moto's server is a Flask application, and Flask's proxies loaded into the test process break
libraries that inspect every loaded module (vLLM's CPU platform does, in the replay tests).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import runner

from zumik_cli.cli import app
from zumik_cli.core.errors import DatasetError
from zumik_cli.dataset import object_store
from zumik_cli.dataset.store import Dataset, publish_staged, read_manifest
from zumik_cli.ingest.pipeline import ingest

if importlib.util.find_spec("moto") is None:
    pytest.skip("moto is in the dev extra: pip install -e '.[dev]'", allow_module_level=True)
boto3 = pytest.importorskip("boto3")

SAMPLES = Path(__file__).parents[1] / "sample_traces"
TRACES = sorted(SAMPLES.glob("*.jsonl"))


@contextlib.contextmanager
def moto_server(**env: str) -> Iterator[str]:
    """moto's S3 server in a process of its own on a free local port (``env``: moto's settings), while the block
    runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not start ({' '.join(command)})") from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    """One S3-compatible HTTP endpoint on a free local port for the session."""
    with moto_server() as url:
        yield url


@pytest.fixture
def bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A new bucket, reached through the standard environment; the working folder is a scratch one, so that a
    URI read as a local path would leave its folder there and not in the checkout."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "zumik-test",
        "AWS_SECRET_ACCESS_KEY": "zumik-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    name = f"zumik-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def objects(bucket: str, prefix: str = "") -> dict[str, int]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


def stored_manifest(bucket: str, prefix: str) -> dict[str, Any]:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read()
    return dict(json.loads(body))


def upload_samples(bucket: str, prefix: str) -> None:
    for path in TRACES:
        boto3.client("s3").upload_file(str(path), bucket, f"{prefix}/{path.name}")


def cli(*args: str) -> Any:
    return runner().invoke(app, list(args))


def test_sample_traces_read_from_s3_into_a_dataset_on_s3_give_the_waterfall_of_a_local_dataset(
    bucket: str, tmp_path: Path
) -> None:
    upload_samples(bucket, "logs")
    ingested = cli("ingest", f"s3://{bucket}/logs/", "--data", f"s3://{bucket}/zumik", "--json")
    assert ingested.exit_code == 0, ingested.stderr
    summary = json.loads(ingested.stdout)
    assert summary["requests"] > 0
    assert summary["dataset"] == f"s3://{bucket}/zumik"
    manifest = stored_manifest(bucket, "zumik")
    assert manifest["generation"] == 1
    assert sorted(entry["path"] for entry in manifest["inputs"]) == [f"s3://{bucket}/logs/{p.name}" for p in TRACES]
    listed = {part for parts in manifest["parts"].values() for part in parts}
    assert {f"zumik/{part}" for part in listed} <= set(objects(bucket, "zumik/"))
    assert not (tmp_path / "s3:").exists()

    local = tmp_path / "local"
    assert cli("ingest", *map(str, TRACES), "--data", str(local)).exit_code == 0
    remote = cli("waterfall", "--data", f"s3://{bucket}/zumik", "--json")
    assert remote.exit_code == 0, remote.stderr
    assert remote.stdout == cli("waterfall", "--data", str(local), "--json").stdout


def test_diagnose_and_report_work_against_a_dataset_on_s3(bucket: str, tmp_path: Path) -> None:
    upload_samples(bucket, "logs")
    diagnosed = cli(
        "diagnose", f"s3://{bucket}/logs", "--data", f"s3://{bucket}/ds", "-o", str(tmp_path / "d.html"), "--json"
    )
    assert diagnosed.exit_code == 0, diagnosed.stderr
    assert json.loads(diagnosed.stdout)["ingest"]["dataset"] == f"s3://{bucket}/ds"
    assert stored_manifest(bucket, "ds")["generation"] == 1
    reported = cli("report", "--data", f"s3://{bucket}/ds", "-o", str(tmp_path / "r.html"))
    assert reported.exit_code == 0, reported.stderr
    assert "<html" in (tmp_path / "r.html").read_text()[:500].lower()


def test_a_second_ingest_publishes_the_next_generation_with_the_first_parts_still_listed(bucket: str) -> None:
    data = f"s3://{bucket}/ds"
    first = ingest([TRACES[0]], data)
    after_first = read_manifest(data)
    second = ingest([TRACES[1]], data)
    after_second = read_manifest(data)
    assert (after_first.generation, after_second.generation) == (1, 2)
    for table, parts in after_first.parts.items():
        assert set(parts) < set(after_second.parts[table])
    count = Dataset(data).connect().execute("SELECT count(*) FROM requests").fetchone()
    assert count == (first.requests + second.requests,)


def test_a_writer_that_fails_before_its_manifest_leaves_the_previous_snapshot_whole(bucket: str) -> None:
    data = f"s3://{bucket}/ds"
    ingest([TRACES[0]], data)
    before, stored = stored_manifest(bucket, "ds"), objects(bucket, "ds/")

    def interrupted(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest([TRACES[1]], data, progress=interrupted)
    assert stored_manifest(bucket, "ds") == before
    assert objects(bucket, "ds/") == stored
    assert Dataset(data).connect().execute("SELECT count(*) FROM requests").fetchone() == (
        sum(1 for line in TRACES[0].read_text().splitlines() if line.strip()),
    )


def test_a_writer_refuses_to_publish_when_another_published_after_it_read_the_manifest(
    bucket: str, tmp_path: Path
) -> None:
    data = f"s3://{bucket}/ds"
    ingest([TRACES[0]], data)
    stale = read_manifest(data)
    ingest([TRACES[1]], data)  # the other writer, publishing generation 2
    staging = tmp_path / "staging"
    (staging / "requests").mkdir(parents=True)
    (staging / "requests" / "part-late.parquet").write_bytes(b"not published")
    stale.parts["requests"].append("requests/part-late.parquet")
    with pytest.raises(DatasetError, match=r"another writer published .* \(generation 2\) .*run it again"):
        publish_staged(data, staging, ["requests/part-late.parquet"], stale)
    assert stored_manifest(bucket, "ds")["generation"] == 2
    assert "ds/requests/part-late.parquet" not in objects(bucket, "ds/")


def test_an_unlisted_part_is_kept_while_young_and_removed_by_a_later_publish_once_old(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = f"s3://{bucket}/ds"
    ingest([TRACES[0]], data)
    boto3.client("s3").put_object(Bucket=bucket, Key="ds/requests/part-dead.parquet", Body=b"a killed writer's")
    ingest([TRACES[1]], data)
    assert "ds/requests/part-dead.parquet" in objects(bucket, "ds/")  # it may be a writer's still uploading
    monkeypatch.setattr(object_store, "ORPHAN_AGE", 0.0)
    ingest([TRACES[1]], data)  # nothing new to read, but a publish all the same
    assert "ds/requests/part-dead.parquet" not in objects(bucket, "ds/")


def test_an_unsupported_scheme_is_one_error_line_naming_what_works(bucket: str) -> None:
    result = cli("waterfall", "--data", "ftp://example.org/ds")
    assert result.exit_code == 7
    assert result.stderr.startswith("Error: ftp://example.org/ds: zumik cannot open a ftp:// URI")
    assert "s3://" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_missing_bucket_is_one_error_line_saying_to_create_it(bucket: str) -> None:
    result = cli("ingest", str(TRACES[0]), "--data", f"s3://{bucket}-missing/ds")
    assert result.exit_code == 7
    assert f"the bucket '{bucket}-missing' of s3://{bucket}-missing/ds does not exist" in result.stderr
    assert "create it" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_empty_input_prefix_is_one_error_line(bucket: str) -> None:
    result = cli("ingest", f"s3://{bucket}/nothing/", "--data", f"s3://{bucket}/ds")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: s3://{bucket}/nothing holds no objects")


def test_the_s3_endpoint_leaves_no_flask_in_the_test_process(bucket: str) -> None:
    assert objects(bucket) == {}
    assert "flask" not in sys.modules  # its proxies break vLLM's start in the same process


def test_refused_credentials_are_one_error_line_naming_the_variables_to_set(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a server of its own that checks every request's key against its IAM users, as S3 does, once it has created
    # the bucket; it has no users, so the key below is refused
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="1") as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        boto3.client("s3").create_bucket(Bucket=bucket)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
        result = cli("waterfall", "--data", f"s3://{bucket}/ds")
    assert result.exit_code == 7
    assert "the object store refused the credentials" in result.stderr
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_file_uri_is_a_local_dataset_with_its_local_guarantees(tmp_path: Path) -> None:
    data = tmp_path / "ds"
    result = cli("ingest", f"file://{SAMPLES}", "--data", f"file://{data}", "--json")
    assert result.exit_code == 0, result.stderr
    assert (data / "manifest.json").is_file() and (data / ".lock").exists()
    assert (
        cli("waterfall", "--data", f"file://{data}", "--json").stdout
        == cli("waterfall", "--data", str(data), "--json").stdout
    )


def test_a_writer_that_fails_while_uploading_deletes_what_it_uploaded_and_publishes_nothing(
    bucket: str, tmp_path: Path
) -> None:
    data = f"s3://{bucket}/ds"
    ingest([TRACES[0]], data)
    before, manifest = stored_manifest(bucket, "ds"), read_manifest(data)
    staging = tmp_path / "staging"
    (staging / "requests").mkdir(parents=True)
    (staging / "requests" / "part-a.parquet").write_bytes(b"uploaded first")
    parts = ["requests/part-a.parquet", "requests/part-b.parquet"]  # the second is gone when its turn comes
    manifest.parts["requests"].extend(parts)
    with pytest.raises(FileNotFoundError):
        publish_staged(data, staging, parts, manifest)
    assert stored_manifest(bucket, "ds") == before
    assert not {"ds/requests/part-a.parquet", "ds/requests/part-b.parquet"} & set(objects(bucket, "ds/"))
