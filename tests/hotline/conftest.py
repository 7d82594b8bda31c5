"""Fixtures shared by the hotline tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.mosquitto import Mosquitto, running_broker


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A real mosquitto broker on a loopback port for one test."""
    yield from running_broker()
