"""The chromium fixture: Debian's headless browser, for the report tests."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("PERUN_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is not installed but PERUN_REQUIRE_CHROMIUM=1")
        pytest.skip("chromium is not installed (apt install chromium); set PERUN_REQUIRE_CHROMIUM=1 to require it")
    return path
