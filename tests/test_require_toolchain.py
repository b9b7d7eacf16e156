"""EDGE_ALBERT_REQUIRE_TOOLCHAIN=1 (CI) turns a failed toolchain import into a failure, not a skip."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = "EDGE_ALBERT_IMPORT_PROBE"


def test_probe_a_missing_module():
    if os.environ.get(PROBE) != "1":
        pytest.skip("a probe: run in a subprocess by the test below")
    pytest.importorskip("edge_albert_no_such_module")


@pytest.mark.parametrize("required,outcome", [("0", "1 skipped"), ("1", "1 failed")])
def test_require_toolchain_turns_import_skips_into_failures(required, outcome):
    env = {**os.environ, PROBE: "1", "EDGE_ALBERT_REQUIRE_TOOLCHAIN": required}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                        f"{Path(__file__)}::test_probe_a_missing_module"],
                       capture_output=True, text=True, env=env, check=False,
                       cwd=Path(__file__).resolve().parents[1])
    assert outcome in r.stdout, r.stdout[-2000:]
    if required == "1":
        assert "cannot import 'edge_albert_no_such_module'" in r.stdout
