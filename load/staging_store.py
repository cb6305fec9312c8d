"""Where staged Parquet chunks and manifests live: a local folder or S3.

``open_staging("s3://bucket/prefix", endpoint_url=...)`` talks to any
S3-compatible endpoint through boto3 (the tests use moto's server mode); any
other location is a local directory. Writes are whole-object and idempotent,
so a chunk re-staged after a crash simply replaces the earlier copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from runeshift.errors import ConfigError


class StagingStore(Protocol):
    @property
    def location(self) -> str: ...

    def put(self, path: str, data: bytes) -> None: ...
    def get(self, path: str) -> bytes: ...
    def exists(self, path: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...


@dataclass
class LocalStaging:
    root: Path

    @property
    def location(self) -> str:
        return str(self.root)

    def _path(self, path: str) -> Path:
        return self.root / path

    def put(self, path: str, data: bytes) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def get(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())


@dataclass
class S3Staging:
    bucket: str
    prefix: str
    client: Any

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, path: str) -> str:
        return f"{self.prefix.rstrip('/')}/{path}" if self.prefix else path

    def put(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(path), Body=data)

    def get(self, path: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(path))["Body"].read()
        return body

    def exists(self, path: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(path))
        except ClientError:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self._key(""))
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)


def open_staging(location: str, *, endpoint_url: str = "") -> StagingStore:
    """The store for a setting value: ``s3://bucket/prefix`` or a local path."""
    if location.startswith("s3://"):
        import boto3

        bucket, _, prefix = location[5:].partition("/")
        if not bucket:
            raise ConfigError(
                f"staging location {location!r} has no bucket; use s3://bucket/prefix"
            )
        client = boto3.client("s3", endpoint_url=endpoint_url or None)
        return S3Staging(bucket, prefix.strip("/"), client)
    if "://" in location:
        raise ConfigError(f"staging location {location!r}: use a local path or s3://bucket/prefix")
    return LocalStaging(Path(location))


def parquet_bytes(batch: pa.RecordBatch | pa.Table) -> tuple[bytes, str]:
    """Serialise to Parquet (zstd); returns the bytes and their sha256.

    Without dictionary pages: for a chunk of 15,000 licenses they made the write about 60%
    slower (13-16 ms against 8-10 ms, on the backfill's reader thread) and the file 35%
    larger, the keys and timestamps being nearly all distinct.
    """
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=False)
    data = sink.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def read_parquet(store: StagingStore, path: str) -> pa.Table:
    return pq.read_table(io.BytesIO(store.get(path)))


def put_json(store: StagingStore, path: str, payload: dict[str, Any]) -> None:
    store.put(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())
