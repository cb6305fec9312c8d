from typing import Any

ENGINE: str

def uuid5_texts(namespace: bytes, data: Any, offsets: Any) -> bytes: ...
