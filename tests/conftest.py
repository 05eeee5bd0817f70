from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
OFFICIAL_FIXTURES = SHARED / "fixtures" / "official_usdrl"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real recorded samples); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not available ({SHARED_DATA} is absent)")
    return SHARED_DATA


@pytest.fixture
def official_fixtures() -> Path:
    """``../shared/fixtures/official_usdrl`` (official-code reference outputs); skips when absent."""
    if not OFFICIAL_FIXTURES.is_dir():
        pytest.skip(f"official reference fixtures not available ({OFFICIAL_FIXTURES} is absent)")
    return OFFICIAL_FIXTURES
