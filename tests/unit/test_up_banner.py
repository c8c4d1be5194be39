"""`gpupool up`'s banner tells a new user how to reach `gpupool`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from scheduler.cli import server_commands


def test_banner_says_to_activate_when_gpupool_is_not_on_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = Path(sys.executable).parent
    monkeypatch.setattr(shutil, "which", lambda name: None)
    hint = server_commands._path_hint()
    assert f"source {bin_dir / 'activate'}" in hint and str(bin_dir / "gpupool") in hint
    monkeypatch.setattr(shutil, "which", lambda name: str(bin_dir / name))
    assert server_commands._path_hint() == "", "already on PATH: nothing to say"
