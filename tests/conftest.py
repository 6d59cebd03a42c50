"""Shared test fixtures.

Real benchmark sequences live beside the repository in `shared/data` (never copied into it); a
fresh clone anywhere finds them as `<repo>/../shared/data`.
"""
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    # Fail rather than skip: the real-data tests are the point, and a silent skip would hide a
    # checkout that lacks them.
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data missing: expected {SHARED_DATA} (shared/data beside the repository)")
    return SHARED_DATA


SHARED_POOL = REPO_ROOT.parent / "shared" / "pool"


@pytest.fixture(scope="session")
def shared_pool() -> Path:
    # The real pretraining pool (../shared/pool/README.md): fail rather than skip, as above.
    if not SHARED_POOL.is_dir():
        pytest.fail(f"real pool data missing: expected {SHARED_POOL} (shared/pool beside the repository)")
    return SHARED_POOL
