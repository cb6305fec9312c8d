"""The binlog decoder hands the mapping engine exactly the snapshot reader's raw batches.

A generated legacy world (every quirk: latin1 mojibake bytes, zero dates, SETs, empty
ENUMs, DECIMALs, UNSIGNED BIGINTs, MEDIUMTEXT logs, PHP blobs) is loaded while we record
the binlog; each table's insert events, decoded, must equal the snapshot reader's chunk of
the same rows and columns, value for value and type for type.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from extract.binlog_reader import BinlogReader
from extract.binlog_row_decoder import RowDecoder, raw_value, set_members
from extract.mysql_source_schema import SourceColumn
from extract.snapshot_reader import SnapshotReader
from runeshift.sample.legacy_world import generate_legacy_world
from tests.extract.binlog_positions import master_position

FORUMS, REPO = "dec_forums", "dec_repo"


def test_binlog_batches_equal_snapshot_batches(mysql_url):
    start = master_position(mysql_url)
    generate_legacy_world(mysql_url, scale=0.2, seed=11, forums_db=FORUMS, repo_db=REPO)
    end = master_position(mysql_url)
    for database in (FORUMS, REPO):
        snap = SnapshotReader(mysql_url + database, database)
        snap.open()
        decoders = {
            name: RowDecoder(t, [c.name for c in t.columns])
            for name, t in snap.tables.items()
            if t.primary_key
        }
        reader = BinlogReader(
            database,
            mysql_url + database,
            database,
            decoders,
            heartbeat_table="runeshift_heartbeat",
            server_id=4000 + len(database),
            stop=lambda: False,
        )
        rows: dict[str, list] = {name: [] for name in decoders}
        for txn in reader.transactions(start):
            for change in txn.changes:
                assert change.kind == "insert"
                rows[change.table].append(change.after)
            if (txn.position.file, txn.position.position) >= (end.file, end.position):
                break
        compared = 0
        for name, decoder in decoders.items():
            table = snap.tables[name]
            snapshot = pa.Table.from_batches(
                [c.batch for c in snap.chunks(table, list(decoder.columns), chunk_rows=100_000)]
            )
            binlog = pa.Table.from_batches([decoder.batch(rows[name])])
            key = [(k, "ascending") for k in table.primary_key]
            binlog = binlog.sort_by(key)
            snapshot = snapshot.sort_by(key).select(binlog.column_names)
            assert binlog.schema == snapshot.schema, name
            assert binlog.num_rows == snapshot.num_rows > 0, name
            assert binlog.equals(snapshot), name
            compared += 1
        snap.close()
        assert compared >= 3


@pytest.mark.parametrize(
    ("data_type", "column_type", "value", "none_source", "expected"),
    [
        ("datetime", "datetime", None, "out of datetime2 range", b"0000-00-00 00:00:00"),
        ("datetime", "datetime", None, "null", None),
        (
            "timestamp",
            "timestamp",
            __import__("datetime").datetime(1970, 1, 1),
            None,
            b"0000-00-00 00:00:00",
        ),
        ("decimal", "decimal(8,2)", __import__("decimal").Decimal("0.00"), None, b"0.00"),
        ("decimal", "decimal(8,2)", __import__("decimal").Decimal("-12.50"), None, b"-12.50"),
        ("varchar", "varchar(10)", "Jos\u00c3\u00a9", None, b"Jos\xc3\xa9"),
        ("varchar", "varchar(10)", "\u0081", None, b"\x81"),
        ("enum", "enum('a','b')", "", None, b""),
        ("set", "set('a','b')", None, "empty set", b""),
        ("bigint", "bigint(20) unsigned", 2**64 - 1, None, b"18446744073709551615"),
    ],
    ids=[
        "zero-datetime",
        "null-datetime",
        "zero-timestamp",
        "decimal-zero",
        "decimal-negative",
        "latin1-mojibake-bytes",
        "cp1252-undefined-byte",
        "invalid-enum",
        "empty-set",
        "unsigned-bigint",
    ],
)
def test_raw_value(data_type, column_type, value, none_source, expected):
    column = SourceColumn("c", data_type, column_type, "latin1", True)
    assert raw_value(column, value, none_source) == expected


def test_set_members_keep_definition_order():
    assert set_members("set('f2p','p2p','aio')") == ("f2p", "p2p", "aio")
