"""The `molequle` command line, including the README's run command (`molequle sync`) end to end."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from molequle_dagster.cli import main
from molequle_dagster.settings import default_settings_path
from molequle_dagster_tests.conftest import fast_settings_dict


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_settings_command_validates_the_packaged_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", str(default_settings_path())]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "All People for Molequle" in out and "$MARKETO_CLIENT_SECRET" in out


def test_bad_settings_file_exits_2_with_the_key_path(tmp_path: Path, capsys) -> None:
    data = fast_settings_dict()
    data["sync"]["interval_minutes"] = 45
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["settings", str(path)]) == 2
    assert "sync.interval_minutes" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["sandbox", "--people", "0"], "expected a positive integer, got 0"),
    (["sandbox", "--port", "70000"], "expected a TCP port 0..65535"),
    (["sync", "--sandbox", "maybe"], "invalid choice"),
])
def test_bad_arguments_are_named(argv: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert expected in capsys.readouterr().err


def test_sync_command_runs_the_initial_sync_then_a_tick(tmp_path: Path) -> None:
    """What the README's run command does, in a fresh folder with its own sandbox and instance."""
    data = fast_settings_dict()
    data["marketo"]["base_url"] = f"http://127.0.0.1:{_free_port()}"
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(data))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "molequle_dagster.cli", "sync", "--settings", "settings.yaml",
               "--people", "150"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Initial sync succeeded" in first.stdout
    assert "activities" in first.stdout and "Marketo API calls:" in first.stdout
    assert (tmp_path / ".dagster_home" / "dagster.yaml").exists()
    assert (tmp_path / ".molequle" / "lake" / "people" / "_manifest.json").exists()
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Tick sync succeeded: 1 Dagster runs" in second.stdout


def test_sync_refuses_to_start_a_sandbox_for_a_remote_marketo(tmp_path: Path, monkeypatch, capsys) -> None:
    """One base URL: with $MARKETO_BASE_URL at a real Marketo, the CLI never runs the sandbox's credentials
    against it."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("MARKETO_BASE_URL", "https://123-ABC-456.mktorest.com")
    assert main(["sync", "--sandbox", "yes"]) == 2
    assert "https://123-ABC-456.mktorest.com" in capsys.readouterr().err


def test_the_cli_writes_the_repository_embedded_instance() -> None:
    """`molequle sync` writes the same embedded dagster.yaml as the repository root's (the package ships
    without the repository, so it carries a copy)."""
    from molequle_dagster.cli import EMBEDDED_DAGSTER_YAML

    root = Path(__file__).resolve().parents[1] / "dagster.yaml"
    assert yaml.safe_load(EMBEDDED_DAGSTER_YAML) == yaml.safe_load(root.read_text())
