"""``burst bot``: run the Slack bot in production.

* ``burst bot serve``: HTTP mode. Slack POSTs to ``http://HOST:PORT/slack/events`` (behind a
  TLS-terminating proxy). Served by gunicorn: ``--workers`` processes with ``--threads`` request
  threads each; the Bolt app is built in every worker over the store of the burst config.
  Needs ``SLACK_SIGNING_SECRET`` and ``SLACK_BOT_TOKEN``.
* ``burst bot socket``: Socket Mode (no public URL; the bot dials Slack). Needs
  ``SLACK_APP_TOKEN`` (scope ``connections:write``) and ``SLACK_BOT_TOKEN``.

Each secret is read from its environment variable or from the file named by ``<NAME>_FILE``. They
are never logged or printed. A missing secret or a bad config ends with one line on stderr and
exit code 2; Slack refusing the token, exit 2 too; Slack unreachable at start, exit 1.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

bot_app = typer.Typer(no_args_is_help=True, add_completion=False, help="The Slack bot (/burst): HTTP or Socket Mode.")

log = logging.getLogger("burst.bot")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="burst config (database_url, slack: section); default: embedded defaults.")
]
ApiUrlOpt = Annotated[
    str, typer.Option("--slack-api-url", envvar="SLACK_API_URL", help="Slack Web API base URL (a test double, or GovSlack).")
]
LazyOpt = Annotated[int, typer.Option("--lazy-workers", min=1, max=256, help="Threads per worker for the slow part of commands.")]
LogOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]
LogFormatOpt = Annotated[str, typer.Option("--log-format", help="text, or json: one object per line (ts, level, logger, msg, fields).")]


def _fail(msg: str, code: int = 2) -> NoReturn:
    from burst.redact import escape_control, redact

    typer.echo(f"error: {escape_control(redact(msg))}", err=True)
    raise typer.Exit(code)


def _logging(level: str, fmt: str = "text") -> int:
    """burst's logging (:mod:`burst.logs`): one escaped, redacted line per record, text or JSON;
    the libraries' chatter (Alembic's migration lines among them) quiet below debug."""
    from burst import logs

    lvl = logging.getLevelName(level.upper()) if level.lower() in ("debug", "info", "warning", "error") else None
    if not isinstance(lvl, int):
        _fail(f"--log-level: expected debug, info, warning or error, got {level[:40]!r}")
    if fmt not in logs.FORMATS:
        _fail(f"--log-format: expected text or json, got {fmt[:40]!r}")
    logs.setup(lvl, fmt)
    from burst.logsafe import install_safe_logging

    install_safe_logging()  # one line per message: control characters escaped, length capped
    return lvl


def _prepare(config: Path | None, token_name: str, api_url: str, lazy_workers: int, *, signing_secret: bool) -> Any:
    """Secrets, config, store (migrated once, here), the bot's identity: everything that can fail
    is checked before a server or a socket is started. Returns the BotFactory."""
    from bot.runtime import (
        BotFactory,
        BotSetupError,
        Secret,
        bot_settings,
        fetch_identity,
        load_burst_config,
        prepare_store,
        read_secret,
    )

    try:
        secret = read_secret("SLACK_SIGNING_SECRET") if signing_secret else Secret("")
        token = read_secret(token_name)
        factory = BotFactory(str(config) if config is not None else None, secret, token, api_url=api_url,
                             lazy_workers=lazy_workers)
        bot_settings(load_burst_config(factory.config_path).slack)  # bad input first, before any network
        identity = fetch_identity(factory.client())
        prepare_store(factory.config_path)
    except BotSetupError as e:
        _fail(str(e), e.exit_code)
    # Read once; dropped from the environment so that no process started later inherits them (and
    # Bolt, which also looks there, does not warn that the client's token wins).
    for name in ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
        os.environ.pop(name, None)
    log.info("slack bot user %s in team %s", identity.bot_user_id, identity.team_id)
    return BotFactory(factory.config_path, secret, token, identity=identity, api_url=api_url, lazy_workers=lazy_workers)


@bot_app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(envvar="BURST_BOT_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="BURST_BOT_PORT", min=1, max=65535, help="Port to bind.")] = 3000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (about one per core).")] = 2,
    threads: Annotated[int, typer.Option(min=1, max=1024, help="Request threads per worker.")] = 16,
    lazy_workers: LazyOpt = 4,
    path: Annotated[str, typer.Option(help="URL path Slack POSTs to.")] = "/slack/events",
    slack_api_url: ApiUrlOpt = "https://slack.com/api/",
    log_level: LogOpt = "info",
    log_format: LogFormatOpt = "text",
) -> None:
    """HTTP mode: serve Slack's requests on HOST:PORT with gunicorn (needs SLACK_SIGNING_SECRET and
    SLACK_BOT_TOKEN, or *_FILE)."""
    _logging(log_level, log_format)
    if not path.startswith("/"):
        _fail(f"--path: must start with '/', got {path!r}")
    factory = _prepare(config, "SLACK_BOT_TOKEN", slack_api_url, lazy_workers, signing_secret=True)
    from bot.runtime import bot_settings, load_burst_config
    from bot.server import gunicorn_application, gunicorn_options

    log.info("burst bot: http://%s:%d%s, %d worker(s) x %d thread(s)", host, port, path, workers, threads)
    # a request's line and headers get the same deadline as its body (slack.http_read_timeout_s)
    read_timeout_s = bot_settings(load_burst_config(factory.config_path).slack).http_read_timeout_s
    opts = gunicorn_options(host, port, workers=workers, threads=threads, log_level=log_level.lower(),
                            header_timeout_s=read_timeout_s)
    gunicorn_application(functools.partial(factory.wsgi, path), opts).run()


@bot_app.command()
def socket(
    config: ConfigOpt = None,
    lazy_workers: LazyOpt = 4,
    slack_api_url: ApiUrlOpt = "https://slack.com/api/",
    log_level: LogOpt = "info",
    log_format: LogFormatOpt = "text",
) -> None:
    """Socket Mode: connect out to Slack (needs SLACK_APP_TOKEN and SLACK_BOT_TOKEN, or *_FILE)."""
    _logging(log_level, log_format)
    from bot.runtime import BotSetupError, read_secret

    try:
        app_token = read_secret("SLACK_APP_TOKEN")
    except BotSetupError as e:
        _fail(str(e), e.exit_code)
    if not app_token.get().startswith("xapp-"):
        _fail("SLACK_APP_TOKEN: not an app-level token (those start with xapp-)")
    factory = _prepare(config, "SLACK_BOT_TOKEN", slack_api_url, lazy_workers, signing_secret=False)
    from bot.server import socket_mode_handler

    # Socket Mode: the ack goes back on the socket; Bolt runs listeners off the receiving thread.
    app = factory(process_before_response=False)
    handler = socket_mode_handler(app, app_token.get())
    log.info("burst bot: Socket Mode")
    handler.start()


if __name__ == "__main__":  # python -m burst.bot_cli (before the lead registers `burst bot`)
    bot_app()
