"""Fixtures for the pkd.data tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pkd.data import registry


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Datasets registered during the test are forgotten afterwards (registry and load cache restored in place)."""
    specs, loaders = dict(registry.DATASETS), dict(registry.LOADERS)
    yield
    registry.DATASETS.clear()
    registry.DATASETS.update(specs)
    registry.LOADERS.clear()
    registry.LOADERS.update(loaders)
    registry.clear_cache()
