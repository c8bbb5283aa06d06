"""burst's error tree. SDK exceptions are mapped onto these at the edge (providers/errors.py).

The *type* decides what happens next (DESIGN.md, principle 6):

=========================  ===============================================================
``TransientProviderError``  throttling, 5xx, timeouts: retried with backoff, and next tick
``CapacityError``           no capacity / SKU unavailable: the offer cools down, next offer
``QuotaError``              like capacity, with a longer cool-down
``PermanentProviderError``  auth, bad configuration: alert admins, stop using the provider
``NotFound``                the thing is gone; when deleting, that is success
=========================  ===============================================================
"""

from __future__ import annotations


class BurstError(Exception):
    """Root of every error burst raises on purpose."""


class InputError(BurstError):
    """Bad input (trace, config, Slack text, queue output). ``where`` names the file, line or key."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


class ConfigError(InputError):
    """A configuration that cannot be used."""


# ---- providers ------------------------------------------------------------------------------


class ProviderError(BurstError):
    """A cloud call failed. ``code`` is the cloud's own error code when it gave one;
    ``retry_after`` the cloud's own hint (seconds, from ``Retry-After``) for when to try again."""

    def __init__(
        self, message: str, *, provider: str = "", code: str = "", offer_key: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.code = code
        self.offer_key = offer_key
        self.retry_after = retry_after


class TransientProviderError(ProviderError):
    """Throttling, 5xx, network trouble. Safe to retry the same call later."""


class CapacityError(ProviderError):
    """The offer cannot be served now (insufficient capacity, SKU not available, spot price)."""


class QuotaError(CapacityError):
    """An account/subscription limit. Handled like capacity, with a longer cool-down."""


class PermanentProviderError(ProviderError):
    """Auth failures and bad configuration. Retrying will not help; admins must act."""


class NotFound(ProviderError):
    """The resource does not exist. Deleting something already gone is success."""


# ---- on-prem queues -------------------------------------------------------------------------


class QueueError(BurstError):
    """The on-prem scheduler could not be read or changed."""


class QueueUnavailable(QueueError):
    """The scheduler did not answer (timeout, connection refused). Transient."""


class QueueParseError(QueueError, InputError):
    """The scheduler answered something we cannot read."""


# ---- registries / mirroring ----------------------------------------------------------------


class MirrorError(BurstError):
    """An image copy failed."""


class TransientMirrorError(MirrorError):
    """429/5xx/network: retried with backoff."""


class DigestMismatch(MirrorError):
    """Bytes received do not hash to the digest the registry promised. Nothing was committed."""


# ---- store ----------------------------------------------------------------------------------


class StoreError(BurstError):
    """Persistent state could not be read or written."""


class RecordNotFound(StoreError):
    pass


class DuplicateRecord(StoreError):
    pass


class BudgetExceeded(StoreError):
    """The hard cap would be crossed; nothing was written."""

    def __init__(self, scope: str, cap: float, committed: float, asked: float) -> None:
        super().__init__(
            f"budget {scope!r}: cap ${cap:,.2f}, committed ${committed:,.2f}, launch needs ${asked:,.2f}"
        )
        self.scope, self.cap, self.committed, self.asked = scope, cap, committed, asked
