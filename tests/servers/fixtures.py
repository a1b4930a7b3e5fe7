"""Pytest fixtures for the fake provider, registered for every test by ``tests/conftest.py``
(``pytest_plugins``): request ``provider`` by name, do not import it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.fake_provider import FakeProvider

__all__ = ["provider", "provider_session"]


@pytest.fixture(scope="session")
def provider_session() -> Iterator[FakeProvider]:
    """One fake provider for the whole session, stopped at the end."""
    with FakeProvider() as server:
        yield server


@pytest.fixture
def provider(provider_session: FakeProvider) -> FakeProvider:
    """The session's fake provider with scripts, records and peak counter cleared."""
    provider_session.reset()
    return provider_session
