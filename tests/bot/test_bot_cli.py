"""``burst bot serve``: the production HTTP server (gunicorn) in a subprocess, over real HTTP; and
its clear one-line failures."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.runtime import BotSetupError, Secret, read_secret
from tests.support.fake_slack import FakeSlack, command_body, sign

ROOT = Path(__file__).resolve().parents[2]
SIGNING = "cli-test-signing-secret-not-real"
TOKEN = "xoxb-cli-test-token-not-real"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, slack: str = "{admins: [U0ADMIN01], admin_channel: C0ADMINS1}") -> Path:
    cfg = tmp_path / "burst.yaml"
    cfg.write_text(f"database_url: sqlite:///{tmp_path / 'bot.db'}\nslack: {slack}\n", encoding="utf-8")
    return cfg


def _env(**kw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(kw)
    return env


def _post(port: int, body: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/slack/events", body=body.encode(), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_serve_answers_signed_requests_and_stops_on_sigterm(tmp_path: Path, fake: FakeSlack) -> None:
    port = _free_port()
    secret_file = tmp_path / "signing-secret"
    secret_file.write_text(SIGNING + "\n", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "burst.bot_cli", "serve", "--config", str(_config(tmp_path)), "--port", str(port),
         "--workers", "2", "--threads", "4", "--slack-api-url", fake.api_url],
        env=_env(SLACK_SIGNING_SECRET_FILE=str(secret_file), SLACK_BOT_TOKEN=TOKEN),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(tmp_path),
    )
    try:
        help_body = command_body("help", user="U0USER001", response_url=fake.response_url("cli-help"))
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                status, text = _post(port, help_body, sign(SIGNING, help_body))
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.1)
        assert status == 200 and "/burst request" in json.loads(text)["text"]
        # a wrong signature is refused
        assert _post(port, help_body, sign("not-the-secret", help_body))[0] == 401
        # a real command: acked empty, carried out after the ack, the reply reaches the response_url
        body = command_body("request 1xA100 for 2h on aws", user="U0USER001", response_url=fake.response_url("cli-req"))
        assert _post(port, body, sign(SIGNING, body)) == (200, "")
        got = fake.wait_for("response", 1, timeout=15)
        assert any("approved" in str(c.params.get("text", "")) for c in got if c.path.endswith("/cli-req"))
        assert [c for c in fake.calls("auth.test")], "identity is fetched once at start"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert SIGNING not in out and TOKEN not in out
    assert len(fake.calls("auth.test")) == 1  # workers answer authorize from it: no auth.test each


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SLACK_BOT_TOKEN": TOKEN}, "SLACK_SIGNING_SECRET is not set"),
        ({"SLACK_SIGNING_SECRET": SIGNING}, "SLACK_BOT_TOKEN is not set"),
        ({"SLACK_SIGNING_SECRET_FILE": "/nonexistent/secret", "SLACK_BOT_TOKEN": TOKEN}, "SLACK_SIGNING_SECRET_FILE: cannot read"),
    ],
)
def test_missing_secret_is_one_line_and_exit_2(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    r = subprocess.run([sys.executable, "-m", "burst.bot_cli", "serve", "--config", str(_config(tmp_path)),
                        "--port", str(_free_port())], env=_env(**env), capture_output=True, text=True, timeout=60,
                       cwd=str(tmp_path))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert SIGNING not in r.stderr + r.stdout and TOKEN not in r.stderr + r.stdout


def test_bad_slack_section_and_refused_token_are_one_line(tmp_path: Path, fake: FakeSlack) -> None:
    r = subprocess.run([sys.executable, "-m", "burst.bot_cli", "serve", "--config",
                        str(_config(tmp_path, "{admins: [U1], user_quota: {max_gpus: -1}}"))],
                       env=_env(SLACK_SIGNING_SECRET=SIGNING, SLACK_BOT_TOKEN=TOKEN), capture_output=True, text=True,
                       timeout=60, cwd=str(tmp_path))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "max_gpus" in lines[0], r.stderr
    fake.fail_methods["auth.test"] = "invalid_auth"
    r = subprocess.run([sys.executable, "-m", "burst.bot_cli", "serve", "--config", str(_config(tmp_path)),
                        "--slack-api-url", fake.api_url],
                       env=_env(SLACK_SIGNING_SECRET=SIGNING, SLACK_BOT_TOKEN=TOKEN), capture_output=True, text=True,
                       timeout=60, cwd=str(tmp_path))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "invalid_auth" in lines[0], r.stderr
    assert TOKEN not in r.stderr


def test_socket_needs_an_app_token(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "burst.bot_cli", "socket", "--config", str(_config(tmp_path))],
                       env=_env(SLACK_BOT_TOKEN=TOKEN), capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "SLACK_APP_TOKEN is not set" in lines[0], r.stderr


def test_read_secret_env_file_and_repr(tmp_path: Path) -> None:
    f = tmp_path / "tok"
    f.write_text("  xoxb-from-file \n", encoding="utf-8")
    assert read_secret("SLACK_BOT_TOKEN", env={"SLACK_BOT_TOKEN": "xoxb-env"}).get() == "xoxb-env"
    s = read_secret("SLACK_BOT_TOKEN", env={"SLACK_BOT_TOKEN_FILE": str(f)})
    assert s.get() == "xoxb-from-file" and "xoxb" not in repr(s) and "xoxb" not in str(s)
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(BotSetupError, match="is empty"):
        read_secret("SLACK_BOT_TOKEN", env={"SLACK_BOT_TOKEN_FILE": str(tmp_path / "empty")})
    assert "secret" not in repr(Secret("secret"))
