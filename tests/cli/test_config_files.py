"""A configuration file is read or refused with a reason, never ignored: config.toml, config.json
(with the pack's keys), `--config` and `$REER_CONFIG`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.config import load_settings
from runtime.errors import ConfigError
from tests.conftest import RunDaemon

PACK_CONFIG = {
    "default_provider": "dummy://",
    "trace_store_path": "~/elsewhere/traces.jsonl",
    "log_level": "debug",
    "rate_limiting": {"max_requests_per_minute": 60, "max_requests_per_hour": 1000},
    "logging": {"format": "json", "file_enabled": True, "performance_tracking": True},
}


def test_the_packs_config_json_maps_onto_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(PACK_CONFIG))
    settings = load_settings(tmp_path)
    assert settings.config_file == tmp_path / "config.json"
    assert settings.generator == settings.scorer == ["dummy://"]
    assert settings.traces_path == tmp_path / "elsewhere" / "traces.jsonl"
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    default = settings.limits["default"]
    assert (default.per_minute, default.per_hour) == (60, 1000)
    assert settings.logging.performance_tracking and settings.log_file == tmp_path / "logs" / "reer.log"
    (tmp_path / "config.json").write_text(json.dumps({"default_provider": "dspy://openai/gpt-4o-mini"}))
    cloud = load_settings(tmp_path)
    assert cloud.generator == ["dspy://openai/gpt-4o-mini"] and cloud.scorer == [
        "mlx://smollm2-135m"
    ]  # chat APIs do not score


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"default_providr": "dummy://"}, "default_providr is not a setting; did you mean default_provider?"),
        ({"rate_limiting": {"max_request_per_minute": 5}}, "did you mean rate_limiting.max_requests_per_minute?"),
        ({"search": {"max_step": 3}}, "search.max_step is not a setting; did you mean search.max_steps?"),
        ([1, 2], "the configuration is a table of settings, not a list"),
    ],
)
def test_a_key_that_is_not_a_setting_is_refused_with_the_closest(tmp_path: Path, content: object, message: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace("[", r"\[")):
        load_settings(tmp_path)


def test_two_files_in_one_data_dir_are_refused_and_validate_names_the_file_read(
    tmp_path: Path, run_daemon: RunDaemon
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "config.json").write_text(json.dumps({"default_provider": "dummy://"}))
    (data / "config.toml").write_text('log_level = "INFO"\n')
    both = run_daemon("traces")
    assert both.returncode == 2 and f"{data / 'config.toml'} and {data / 'config.json'}" in both.stderr
    (data / "config.toml").unlink()
    checked = run_daemon("validate")
    assert f"configuration read from {data / 'config.json'}" in checked.stdout
    elsewhere = tmp_path / "mine.toml"
    elsewhere.write_text('generator = ["dummy://"]\nscorer = ["dummy://"]\n')
    named = run_daemon("--config", str(elsewhere), "validate")
    assert f"configuration read from {elsewhere}" in named.stdout
    assert f"configuration read from {elsewhere}" in run_daemon("validate", env={"REER_CONFIG": str(elsewhere)}).stdout
    missing = run_daemon("validate", "--config", str(tmp_path / "nope.toml"))
    assert "no configuration file" in missing.stdout + missing.stderr
