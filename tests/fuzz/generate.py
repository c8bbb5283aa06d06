"""Seeded generators of hostile inputs for the fuzz suite: YAML config documents and CSV traces.

Deterministic (``random.Random(seed)``), so a failure names the seed and index that reproduce it.
Each generator mixes four families: valid documents, structural nonsense with the right keys,
YAML/CSV features used as weapons (aliases, anchors, tags, nesting, duplicate keys, BOMs,
quotes), and byte-level mutations of valid documents.
"""

from __future__ import annotations

import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED_CONFIGS = [(ROOT / "docs" / n).read_bytes() for n in ("burst.example.yaml", "burst.production.yaml")]

KEYS = {
    "": ["cluster", "database_url", "tick_interval_s", "orphan_grace_s", "lease_ttl_s", "queue", "clouds", "offers",
         "policy", "budget", "backoff", "grand_challenge", "mirror", "slack"],
    "queue": ["kind", "sim", "slurm", "kubernetes", "jsonfile"],
    "policy": ["burst_enabled", "wait_target_min", "wait_threshold_min", "idle_timeout_min", "max_instances",
               "pack_min_saving", "gang_gpus_per_node"],
    "budget": ["month_usd", "day_usd"],
    "backoff": ["base_s", "quota_base_s", "cap_s"],
    "offers": ["regions", "accelerators", "allow_spot", "min_gpu_memory_gib", "catalog"],
    "clouds": ["aws", "azure"],
    "grand_challenge": ["notice_hours", "drain_window_min", "max_duration_hours"],
}
SCALARS = [
    "0", "-1", "1e309", "-1e309", ".nan", ".inf", "-.inf", "1", "30", "3.5", "99999999999999999999999", "true", "false",
    "null", "~", "''", '""', "yes", "no", "0x1F", "0o17", "1_000", "2026-01-01", "2026-01-01T00:00:00Z", "12:30:00",
    "sim", "slurm", "kubernetes", "jsonfile", "mysql://root:hunter2@db/x", "postgresql+psycopg://u:pw@h/db",
    "sqlite:///tmp/x.db", "sqlite://", "garbage", "'\\x00'", '"\\u202e\\n\\r"', "!!binary aGVsbG8=",
    "!!python/object/apply:os.system ['true']", "!!str 5", "!!int x", "!!float nope", "!!set {a, b}", "!!omap [a: 1]",
    "[1, 2, 3]", "{a: 1}", "[]", "{}", "&x 1", "*x", "'" + "A" * 5000 + "'", "\"\\t\"", "- a", "? a",
]


def _scalar(r: random.Random) -> str:
    s = r.choice(SCALARS)
    if r.random() < 0.1:
        s = str(r.uniform(-1e6, 1e6))
    if r.random() < 0.05:
        s = "'" + "".join(chr(r.randrange(1, 0x3000)) for _ in range(r.randrange(1, 40))).replace("'", "''") + "'"
    return s


def _mapping(r: random.Random, section: str, indent: int, depth: int) -> str:
    out = []
    keys = KEYS.get(section, KEYS[""])
    for _ in range(r.randrange(0, 6)):
        key = r.choice(keys) if r.random() < 0.8 else r.choice(["colour", "x" * r.randrange(1, 300), "<<", "? [a]", "1", "null"])
        pad = " " * indent
        if depth < 4 and key in KEYS and r.random() < 0.7:
            out.append(f"{pad}{key}:\n{_mapping(r, key, indent + 2, depth + 1)}")
        else:
            out.append(f"{pad}{key}: {_scalar(r)}")
    return "\n".join(out) + "\n"


def _bomb(r: random.Random) -> str:
    width, levels = r.randrange(2, 12), r.randrange(2, 12)
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * width)}]")
    lines.append(f"policy: {{max_instances: *a{levels - 1}}}" if r.random() < 0.5 else f"cluster: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def _deep(r: random.Random) -> str:
    n = r.choice([10, 49, 50, 51, 200, 5000, 20000])
    if r.random() < 0.5:
        return "policy: " + "[" * n + "]" * n + "\n"
    if r.random() < 0.5:
        return "policy: " + "{a: " * n + "1" + "}" * n + "\n"
    return "policy:\n" + "".join(" " * (2 * i) + "-\n" for i in range(1, min(n, 400)))


def _weapon(r: random.Random) -> str:
    pick = r.randrange(9)
    if pick == 0:
        return _bomb(r)
    if pick == 1:
        return _deep(r)
    if pick == 2:  # duplicate keys, at any level
        sec = r.choice(["budget", "policy", "backoff"])
        a, b = r.choice(KEYS[sec]), r.choice(KEYS[sec])
        return f"{sec}:\n  {a}: 1\n  {b}: 2\n{sec}:\n  {a}: 3\n" if r.random() < 0.5 else f"{sec}:\n  {a}: 1\n  {a}: 2\n"
    if pick == 3:  # many unknown keys
        return "".join(f"k{i}: {i}\n" for i in range(r.randrange(21, 3000)))
    if pick == 4:  # self-referencing anchor, merge keys
        return r.choice(["a: &a [*a]\n", "a: &a {b: *a}\n", "base: &b {month_usd: 5}\nbudget: {<<: *b, day_usd: 1}\n",
                         "budget: {<<: [*nope]}\n", "budget: &b\n  <<: *b\n"])
    if pick == 5:  # multiple documents, directives, odd scalars
        return r.choice(["---\na: 1\n---\nb: 2\n", "%YAML 1.1\n---\ncluster: x\n", "%TAG ! tag:x,2000:\n---\n!a 1\n",
                         "...\n", "--- |\n  text\n", "? |\n  k\n: v\n", "\t- tab\n", "cluster: \"unterminated\n"])
    if pick == 6:  # a huge document
        return "cluster: " + "a" * r.choice([1000, 300_000]) + "\n"
    if pick == 7:  # the top level is not a mapping
        return r.choice(["- 1\n- 2\n", "42\n", "'text'\n", "null\n", "[]\n", "!!set {a}\n"])
    return "database_url: " + r.choice(["mysql://root:hunter2@db/x", "postgresql://u:s3cr3t@h:99999/db", "sqlite:relative",
                                        "oracle://sys:pw@x", "postgresql://u:pw@/db", "garbage with spaces"]) + "\n"


def _mutate(r: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(r.randrange(1, 8)):
        op = r.randrange(4)
        if not b:
            break
        i = r.randrange(len(b))
        if op == 0:
            b[i] = r.randrange(256)
        elif op == 1:
            del b[i : i + r.randrange(1, 40)]
        elif op == 2:
            b[i:i] = bytes(r.randrange(256) for _ in range(r.randrange(1, 8)))
        else:
            j = r.randrange(len(b))
            b[i:i] = b[j : j + r.randrange(1, 80)]
    return bytes(b)


def config_documents(n: int, seed: int = 12) -> list[bytes]:
    r = random.Random(seed)
    docs: list[bytes] = []
    for _ in range(n):
        family = r.randrange(4)
        if family == 0:
            doc = r.choice(SEED_CONFIGS)
        elif family == 1:
            doc = _mapping(r, "", 0, 0).encode()
        elif family == 2:
            doc = _weapon(r).encode()
        else:
            doc = _mutate(r, r.choice(SEED_CONFIGS))
        if r.random() < 0.05:
            doc = b"\xef\xbb\xbf" + doc
        docs.append(doc)
    return docs


# ---- CSV traces -----------------------------------------------------------------------------------

ITP_HEADER = "job_id,submission_time,duration,num_gpu"
CSV_HEADER = "id,submit_time,duration,gpus,nodes,team,owner,may_burst,image,gpu_model"
FIELDS = ["0", "1", "-1", "8", "9", "16", "64", "1e9", "1e400", "nan", "inf", "-inf", "0.5", "x", "", " ", "1,5", '"1"', '"a""b"',
          "true", "false", "maybe", "99999999999", "1_0", "0x10", "١", "\u202e5", "\x00", '"multi\nline"', "A100"]


def _clean(r: random.Random, fmt: str, c: int) -> str:
    if c == 0:
        return f"j{r.randrange(10**6)}"
    if c in (1, 2):
        return str(r.randrange(1, 100_000))
    if c == 3:
        return str(r.choice([1, 2, 4, 8, 16, 32]))
    # csv's optional columns: nodes, team, owner, may_burst, image, gpu_model
    return ["", "team-a", "alice", r.choice(["true", "false", ""]), "harbor.local/x:1", "A100"][c - 4] if fmt == "csv" else ""


def _row(r: random.Random, fmt: str, ncols: int, noise: float) -> str:
    k = ncols + (r.choice([-1, 1]) if r.random() < noise / 3 else 0)
    cells = [r.choice(FIELDS) if r.random() < noise else _clean(r, fmt, c if c < ncols else 0) for c in range(max(k, 0))]
    return ",".join(cells)


def trace_documents(n: int, seed: int = 12) -> list[tuple[str, bytes]]:
    """``(format, bytes)`` pairs."""
    r = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for _ in range(n):
        fmt = r.choice(["itp", "csv"])
        header = ITP_HEADER if fmt == "itp" else CSV_HEADER
        ncols = header.count(",") + 1
        family = r.randrange(5)
        noise = 0.0 if r.random() < 0.4 else r.choice([0.01, 0.05, 0.2, 0.5])
        if family == 0 and r.random() < 0.5:  # header games
            header = r.choice([header.upper(), header.replace(",", ";"), " " + header.replace(",", " , "), "", header + ",extra",
                               ",".join(reversed(header.split(","))), header.split(",", 1)[1], '"' + header + '"'])
        body = "\n".join(_row(r, fmt, ncols, noise) for _ in range(r.randrange(0, 30)))
        text = f"{header}\n{body}\n"
        data = text.encode("utf-8")
        if family == 1:
            data = _mutate(r, data)
        elif family == 2:
            data = b"\xef\xbb\xbf" + data
        elif family == 3 and r.random() < 0.3:
            data = data.replace(b"\n", r.choice([b"\r\n", b"\r", b"\n\n"]))
        if r.random() < 0.02:
            data += b"a" * 200_000 + b"\n"  # one huge field
        if r.random() < 0.02:
            data += ("\n" + _row(r, fmt, ncols, noise)).encode() * 2000
        out.append((fmt, data))
    return out
