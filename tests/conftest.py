"""Fixtures more than one test module uses."""

from __future__ import annotations

import pytest
from service_processes import ServiceProcesses


@pytest.fixture
def processes(tmp_path):
    """Service processes started by the test (`processes.start(...)`), stopped after it."""
    started = ServiceProcesses(tmp_path)
    yield started
    started.stop()
