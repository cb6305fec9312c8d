from typing import Any

def read_columns(
    native_connection: Any, query: bytes
) -> tuple[int, list[tuple[bytes, bytes, bytes | None]]]: ...
