"""Inputs, run folder and output on S3: a real S3-compatible server (moto) on loopback.

The server is moto's standalone HTTP server, started per module on a free port. Nothing here
talks to AWS: the endpoint, region and credentials are passed as storage options.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_corpus import LOCAL, files_under, log_lines, split_pool
from moto_s3 import CREDENTIALS, running_moto_server

from datafilter import api
from datafilter.config import RunConfig
from datafilter.errors import DatafilterError, RunLockedError
from datafilter.io import storage
from datafilter.io.atomic import parquet_writer, write_table
from datafilter.io.storage import ObjectPath, location
from datafilter.stages.run import run_config as run

pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")



@pytest.fixture(scope="module")
def s3_server():
    """A moto S3 server on 127.0.0.1; yields (its process, its endpoint URL)."""
    try:
        with running_moto_server() as found:
            yield found
    finally:
        storage.configure(None)


def _client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def bucket(s3_server, request) -> str:
    """A fresh bucket per test, and storage options pointing at the server."""
    _, endpoint = s3_server
    name = request.node.name.replace("_", "-").lower()[:50]
    _client(endpoint).create_bucket(Bucket=name)
    storage.configure({"s3": {"endpoint_override": endpoint, **CREDENTIALS}})
    yield name
    storage.configure(None)


def _upload_folder(local: Path, target: str) -> None:
    for path in sorted(local.rglob("*.parquet")):
        location(f"{target}/{path.relative_to(local).as_posix()}").upload(path)


def _objects(prefix: str) -> dict[str, bytes]:
    root = location(prefix)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")}


def _config(input_: str, run_dir: str, output: str, model: Path, endpoint: str | None, executor):
    storage_section = {"s3": {"endpoint_override": endpoint, **CREDENTIALS}} if endpoint else {}
    return RunConfig.model_validate(
        {
            "input": input_,
            "run_dir": run_dir,
            "score": {"scorer": "kenlm", "options": {"model": str(model)}, "id_column": "id"},
            "thresholds": {"group_by": [None, "domain"]},
            "select": {
                "output": output,
                "options": {"criterion": "medium", "keep": 0.5},
                "group_by": "domain",
            },
            "ray": {"executor": executor},
            "storage": storage_section,
        }
    )


def test_object_path_names_and_listing(bucket, tmp_path):
    root = location(f"s3://{bucket}/data")
    assert isinstance(root, ObjectPath) and str(root) == f"s3://{bucket}/data"
    assert str(root / "a/b.parquet") == f"s3://{bucket}/data/a/b.parquet"
    assert (root / "a/b.parquet").parent == root / "a"
    assert not root.exists() and not root.is_dir()
    local = tmp_path / "x.txt"
    local.write_text("hello")
    (root / "a/x.txt").upload(local)
    assert (root / "a/x.txt").read_text() == "hello"
    assert (root / "a/x.txt").stat().st_size == 5
    assert root.is_dir() and [p.name for p in root.rglob("*.txt")] == ["x.txt"]
    with pytest.raises(FileNotFoundError):
        (root / "missing.json").read_text()
    assert storage.is_within(root / "a", root) and not storage.is_within(root, tmp_path)


def test_a_failed_write_leaves_no_object(bucket):
    """Objects are uploaded only once written completely: a writer that fails leaves nothing,
    and a rewrite replaces the old object whole."""
    target = location(f"s3://{bucket}/out/part.parquet")
    table = pa.table({"x": list(range(1000))})
    with pytest.raises(RuntimeError), parquet_writer(target, table.schema) as writer:
        writer.write_table(table)
        raise RuntimeError("killed mid-shard")
    assert not target.exists() and not target.parent.is_dir()
    write_table(target, table)
    write_table(target, table.slice(0, 10))
    with target.open_input_file() as source:
        assert pq.read_table(source).num_rows == 10


def test_pipeline_on_s3_gives_the_same_files_as_on_disk(
    bucket, s3_server, demo_corpus, kenlm_model_dir, tmp_path
):
    """Inputs, scores, thresholds and outputs on S3 (Ray actors read and write there): the same
    bytes as the same run on a local disk; a rerun resumes without rewriting anything."""
    _, endpoint = s3_server
    shards = tmp_path / "pool"
    split_pool(demo_corpus, shards, 3)
    _upload_folder(shards, f"s3://{bucket}/pool")
    local = _config(
        str(shards), str(tmp_path / "run"), str(tmp_path / "out"), kenlm_model_dir, None, "local"
    )
    remote = _config(
        f"s3://{bucket}/pool",
        f"s3://{bucket}/run",
        f"s3://{bucket}/out",
        kenlm_model_dir,
        endpoint,
        "ray",
    )
    local_result = run(local, progress=False)
    remote_result = run(remote, progress=False)
    assert remote_result["select"] == local_result["select"]
    assert remote_result["select"]["kept"] > 0

    def comparable(files: dict[str, bytes]) -> dict[str, bytes]:
        return {k: v for k, v in files.items() if k.endswith(".parquet")}

    local_out = files_under(tmp_path / "out")
    remote_out = _objects(f"s3://{bucket}/out")
    assert comparable(remote_out) == comparable(local_out)
    assert len(comparable(remote_out)) == 3
    local_run = comparable(files_under(tmp_path / "run"))
    remote_run = comparable(_objects(f"s3://{bucket}/run"))
    assert remote_run == local_run  # score shards and threshold tables
    manifest = json.loads(remote_out["manifest.json"])
    assert manifest["input"] == f"s3://{bucket}/pool"
    assert manifest["totals"] == json.loads(local_out["manifest.json"])["totals"]
    assert not location(f"s3://{bucket}/run/_state/lock").exists()  # released

    with log_lines() as messages:
        run(remote, progress=False)
    assert "score: 0 of 3 shards to score (3 done)" in messages
    assert "select: 0 of 3 shards to write (3 done)" in messages
    assert comparable(_objects(f"s3://{bucket}/out")) == comparable(remote_out)


def test_second_run_on_an_s3_folder_is_refused(bucket, demo_corpus, kenlm_model_dir, tmp_path):
    split_pool(demo_corpus, tmp_path / "pool", 1)
    _upload_folder(tmp_path / "pool", f"s3://{bucket}/pool")
    lock = location(f"s3://{bucket}/run/_state/lock")
    holder = tmp_path / "lock.json"
    holder.write_text(json.dumps({"host": "worker-7", "pid": 4242}))
    lock.upload(holder)
    with pytest.raises(RunLockedError, match=r"in use by another run \(host worker-7, pid 4242\)"):
        api.score(
            f"s3://{bucket}/pool",
            f"s3://{bucket}/run",
            options={"model": str(kenlm_model_dir)},
            runtime=LOCAL,
        )
    # A lock left by a dead process on this host is taken over.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    holder.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead)}))
    lock.upload(holder)
    summary = api.score(
        f"s3://{bucket}/pool",
        f"s3://{bucket}/run",
        options={"model": str(kenlm_model_dir)},
        runtime=LOCAL,
    )
    assert summary["failed_shards"] == [] and not lock.exists()


def test_bucket_becoming_unreachable_keeps_finished_shards(
    bucket, s3_server, demo_corpus, kenlm_model_dir, tmp_path
):
    """The server stops answering after the first shard: a clear error, the first shard's score
    file and completion record intact, and a rerun (server back) scores only the rest."""
    server, endpoint = s3_server
    storage.configure(
        {
            "s3": {
                "endpoint_override": endpoint,
                "request_timeout": 1,
                "connect_timeout": 1,
                **CREDENTIALS,
            }
        }
    )
    split_pool(demo_corpus, tmp_path / "pool", 3)
    _upload_folder(tmp_path / "pool", f"s3://{bucket}/pool")
    args = (f"s3://{bucket}/pool", f"s3://{bucket}/run")
    kwargs = {"options": {"model": str(kenlm_model_dir)}, "id_column": "id", "runtime": LOCAL}

    def stop_after_first_shard(message: str) -> None:
        if message.startswith("score: [1/3]"):
            server.send_signal(signal.SIGSTOP)

    try:
        with (
            pytest.raises((DatafilterError, OSError)) as failure,
            log_lines(stop_after_first_shard),
        ):
            api.score(*args, **kwargs)
    finally:
        server.send_signal(signal.SIGCONT)
    text = str(failure.value)
    assert "2 of 3 shards failed" in text, text
    for rel in ("part-00001.parquet", "part-00002.parquet"):
        assert f"{rel}: s3://{bucket}/pool/{rel}: cannot open on object storage" in text, text
    assert "Timeout" in text
    run_root = location(f"s3://{bucket}/run")
    done = [p.name for p in run_root.rglob("*.done.json")]
    assert done == ["part-00000.parquet.done.json"]
    first = pq.read_table((run_root / "scores/kenlm/part-00000.parquet").open_input_file())
    assert first.num_rows > 0

    with log_lines() as messages:
        api.score(*args, **kwargs)
    assert "score: 2 of 3 shards to score (1 done)" in messages
    assert len(list(run_root.rglob("*.done.json"))) == 3


def test_cli_reads_credentials_and_endpoint_from_the_environment(
    bucket, s3_server, demo_corpus, kenlm_model_dir, tmp_path
):
    """The CLI in a fresh process: endpoint and credentials from AWS_* variables only."""
    _, endpoint = s3_server
    split_pool(demo_corpus, tmp_path / "pool", 2)
    _upload_folder(tmp_path / "pool", f"s3://{bucket}/pool")
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    cli = [str(Path(sys.executable).parent / "datafilter"), "-q"]
    for command in (
        [
            "score",
            "--input",
            f"s3://{bucket}/pool",
            "--output",
            f"s3://{bucket}/run",
            "--model",
            str(kenlm_model_dir),
            "--id-column",
            "id",
            "--executor",
            "local",
        ],
        ["thresholds", "--run", f"s3://{bucket}/run", "--group-by", "domain"],
    ):
        done = subprocess.run(cli + command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["n_docs"] > 0 and len(summary["groups"]) > 1
    assert location(f"s3://{bucket}/run/thresholds/kenlm.by-domain.parquet").is_file()


def test_fsspec_filesystems_work_too(demo_corpus, kenlm_model_dir, tmp_path):
    """A scheme pyarrow does not know goes through fsspec: its in-memory filesystem here (one
    process, so the local executor)."""
    pytest.importorskip("fsspec")
    split_pool(demo_corpus, tmp_path / "pool", 2)
    _upload_folder(tmp_path / "pool", "memory://corpus/pool")
    summary = api.score(
        "memory://corpus/pool",
        "memory://corpus/run",
        options={"model": str(kenlm_model_dir)},
        runtime=LOCAL,
    )
    assert summary["shards"] == 2 and summary["failed_shards"] == []
    assert api.thresholds("memory://corpus/run", group_by="domain")["n_docs"] > 0
    assert len(location("memory://corpus/run").rglob("*.done.json")) == 2


def test_uri_with_options_is_refused():
    with pytest.raises(DatafilterError, match="storage: section"):
        location("s3://bucket/prefix?endpoint_override=x")
