"""Config.validate: every explicit setting is checked against its declared kind."""

from __future__ import annotations

from postel.config import load_config


def _cfg(tmp_path, text):
    (tmp_path / "main.cf").write_text(text)
    return load_config(str(tmp_path))


def test_validate_reports_file_line_and_parameter(tmp_path):
    cfg = _cfg(tmp_path, "# comment\nsmtpd_timeout = abc\nbiff = maybe\nmessage_size_limit = 10k\n"
                         "myhostname = mx.example\n")
    problems = [str(e) for e in cfg.validate()]
    main_cf = str(tmp_path / "main.cf")
    assert any(f"{main_cf}, line 2: parameter smtpd_timeout: " in p for p in problems)
    assert any(f"{main_cf}, line 3: parameter biff: " in p for p in problems)
    assert any(f"{main_cf}, line 4: parameter message_size_limit: " in p for p in problems)
    assert len(problems) == 3


def test_validate_accepts_good_values(tmp_path):
    cfg = _cfg(tmp_path, "smtpd_timeout = 30s\nbiff = no\nmessage_size_limit = 1000\n"
                         "user_defined = $myhostname\n")
    assert cfg.validate() == []
