"""Staging works on a local folder and on S3 (moto's server mode: a real HTTP S3 endpoint)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from load.staging_store import open_staging, parquet_bytes, read_parquet


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_parquet_chunks_round_trip(kind, tmp_path, request):
    if kind == "s3":
        store = open_staging(
            "s3://migration/runs/2026", endpoint_url=request.getfixturevalue("s3_endpoint")
        )
    else:
        store = open_staging(str(tmp_path / "staging"))
    batch = pa.record_batch(
        {"id": pa.array([1, 2], pa.int64()), "name": pa.array([b"Jos\xc3\xa9", b"Caf\xe9"])}
    )
    data, checksum = parquet_bytes(batch)
    store.put("bf-1/repo/scripts/chunk-000001.parquet", data)
    store.put("bf-1/repo/scripts/chunk-000001.parquet", data)  # idempotent overwrite
    assert store.exists("bf-1/repo/scripts/chunk-000001.parquet")
    assert not store.exists("bf-1/repo/scripts/chunk-000002.parquet")
    assert store.list("bf-1") == ["bf-1/repo/scripts/chunk-000001.parquet"]
    assert read_parquet(store, "bf-1/repo/scripts/chunk-000001.parquet").to_pylist() == [
        {"id": 1, "name": b"Jos\xc3\xa9"},
        {"id": 2, "name": b"Caf\xe9"},
    ]
    assert len(checksum) == 64
