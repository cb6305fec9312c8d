"""What a legacy MySQL table looks like, and how its raw values become Arrow arrays.

The conversions implement decision 0001: values arrive from the server as the
bytes it stores (the reader sets ``character_set_results = binary``), and each
column becomes the Arrow type the decision names. Doing the conversion per
column with Arrow casts keeps per-row Python off the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_INT_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}
_TEXT_TYPES = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}
_BINARY_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "bit"}
_AS_STRING = {"decimal", "numeric", "datetime", "date", "timestamp", "time", "enum", "set", "json"}


@dataclass(frozen=True)
class SourceColumn:
    name: str
    data_type: str
    column_type: str
    charset: str | None
    nullable: bool

    @property
    def arrow_type(self) -> pa.DataType:
        if self.data_type in _INT_TYPES:
            if self.data_type == "bigint" and "unsigned" in self.column_type:
                return pa.uint64()
            return pa.int64()
        if self.data_type in ("float", "double", "real"):
            return pa.float64()
        if self.data_type in _TEXT_TYPES:
            return pa.binary() if self.charset == "latin1" else pa.string()
        if self.data_type in _BINARY_TYPES:
            return pa.binary()
        return pa.string()

    def signature(self) -> str:
        """What schema drift compares: the full column type, charset and nullability."""
        charset = f" {self.charset}" if self.charset else ""
        return f"{self.column_type}{charset}{'' if self.nullable else ' NOT NULL'}"


@dataclass(frozen=True)
class SourceTable:
    database: str
    name: str
    engine: str
    columns: tuple[SourceColumn, ...]
    primary_key: tuple[str, ...]
    avg_row_length: int

    def column(self, name: str) -> SourceColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def transactional(self) -> bool:
        return self.engine.lower() == "innodb"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_source_schema(cursor: Any, database: str) -> dict[str, SourceTable]:
    """Every base table of ``database`` with columns in ordinal order and its primary key."""
    cursor.execute(
        "SELECT TABLE_NAME, ENGINE, COALESCE(AVG_ROW_LENGTH, 0) FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
        (database,),
    )
    tables = {_text(r[0]): (_text(r[1]), int(r[2])) for r in cursor.fetchall()}
    cursor.execute(
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, IS_NULLABLE, "
        "COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
        "ORDER BY TABLE_NAME, ORDINAL_POSITION",
        (database,),
    )
    columns: dict[str, list[SourceColumn]] = {}
    for table, name, dtype, ctype, charset, nullable, _key in cursor.fetchall():
        columns.setdefault(_text(table), []).append(
            SourceColumn(
                _text(name),
                _text(dtype).lower(),
                _text(ctype).lower(),
                _text(charset) if charset is not None else None,
                _text(nullable) == "YES",
            )
        )
    cursor.execute(
        "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND INDEX_NAME = 'PRIMARY' ORDER BY TABLE_NAME, SEQ_IN_INDEX",
        (database,),
    )
    keys: dict[str, list[str]] = {}
    for table, name in cursor.fetchall():
        keys.setdefault(_text(table), []).append(_text(name))
    return {
        name: SourceTable(
            database, name, engine, tuple(columns.get(name, ())), tuple(keys.get(name, ())), avg
        )
        for name, (engine, avg) in tables.items()
    }


def column_to_arrow(
    column: SourceColumn, values: tuple[bytes | None, ...] | list[bytes | None]
) -> pa.Array:
    """Turn the raw bytes the server sent for one column into its decision-0001 Arrow array."""
    return typed_column(column, pa.array(values, pa.binary()))


def typed_column(column: SourceColumn, raw: pa.Array) -> pa.Array:
    """The decision-0001 Arrow array of one column from its raw bytes as a binary array."""
    target = column.arrow_type
    if target == pa.binary():
        return raw
    text = pc.cast(raw, pa.string())  # validates UTF-8 (utf8mb4 columns, digits, dates)
    if target == pa.string():
        return text
    return pc.cast(text, target)


def select_list(columns: tuple[SourceColumn, ...] | list[SourceColumn]) -> str:
    return ", ".join(f"`{c.name}`" for c in columns)


def read_live_schemas(urls: dict[str, str]) -> dict[str, dict[str, SourceTable]]:
    """{source: {table: SourceTable}} for each ``{source: mysql URL with database}``."""
    from extract.snapshot_reader import raw_connect
    from runeshift.connections import parse_mysql_url

    schemas: dict[str, dict[str, SourceTable]] = {}
    for source, url in urls.items():
        database = parse_mysql_url(url).database
        conn = raw_connect(url, database)
        try:
            cur = conn.cursor()
            schemas[source] = read_source_schema(cur, database)
            cur.close()
        finally:
            conn.close()
    return schemas
