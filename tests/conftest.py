"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point SMUG_CACHE_DIR at a fresh (not yet existing) directory."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("SMUG_CACHE_DIR", str(directory))
    return directory
