"""Unit tests run without a database: asking for the Cassandra session fails the test instead of connecting."""

from __future__ import annotations

from typing import NoReturn

import pytest


@pytest.fixture(scope="session")
def cassandra_session() -> NoReturn:
    """Unit tests never reach Cassandra; a test that needs it belongs in tests/integration."""
    pytest.fail("a unit test asked for Cassandra; storage tests belong in tests/integration")
