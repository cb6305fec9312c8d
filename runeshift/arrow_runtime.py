"""Process-wide settings of the Arrow runtime for commands that move bulk data."""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from typing import Any


class _PandasHidden(MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ImportError("pandas is hidden while pyarrow looks for it")
        return None


def keep_pandas_out_of_pyarrow() -> None:
    """Let pyarrow decide once, now, that it converts Python objects without pandas.

    The first time ``pa.array`` meets a Python object, pyarrow imports pandas to ask whether
    the object is a pandas one, and keeps the answer. Nothing a backfill hands pyarrow is,
    and pandas costs the process about 35 MB of its 300 MB budget and 0.2 CPU s. With
    pandas hidden for that one question, pyarrow remembers it as absent; pandas itself stays
    importable for anything that needs it, and pyarrow's explicit pandas conversions
    (``to_pandas``, ``from_pandas``) import it themselves. Call before the first array is
    built; a process that already imported pandas keeps it.
    """
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    hidden = _PandasHidden()
    sys.meta_path.insert(0, hidden)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(hidden)
