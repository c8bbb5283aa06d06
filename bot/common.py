"""What every listener shares: the dependencies, safe replies, and the catch-all that keeps any
exception from reaching Slack.

Listeners are split in two, as Slack's 3-second rule asks: an *ack* function that does only pure
work (parsing) and acknowledges, and *lazy* functions that call the service and answer through
``respond`` (the ``response_url``) or the Web API. Every function is wrapped by :func:`guard`.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from burst.ondemand.messages import strip_unsafe
from burst.ondemand.service import OnDemandService
from burst.ondemand.settings import OnDemandSettings

log = logging.getLogger("burst.bot")

F = TypeVar("F", bound=Callable[..., Any])

INTERNAL_ERROR = (
    ":boom: burst hit an internal error (ref `{ref}`). Nothing more will happen for this command; "
    "an admin can find the reference in the bot's log."
)


@dataclass(frozen=True)
class BotDeps:
    service: OnDemandService
    settings: OnDemandSettings
    executor: Executor | None = None  # where deferred (lazy) work runs; None: at once, inline

    def defer(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` after the ack, on the lazy executor. ``fn`` must be :func:`guard`-ed."""
        if self.executor is None:
            fn(*args, **kwargs)
        else:
            self.executor.submit(fn, *args, **kwargs)


def safe_respond(respond: Any, text: str, **kw: Any) -> None:
    """Reply ephemerally through the response_url; a failure is logged, never raised."""
    try:
        # The last stop before Slack: nothing a user typed reaches them with control or
        # bidi-override characters in it, whichever path built the text.
        respond(text=strip_unsafe(text), response_type=kw.pop("response_type", "ephemeral"), **kw)
    except Exception as e:  # noqa: BLE001 - a reply that cannot be delivered must not raise
        log.warning("respond failed: %s", type(e).__name__)


def guard(fn: F) -> F:
    """Run a listener; on any exception log its type (with a reference, no payload or secrets)
    and, where possible, tell the user. Nothing propagates to Bolt."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the whole point: nothing reaches Slack
            ref = secrets.token_hex(4)
            log.error("listener %s failed (ref %s): %s", fn.__name__, ref, type(e).__name__, exc_info=True)
            ack = kwargs.get("ack")
            respond = kwargs.get("respond")
            if ack is not None and not getattr(ack, "response", None):
                try:
                    ack(text=INTERNAL_ERROR.format(ref=ref), response_type="ephemeral")
                    return None
                except Exception:  # noqa: BLE001
                    pass
            if respond is not None:
                safe_respond(respond, INTERNAL_ERROR.format(ref=ref))
            return None

    # Bolt injects arguments by the names of the unwrapped function (functools.wraps keeps them).
    return wrapper  # type: ignore[return-value]
