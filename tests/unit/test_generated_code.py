"""The committed gpupool.v1 code is what the .proto files generate."""

from __future__ import annotations

import filecmp
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "proto" / "gpupool" / "v1"


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools not installed"
)
def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(tmp_path)], check=True
    )
    fresh = sorted(p.name for p in (tmp_path / "gpupool" / "v1").glob("*_pb2*"))
    committed = sorted(p.name for p in GENERATED.glob("*_pb2*"))
    assert fresh == committed
    _, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "gpupool" / "v1", GENERATED, fresh, shallow=False
    )
    assert mismatch == [] and errors == [], f"regenerate with scripts/gen_proto.py: {mismatch}"
