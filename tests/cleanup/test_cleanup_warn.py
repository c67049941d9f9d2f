"""cleanup writes the delay warning time: arrival + delay_warning_time (hours by default)."""

from __future__ import annotations

import pytest

from postel.cleanup.service import CleanupService
from postel.config import load_config
from postel.queue import QueueDir


@pytest.mark.parametrize("value, seconds", [("1", 3600), ("2s", 2), ("1d", 86400), ("0h", 0)])
def test_delay_warning_time_units(tmp_path, value, seconds):
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}/q\n"
                                      f"delay_warning_time = {value}\n")
    QueueDir(f"{tmp_path}/q").create_dirs()
    svc = CleanupService(load_config(str(tmp_path)), f"{tmp_path}/q", rewrite_client=object())
    assert svc.delay_warning == seconds
