"""Fixtures shared by the test modules."""

import pytest


@pytest.fixture
def no_user_data(monkeypatch, tmp_path):
    """Keep the user's data directory and cache out of a test: a fresh cache, no SPIKEVIZ_DATA."""
    monkeypatch.setenv("SPIKEVIZ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SPIKEVIZ_DATA", raising=False)
