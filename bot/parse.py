"""A strict parser for ``/burst`` command text: typed commands, or a :class:`ParseError` with the
usage line of the subcommand that was meant.

Pure and fast (it runs before the 3-second ack): no store, no clock, no network. It checks syntax
and bounds only; the service checks meaning (known GPU models, allowed regions, quotas). Anything
it does not recognise exactly is an error: no guessing, no partial matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from burst.ondemand.messages import strip_unsafe
from burst.ondemand.service import RequestArgs

MAX_TEXT = 4000
MAX_NOTE = 200
MAX_GPUS = 1024
MAX_HOURS = 10_000.0

USAGE: dict[str, str] = {
    "request": "/burst request <N>x<gpu> [for <duration>] [on aws|azure] [spot] [region <region>] [note <text>]",
    "extend": "/burst extend <request-id> <duration>",
    "release": "/burst release <request-id>",
    "list": "/burst list [all]",
    "show": "/burst show <request-id>",
    "key": "/burst key set <ssh-public-key>",
    "status": "/burst status",
    "budget": "/burst budget [set <budget> soft|hard <usd>]",
    "budget set": "/burst budget set <site:month|site:day|team:<team>:month|team:<team>:day> soft|hard <usd, 0 removes>",
    "approve": "/burst approve <request-id>",
    "reject": "/burst reject <request-id> [reason]",
    "gc": "/burst gc schedule <when> <duration> <job-file> [nodes N] [burst-preempted] [note] | gc list | gc show <id> | gc cancel <id>",
    "gc schedule": "/burst gc schedule <when: 2026-05-01T09:00Z or +2h> <duration> <job-file: Slurm script, or .yaml Kubernetes Job> "
                   "[nodes N] [burst-preempted] [note]",
    "gc show": "/burst gc show <gc-id>",
    "gc cancel": "/burst gc cancel <gc-id>",
    "help": "/burst help",
}

HELP = "\n".join(
    [
        "*burst*: on-demand cloud GPUs and the state of the cluster.",
        "• `" + USAGE["request"] + "`  e.g. `/burst request 2xA100 for 8h on aws`",
        "• `" + USAGE["extend"] + "`  e.g. `/burst extend r-1a2b3c 2h`",
        "• `" + USAGE["release"] + "`",
        "• `" + USAGE["list"] + "`, `" + USAGE["show"] + "`",
        "• `" + USAGE["key"] + "`  (ed25519, ecdsa, or RSA of 2048 bits or more)",
        "• `/burst status`, `/burst budget`",
        "• admins: `" + USAGE["approve"] + "`, `" + USAGE["reject"] + "`, `/burst gc schedule|list|show|cancel`, "
        "`/burst budget set <budget> soft|hard <usd>`",
        "Durations: `90m`, `4h`, `1h30m`, `2d`. Requests within your quota start at once; others wait for an admin.",
    ]
)


class ParseError(ValueError):
    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def render(self) -> str:
        """The reply: the message (whatever of the user's text it quotes shows control and
        bidi-override characters as visible escapes), the usage line and the help hint."""
        out = f":warning: {strip_unsafe(self.message)}"
        if self.usage:
            out += f"\nUsage: `{self.usage}`"
        return out + "\nType `/burst help` for every command."


# ---- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Request:
    args: RequestArgs


@dataclass(frozen=True, slots=True)
class Extend:
    request_id: str
    hours: float


@dataclass(frozen=True, slots=True)
class Release:
    request_id: str


@dataclass(frozen=True, slots=True)
class List:
    all_users: bool = False


@dataclass(frozen=True, slots=True)
class Show:
    request_id: str


@dataclass(frozen=True, slots=True)
class KeySet:
    key: str


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Budget:
    pass


@dataclass(frozen=True, slots=True)
class BudgetSet:
    """``/burst budget set site:month hard 5000`` (admins); the values are checked by the
    service (burst.budgets), which names what is wrong."""

    budget: str
    level: str
    amount: str


@dataclass(frozen=True, slots=True)
class Approve:
    request_id: str


@dataclass(frozen=True, slots=True)
class Reject:
    request_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GcSchedule:
    start_at: float | None  # absolute POSIX time, or None when relative
    start_in_s: float | None  # "+2h": relative to when the service handles it
    duration_s: float
    job: str  # path of the challenge job (a Slurm batch script, or a Kubernetes Job manifest)
    note: str = ""
    nodes: int = 0  # 0: the whole on-prem cluster
    burst_preempted: bool = False


@dataclass(frozen=True, slots=True)
class GcList:
    pass


@dataclass(frozen=True, slots=True)
class GcShow:
    challenge_id: str


@dataclass(frozen=True, slots=True)
class GcCancel:
    challenge_id: str


Command = (
    Help | Request | Extend | Release | List | Show | KeySet | Status | Budget | BudgetSet | Approve | Reject
    | GcSchedule | GcList | GcShow | GcCancel
)
ADMIN_COMMANDS = (Approve, Reject, GcSchedule, GcCancel, BudgetSet)

# ---- tokens ----------------------------------------------------------------------------------

_GPU = re.compile(r"([0-9]{1,6})[xX]([A-Za-z][A-Za-z0-9-]{0,31})")
_DURATION_PART = re.compile(r"([0-9]{1,6}(?:\.[0-9]{1,3})?)(min|d|h|m)")
_DURATION = re.compile(r"(?:[0-9]{1,6}(?:\.[0-9]{1,3})?(?:min|d|h|m))+|[0-9]{1,6}(?:\.[0-9]{1,3})?")
_REGION = re.compile(r"[a-z]{2,}[a-z0-9-]{1,30}")
_REQUEST_ID = re.compile(r"r-[0-9a-f]{6}")
_GC_ID = re.compile(r"gc-[0-9a-f]{6}")
_JOB = re.compile(r"[A-Za-z0-9/~.][A-Za-z0-9._:/@=+~-]{0,255}")  # a file path on the bot's host
_WHEN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?(?:Z|[+-][0-9]{2}:[0-9]{2})?")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0}


def _shown(token: str) -> str:
    """A user token, safe to echo: escaped for Slack, no backticks, short."""
    t = token[:24].replace("`", "'").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return t + ("…" if len(token) > 24 else "")


def parse_duration_s(token: str, usage: str) -> float:
    """``90m``, ``4h``, ``1h30m``, ``2d``, or a bare number of hours."""
    t = token.lower()
    if not _DURATION.fullmatch(t):
        raise ParseError(f"`{_shown(token)}` is not a duration (try `90m`, `4h`, `1h30m`, `2d`).", usage)
    parts = _DURATION_PART.findall(t)
    seconds = sum(float(n) * _UNIT_S[u] for n, u in parts) if parts else float(t) * 3600.0
    if not 0 < seconds <= MAX_HOURS * 3600:
        raise ParseError("The duration must be more than 0 and at most 10000 h.", usage)
    return seconds


def _request_id(token: str | None, usage: str) -> str:
    if token is None:
        raise ParseError("A request id is missing.", usage)
    t = token.lower()
    if not _REQUEST_ID.fullmatch(t):
        raise ParseError(f"`{_shown(token)}` is not a request id (they look like `r-1a2b3c`).", usage)
    return t


def _gc_id(token: str | None, usage: str) -> str:
    if token is None:
        raise ParseError("A grand challenge id is missing.", usage)
    t = token.lower()
    if not _GC_ID.fullmatch(t):
        raise ParseError(f"`{_shown(token)}` is not a grand challenge id (they look like `gc-1a2b3c`).", usage)
    return t


def _no_more(rest: list[str], usage: str) -> None:
    if rest:
        raise ParseError(f"Unexpected `{_shown(rest[0])}`.", usage)


def _free_text(tokens: list[str], what: str, usage: str) -> str:
    text = " ".join(tokens)
    if len(text) > MAX_NOTE:
        raise ParseError(f"The {what} is too long ({len(text)} characters, at most {MAX_NOTE}).", usage)
    return text


# ---- the parser ------------------------------------------------------------------------------


def parse(text: str) -> Command:
    if not isinstance(text, str):
        raise ParseError("No command text.", USAGE["help"])
    if len(text) > MAX_TEXT:
        raise ParseError(f"That command is too long ({len(text)} characters).", USAGE["help"])
    tokens = text.split()
    if not tokens:
        return Help()
    verb, rest = tokens[0].lower(), tokens[1:]
    if verb == "help":
        return Help()
    if verb == "request":
        return _parse_request(rest)
    if verb == "extend":
        u = USAGE["extend"]
        if len(rest) != 2:
            raise ParseError("`extend` takes a request id and a duration.", u)
        return Extend(_request_id(rest[0], u), parse_duration_s(rest[1], u) / 3600.0)
    if verb == "release":
        u = USAGE["release"]
        rid = _request_id(rest[0] if rest else None, u)
        _no_more(rest[1:], u)
        return Release(rid)
    if verb == "list":
        u = USAGE["list"]
        if rest and rest[0].lower() == "all":
            _no_more(rest[1:], u)
            return List(True)
        _no_more(rest, u)
        return List(False)
    if verb == "show":
        u = USAGE["show"]
        rid = _request_id(rest[0] if rest else None, u)
        _no_more(rest[1:], u)
        return Show(rid)
    if verb == "key":
        u = USAGE["key"]
        if not rest or rest[0].lower() != "set":
            raise ParseError("Did you mean `key set`?", u)
        if len(rest) < 3:
            raise ParseError("Paste the whole public key: its type, then the base64 body.", u)
        return KeySet(" ".join(rest[1:]))
    if verb == "budget" and rest and rest[0].lower() == "set":
        u = USAGE["budget set"]
        if len(rest) != 4:
            raise ParseError("Say which budget, which level and how many dollars, e.g. `budget set site:month hard 5000`.", u)
        if rest[2].lower() not in ("soft", "hard"):
            raise ParseError(f"`{_shown(rest[2])}` is not a level: say `soft` or `hard`.", u)
        return BudgetSet(rest[1][:80], rest[2].lower(), rest[3][:40])
    if verb in ("status", "budget"):
        _no_more(rest, USAGE[verb])
        return Status() if verb == "status" else Budget()
    if verb == "approve":
        u = USAGE["approve"]
        rid = _request_id(rest[0] if rest else None, u)
        _no_more(rest[1:], u)
        return Approve(rid)
    if verb == "reject":
        u = USAGE["reject"]
        rid = _request_id(rest[0] if rest else None, u)
        return Reject(rid, _free_text(rest[1:], "reason", u))
    if verb == "gc":
        return _parse_gc(rest)
    raise ParseError(f"Unknown command `{_shown(tokens[0])}`.", USAGE["help"])


def _parse_request(rest: list[str]) -> Request:
    u = USAGE["request"]
    if not rest:
        raise ParseError("Say how many GPUs of which model, e.g. `2xA100`.", u)
    m = _GPU.fullmatch(rest[0])
    if m is None:
        raise ParseError(f"`{_shown(rest[0])}` is not `<N>x<gpu>` (e.g. `2xA100`).", u)
    gpus = int(m.group(1))
    if not 1 <= gpus <= MAX_GPUS:
        raise ParseError(f"The GPU count must be between 1 and {MAX_GPUS}.", u)
    model = m.group(2)
    hours: float | None = None
    cloud = region = note = ""
    spot = False
    seen: set[str] = set()
    i = 1
    while i < len(rest):
        word = rest[i].lower()
        if word in seen:
            raise ParseError(f"`{word}` is given twice.", u)
        seen.add(word)
        if word == "note":
            if i + 1 >= len(rest):
                raise ParseError("`note` needs some text after it.", u)
            note = _free_text(rest[i + 1 :], "note", u)
            break
        if word == "spot":
            spot = True
            i += 1
            continue
        if i + 1 >= len(rest):
            if word in ("for", "on", "region"):
                raise ParseError(f"`{word}` needs a value after it.", u)
            raise ParseError(f"Unexpected `{_shown(rest[i])}`.", u)
        value = rest[i + 1]
        if word == "for":
            hours = parse_duration_s(value, u) / 3600.0
        elif word == "on":
            cloud = value.lower()
            if cloud not in ("aws", "azure"):
                raise ParseError(f"`{_shown(value)}` is not a cloud: use `aws` or `azure`.", u)
        elif word == "region":
            region = value.lower()
            if not _REGION.fullmatch(region):
                raise ParseError(f"`{_shown(value)}` is not a region name (e.g. `us-east-1`, `eastus`).", u)
        else:
            raise ParseError(f"Unexpected `{_shown(rest[i])}`.", u)
        i += 2
    return Request(RequestArgs(gpus=gpus, gpu_model=model, hours=hours, cloud=cloud, region=region, spot=spot, note=note))


def _parse_gc(rest: list[str]) -> Command:
    if not rest:
        raise ParseError("`gc` needs a subcommand.", USAGE["gc"])
    sub, args = rest[0].lower(), rest[1:]
    if sub == "list":
        _no_more(args, USAGE["gc"])
        return GcList()
    if sub in ("show", "cancel"):
        u = USAGE[f"gc {sub}"]
        cid = _gc_id(args[0] if args else None, u)
        _no_more(args[1:], u)
        return GcShow(cid) if sub == "show" else GcCancel(cid)
    if sub == "schedule":
        u = USAGE["gc schedule"]
        if len(args) < 3:
            raise ParseError("`gc schedule` takes a start time, a duration and a job.", u)
        when, dur, job = args[0], args[1], args[2]
        start_at: float | None = None
        start_in: float | None = None
        if when.startswith("+"):
            start_in = parse_duration_s(when[1:], u)
        elif _WHEN.fullmatch(when):
            try:
                dt = datetime.fromisoformat(when)
            except ValueError:
                raise ParseError(f"`{_shown(when)}` is not a valid date and time.", u) from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            start_at = dt.timestamp()
        else:
            raise ParseError(f"`{_shown(when)}` is not a start time (use `2026-05-01T09:00Z` or `+2h`).", u)
        duration = parse_duration_s(dur, u)
        if not _JOB.fullmatch(job):
            raise ParseError(f"`{_shown(job)}` is not a job file path (letters, digits and ._:/@=+~- only).", u)
        opts = args[3:]
        nodes, burst_preempted = 0, False
        while opts:
            word = opts[0].lower()
            if word == "nodes":
                if len(opts) < 2 or not re.fullmatch(r"[0-9]{1,6}", opts[1]):
                    raise ParseError("`nodes` takes a whole number of nodes (0: the whole on-prem cluster).", u)
                nodes, opts = int(opts[1]), opts[2:]
            elif word in ("burst-preempted", "--burst-preempted"):
                burst_preempted, opts = True, opts[1:]
            else:
                break
        return GcSchedule(start_at, start_in, duration, job, _free_text(opts, "note", u), nodes, burst_preempted)
    raise ParseError(f"Unknown `gc` subcommand `{_shown(rest[0])}`.", USAGE["gc"])
