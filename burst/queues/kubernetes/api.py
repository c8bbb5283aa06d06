"""Calls to the Kubernetes API server, with the timeout and the error mapping.

Module level (not methods of the queue): the watcher threads use them and must not hold the
queue. A timeout, a refused connection or a 5xx becomes :class:`~burst.errors.QueueUnavailable`;
an answer that is not JSON a :class:`~burst.errors.QueueParseError`; other API errors a
:class:`~burst.errors.QueueError` (with ``status``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from burst.errors import QueueError, QueueParseError, QueueUnavailable
from burst.queues.kubernetes.settings import K8sSettings

T = TypeVar("T")


@dataclass
class Apis:
    client: Any
    core: Any
    batch: Any
    exc: Any  # kubernetes.client.exceptions.ApiException
    v1eviction: Callable[..., Any]
    v1meta: Callable[..., Any]
    v1delete: Callable[..., Any]


def api_call(apis: Apis, s: K8sSettings, what: str, fn: Callable[..., T], *args: Any, ok_404: bool = False,
          **kw: Any) -> T | None:
    """One API call with the timeout; SDK and transport errors mapped onto burst's errors."""
    # a (connect, read) pair: the client ignores a lone float (it only honours a lone int)
    kw.setdefault("_request_timeout", (s.timeout_s, s.timeout_s))
    try:
        return fn(*args, **kw)
    except apis.exc as e:
        status = getattr(e, "status", 0) or 0
        if status == 404 and ok_404:
            return None
        msg = api_message(e)
        if status == 0 or status >= 500:
            raise QueueUnavailable(f"kubernetes {what}: HTTP {status or 'error'}: {msg}") from None
        err = QueueError(f"kubernetes {what}: HTTP {status}: {msg}")
        err.status = status  # type: ignore[attr-defined]
        raise err from None
    except Exception as e:  # urllib3 timeouts, refused connections, TLS errors
        if is_transport_error(e):
            raise QueueUnavailable(f"kubernetes {what}: {type(e).__name__}: {e}") from None
        raise


def get_json(apis: Apis, s: K8sSettings, what: str, fn: Callable[..., Any], *args: Any, ok_404: bool = False,
              **kw: Any) -> Any:
    """Like :func:`api_call`, answering the JSON as the server sent it (None: 404 with ``ok_404``)."""
    resp = api_call(apis, s, what, fn, *args, _preload_content=False, ok_404=ok_404, **kw)
    if resp is None:
        return None
    data: Any = getattr(resp, "data", resp)
    try:
        return json.loads(data)
    except (TypeError, ValueError) as e:
        raise QueueParseError(f"kubernetes {what}", f"answer is not JSON: {e}") from None


def api_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if body:
        try:
            doc = json.loads(body)
            if isinstance(doc, dict) and doc.get("message"):
                return str(doc["message"])
        except (TypeError, ValueError):
            pass
    return str(getattr(e, "reason", "") or e)


def is_transport_error(e: BaseException) -> bool:
    import urllib3.exceptions as ue

    return isinstance(e, ue.HTTPError | TimeoutError | ConnectionError | OSError)

