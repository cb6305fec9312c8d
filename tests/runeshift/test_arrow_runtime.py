"""pyarrow without pandas in bulk commands, and pandas still there for whoever asks for it."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from runeshift.arrow_runtime import keep_pandas_out_of_pyarrow
keep_pandas_out_of_pyarrow()
import pyarrow as pa
import pyarrow.compute as pc
from transform.identity_keys import uuid_from_key
ids = uuid_from_key(pa.array([1, 2, None]), entity="license")
assert pc.sum(pa.array([1, 2, 3])).as_py() == 6 and pa.array(["é", None]).null_count == 1
assert "pandas" not in sys.modules, "pyarrow imported pandas"
import pandas as pd
table = pa.Table.from_pandas(pd.DataFrame({"a": [1, 2]}))
assert table.to_pandas()["a"].tolist() == [1, 2]
assert pa.array(pd.Series([1, None], dtype="Int64")).to_pylist() == [1, None]
print("ok")
"""


def test_bulk_commands_build_arrays_without_importing_pandas():
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_without_the_switch_pyarrow_imports_pandas():
    """The switch is needed: a plain pyarrow process pulls pandas in at its first array."""
    probe = "import sys, pyarrow as pa; pa.array([0]); print('pandas' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "True", done.stderr[-2000:]
