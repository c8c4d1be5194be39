"""Regenerate the committed Python code for proto/gpupool/v1/*.proto.

Usage: python scripts/gen_proto.py [OUT_DIR]   (default: proto/, in place)
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def _mypy_grpc_plugin() -> str:
    """mypy-protobuf's plugin, next to this Python (a venv need not be on PATH)."""
    beside = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    found = str(beside) if beside.exists() else shutil.which("protoc-gen-mypy_grpc")
    if not found:
        raise SystemExit("protoc-gen-mypy_grpc not found: pip install mypy-protobuf")
    return found


def generate(out_dir: Path) -> None:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto under proto/."""
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        # Typed stubs for the *_pb2_grpc modules (mypy-protobuf's plugin).
        f"--plugin=protoc-gen-mypy_grpc={_mypy_grpc_plugin()}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT)
