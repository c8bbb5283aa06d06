"""SDK errors mapped onto burst's error tree (:mod:`burst.errors`).

The *type* of the mapped error decides what the controller does next (DESIGN.md, principle 6), so
the mapping is the one place where a cloud's error vocabulary is interpreted. Each cloud gets one
function (``map_aws_error``, ``map_azure_error``) built on a shared
:class:`CodeTable`: exact codes and code prefixes per burst error class, checked in a fixed order.

Rules for AWS, in order:

1. ``ClientError``: the EC2 error code decides (tables below). An unknown code falls back on the
   HTTP status: 5xx and 429 are transient, any other status is permanent (a request that EC2
   refuses for a reason we do not know will not get better by repeating it).
2. botocore's own exceptions: network trouble, timeouts and unparseable answers are transient;
   missing credentials, bad parameters and unknown regions are permanent.
3. An exception that is already a :class:`~burst.errors.ProviderError` is returned unchanged.

Messages carry the cloud's code and message only, never request headers or credentials, and are
cut to a bounded length.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from burst.errors import (
    CapacityError,
    NotFound,
    PermanentProviderError,
    ProviderError,
    QuotaError,
    TransientProviderError,
)

MAX_MESSAGE = 500


@dataclass(frozen=True)
class CodeTable:
    """Error codes (exact, and prefixes ending in ``.`` or ``*``) per burst error class.

    ``classify`` walks ``order`` and returns the first class whose codes match. Shared by every
    cloud's mapping function, so Azure can declare its own table the same way.
    """

    order: tuple[tuple[type[ProviderError], frozenset[str]], ...]

    @staticmethod
    def build(*entries: tuple[type[ProviderError], Iterable[str]]) -> CodeTable:
        return CodeTable(tuple((cls, frozenset(codes)) for cls, codes in entries))

    def classify(self, code: str) -> type[ProviderError] | None:
        for cls, codes in self.order:
            if code in codes:
                return cls
            for pattern in codes:
                if pattern.endswith("*") and code.startswith(pattern[:-1]):
                    return cls
        return None


# ---- AWS ------------------------------------------------------------------------------------

AWS_NOT_FOUND = (
    "InvalidInstanceID.NotFound",
    "InvalidPlacementGroup.Unknown",
)

AWS_CAPACITY = (
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientCapacityOnHost",
    "InsufficientFreeAddressesInSubnet",  # this subnet (i.e. this AZ's offer) is full
    "Unsupported",  # instance type not supported in this AZ
    "UnfulfillableCapacity",
    "SpotMaxPriceTooLow",
    "InsufficientDBInstanceCapacity",
)

AWS_QUOTA = (
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    # An account limit on spot instances: handled like capacity (QuotaError is a CapacityError),
    # with the longer quota cool-down.
    "MaxSpotInstanceCountExceeded",
    "VolumeLimitExceeded",
    "MaxIOPSLimitExceeded",
    "ResourceLimitExceeded",
    "PlacementGroupLimitExceeded",
    "AddressLimitExceeded",
    "NetworkInterfaceLimitExceeded",
)

AWS_TRANSIENT = (
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "EC2ThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError",
    "ConcurrentTagAccess",
    "IncorrectInstanceState",  # e.g. terminate while the instance is still being created
)

AWS_PERMANENT = (
    "AuthFailure",
    "AuthFailure.*",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "AccessDenied",
    "AccessDeniedException",
    "OptInRequired",
    "Blocked",
    "PendingVerification",
    "InvalidParameter",
    "InvalidParameter*",  # InvalidParameterValue, InvalidParameterCombination, ...
    "MissingParameter",
    "UnknownParameter",
    "InvalidAction",
    "InvalidAMIID.*",
    "InvalidSubnetID.*",
    "InvalidGroup.*",
    "InvalidSecurityGroupID.*",
    "InvalidKeyPair.*",
    "InvalidPlacementGroup.*",
    "InvalidInstanceType",
    "InvalidInstanceType.*",
    "InvalidBlockDeviceMapping",
    "InvalidUserData.*",
    "InvalidIamInstanceProfile.*",
    "InvalidInstanceID.Malformed",
    "IdempotentParameterMismatch",
    "InvalidNetworkInterface.*",
    "InvalidVpcID.*",
    "NoSuchEntity",  # IAM instance profile that does not exist
    "ParameterNotFound",  # SSM parameter (AMI alias) that does not exist
    "ValidationError",
    "ValidationException",
    "DryRunOperation",
)

AWS_CODES = CodeTable.build(
    (NotFound, AWS_NOT_FOUND),
    (QuotaError, AWS_QUOTA),
    (CapacityError, AWS_CAPACITY),
    (TransientProviderError, AWS_TRANSIENT),
    (PermanentProviderError, AWS_PERMANENT),
)


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def aws_error_code(exc: BaseException) -> str:
    """The EC2 error code of a botocore ``ClientError`` ("" for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return str(error.get("Code") or "")
    return ""


def aws_http_status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        meta = response.get("ResponseMetadata") or {}
        try:
            return int(meta.get("HTTPStatusCode") or 0)
        except (TypeError, ValueError):
            return 0
    return 0


def map_aws_error(exc: BaseException, *, offer_key: str = "") -> ProviderError:
    """Map a boto3/botocore exception onto burst's error tree. Returns it; the caller raises it
    (``raise map_aws_error(e, offer_key=...) from e``)."""
    if isinstance(exc, ProviderError):
        return exc

    from botocore import exceptions as bx
    from botocore.parsers import ResponseParserError

    if isinstance(exc, bx.ClientError):
        code = aws_error_code(exc)
        status = aws_http_status(exc)
        error = exc.response.get("Error") or {}
        message = _cut(f"AWS {code or 'error'} (HTTP {status}): {error.get('Message') or ''}".rstrip(": "))
        cls = AWS_CODES.classify(code)
        if cls is None:
            cls = TransientProviderError if status >= 500 or status == 429 else PermanentProviderError
        return cls(message, provider="aws", code=code or f"HTTP{status}", offer_key=offer_key)

    name = type(exc).__name__
    transient_types: tuple[type[BaseException], ...] = (
        bx.EndpointConnectionError,
        bx.ConnectionError,  # ConnectTimeoutError, ConnectionClosedError, ProxyConnectionError...
        bx.ReadTimeoutError,
        bx.HTTPClientError,
        ResponseParserError,  # a truncated or non-XML answer (an HTML 500 from a proxy)
        bx.IncompleteReadError,
        bx.ResponseStreamingError,
        bx.CredentialRetrievalError,  # the instance/container credential endpoint did not answer
        bx.WaiterError,
    )
    if isinstance(exc, transient_types):
        return TransientProviderError(_cut(f"AWS {name}: {exc}"), provider="aws", code=name, offer_key=offer_key)
    permanent_types: tuple[type[BaseException], ...] = (
        bx.NoCredentialsError,
        bx.PartialCredentialsError,
        bx.NoRegionError,
        bx.UnknownServiceError,
        bx.ParamValidationError,
        bx.UnknownEndpointError,
        bx.InvalidRegionError,
    )
    if isinstance(exc, permanent_types):
        return PermanentProviderError(_cut(f"AWS {name}: {exc}"), provider="aws", code=name, offer_key=offer_key)
    if isinstance(exc, bx.BotoCoreError):
        return TransientProviderError(_cut(f"AWS {name}: {exc}"), provider="aws", code=name, offer_key=offer_key)
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return TransientProviderError(_cut(f"AWS {name}: {exc}"), provider="aws", code=name, offer_key=offer_key)
    return PermanentProviderError(_cut(f"AWS {name}: {exc}"), provider="aws", code=name, offer_key=offer_key)


# ---- Azure ----------------------------------------------------------------------------------
#
# Rules for Azure, in order (map on ``HttpResponseError.error.code``, never on the exception class:
# azure-core raises a 409 SkuNotAvailable as ResourceExistsError):
#
# 1. ``HttpResponseError``: the ARM error code decides (tables below). ``OperationNotAllowed`` is
#    ARM's code for "this would exceed a quota" *and* for other refusals, so it is quota only when
#    its message speaks of quota, transient when the resource is busy (being deleted, an
#    operation in progress), and permanent otherwise. ``Retry-After`` (seconds or an HTTP date) becomes ``retry_after``.
# 2. An unknown code falls back on the status: 429 and 5xx are transient; a long-running operation
#    that ended Failed (the poll answered 200) is a capacity error of that offer (provisioning
#    failures are about the VM being placed, and cooling the offer down is safer than disabling
#    Azure); 401/403 and any other 4xx are permanent.
# 3. Transport trouble (connection, timeouts, unreadable answers) is transient; a credential that
#    cannot get a token is permanent (admins must act).

AZURE_NOT_FOUND = ("ResourceNotFound", "NotFound")

AZURE_CAPACITY = (
    "SkuNotAvailable",
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
    "AllocationTimedOut",
    "SpotMaxPriceTooLow",
    "MaxPriceTooLow",  # spot max price below the current spot price
    "SkuNotAvailableInZone",
)

AZURE_QUOTA = (
    "QuotaExceeded",
    "OperationNotAllowed",  # only with a quota message; see map_azure_error
    "SpotVMQuotaExceeded",
    "LowPriorityQuotaExceeded",
)

AZURE_TRANSIENT = (
    "TooManyRequests",
    "SubscriptionRequestsThrottled",
    "TenantRequestsThrottled",
    "ResourceRequestsThrottled",
    "OperationPreempted",
    "RetryableError",
    "InternalServerError",
    "InternalOperationError",
    "InternalExecutionError",
    "ServiceUnavailable",
    "GatewayTimeout",
    "RequestTimeout",
    "Conflict",  # another operation on the same resource is in progress
    "OperationInProgress",
)

AZURE_PERMANENT = (
    "AuthenticationFailed",
    "InvalidAuthenticationToken*",
    "ExpiredAuthenticationToken",
    "AuthorizationFailed",
    "LinkedAuthorizationFailed",
    "InvalidParameter",
    "InvalidRequestContent",
    "InvalidRequestFormat",
    "BadRequest",
    "SubscriptionNotFound",
    "ResourceGroupNotFound",
    "InvalidSubscriptionId",
    "InvalidResourceReference",
    "InvalidResourceName",
    "ImageNotFound",
    "PlatformImageNotFound",
    "InvalidTemplate",
    "PropertyChangeNotAllowed",
    "MissingSubscriptionRegistration",
    "NoRegisteredProviderFound",
    "LocationNotAvailableForResourceType",
    "DisallowedOperation",
    "RequestDisallowedByPolicy",
)

AZURE_CODES = CodeTable.build(
    (NotFound, AZURE_NOT_FOUND),
    (QuotaError, AZURE_QUOTA),
    (CapacityError, AZURE_CAPACITY),
    (TransientProviderError, AZURE_TRANSIENT),
    (PermanentProviderError, AZURE_PERMANENT),
)


def azure_error_code(exc: BaseException) -> str:
    """The ARM error code of an azure-core ``HttpResponseError`` ("" when it has none)."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    return str(code or "")


def azure_retry_after(exc: BaseException) -> float | None:
    """``Retry-After`` of the response behind ``exc`` in seconds (delta or HTTP date), else None."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - time.time())


def map_azure_error(exc: BaseException, *, offer_key: str = "") -> ProviderError:
    """Map an azure-core/azure-identity exception onto burst's error tree (rules above). Returns
    it; the caller raises it (``raise map_azure_error(e, offer_key=...) from e``)."""
    if isinstance(exc, ProviderError):
        return exc
    from azure.core import exceptions as ax

    name = type(exc).__name__
    if isinstance(exc, ax.HttpResponseError) and exc.status_code is not None:
        code = azure_error_code(exc)
        status = int(exc.status_code or 0)
        error = getattr(exc, "error", None)
        detail = str(getattr(error, "message", "") or exc.reason or "")
        message = _cut(f"Azure {code or 'error'} (HTTP {status}): {detail}".rstrip(": "))
        retry_after = azure_retry_after(exc)
        cls = AZURE_CODES.classify(code)
        if code == "OperationNotAllowed" and "quota" not in detail.lower():
            # not a quota: a resource busy being deleted or changed will let us try again; any
            # other refusal (a disabled subscription, a policy) needs an admin
            busy = any(w in detail.lower() for w in ("being deleted", "marked for deletion", "in progress"))
            cls = TransientProviderError if busy else PermanentProviderError
        if cls is None:
            if status == 429 or status >= 500:
                cls = TransientProviderError
            elif status in (200, 201, 202) or (code and status < 400):
                cls = CapacityError  # a long-running operation that ended Failed
            else:
                cls = PermanentProviderError
        return cls(message, provider="azure", code=code or f"HTTP{status}", offer_key=offer_key, retry_after=retry_after)
    if isinstance(exc, ax.ClientAuthenticationError):  # no token (azure-identity), or a 401 without body
        return PermanentProviderError(_cut(f"Azure {name}: {exc}"), provider="azure", code=name, offer_key=offer_key)
    transient_types: tuple[type[BaseException], ...] = (
        ax.ServiceRequestError,  # connection refused, DNS, TLS
        ax.ServiceResponseError,  # connection dropped, read timeout
        ax.DecodeError,
        ax.IncompleteReadError,
        TimeoutError,
        ConnectionError,
    )
    if isinstance(exc, transient_types):
        return TransientProviderError(_cut(f"Azure {name}: {exc}"), provider="azure", code=name, offer_key=offer_key)
    if isinstance(exc, ax.AzureError):
        return TransientProviderError(_cut(f"Azure {name}: {exc}"), provider="azure", code=name, offer_key=offer_key)
    return PermanentProviderError(_cut(f"Azure {name}: {exc}"), provider="azure", code=name, offer_key=offer_key)


def map_provider_error(exc: BaseException, *, provider: str, offer_key: str = "") -> ProviderError:
    """Dispatch on the provider name: ``"aws"`` or ``"azure"``."""
    if provider == "aws":
        return map_aws_error(exc, offer_key=offer_key)
    if provider == "azure":
        return map_azure_error(exc, offer_key=offer_key)
    raise ValueError(f"unknown provider {provider!r}")
