"""``burst mirror IMAGE --to aws:REGION|azure:REGION|REGISTRY``: copy one image now.

Wired into the main CLI as ``app.command("mirror")(mirror_command)``; also runnable alone as
``python -m burst.mirror_cli``. Exit codes: 0 copied, 1 the copy failed, 2 bad input (an
unparseable image reference, an unknown target, a bad config file), each with one clear line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from burst.errors import InputError, MirrorError

if TYPE_CHECKING:
    from rich.console import Console

    from providers.mirror_service import MirrorService, MirrorSettings
    from providers.oci import CopyResult
    from providers.oci import Progress as CopyProgressT

# Everything else is imported when the command runs, not when the CLI is built: ``burst
# --help`` should not pay for httpx and pydantic, and a copy pays only for what it uses (B3
# times the whole process, start-up included, against skopeo's ~50 ms).

_console: Console | None = None


def _err() -> Console:
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False)
    return _console


def _fail(message: str, code: int = 2) -> typer.Exit:
    from burst.redact import escape_control, redact

    # soft_wrap: one line whatever the terminal's width; escaped and redacted like every message
    _err().print(f"burst mirror: {escape_control(redact(message))}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def load_mirror_settings(path: Path) -> dict[str, Any]:
    """The ``mirror:`` section of a burst config file (or a file holding only that section)."""
    from burst.config import read_yaml  # bounded: size, depth, aliases, duplicate keys

    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(str(path), "expected a mapping")
    section = data.get("mirror", data) if "source" not in data else data
    if not isinstance(section, dict):
        raise InputError(str(path), "no mirror section")
    return section


def build_settings(image: str, to: str, config: Path | None, *, insecure: bool, platforms: list[str] | None,
                   parallel: int | None) -> tuple[MirrorSettings, str, str]:
    """Settings plus the (cloud, region) key that ``to`` names. Raises InputError/MirrorError."""
    from pydantic import ValidationError

    from providers.mirror_service import MirrorSettings
    from providers.oci import parse_reference
    from providers.registry_auth import credentials_from_env

    raw: dict[str, Any] = load_mirror_settings(config) if config is not None else {}
    source_registry = (raw.get("source") or {}).get("registry") if raw else None
    ref = parse_reference(image, default_registry=source_registry)
    if not raw:
        auth = "basic" if credentials_from_env(ref.registry) else "anonymous"
        raw = {"source": {"registry": ref.registry, "auth": {"method": auth}, "insecure": insecure}}
    raw.setdefault("targets", {})
    if parallel is not None:
        raw["parallel"] = parallel
    cloud, sep, region = to.partition(":")
    if sep and cloud in ("aws", "azure"):
        if not region:
            raise InputError("--to", f"{to!r}: missing region")
    else:
        # A registry: host[:port][/prefix]
        host, _, prefix = to.partition("/")
        existing = next((k for k, t in raw["targets"].items() if (t or {}).get("registry") == host), None)
        if existing is not None:
            cloud, _, region = existing.partition(":")
            if prefix:
                raw["targets"][existing]["repository_prefix"] = prefix
        else:
            cloud, region = "registry", host
            auth = "basic" if credentials_from_env(host) else "anonymous"
            raw["targets"][f"{cloud}:{region}"] = {
                "registry": host, "repository_prefix": prefix, "insecure": insecure, "auth": {"method": auth}
            }
    if platforms:
        raw["targets"][f"{cloud}:{region}"] = {**(raw["targets"].get(f"{cloud}:{region}") or {}), "platforms": platforms}
    try:
        settings = MirrorSettings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(str(config or "--to"), f"{where}: {first['msg']}") from None
    return settings, cloud, region


def mirror_command(
    image: Annotated[str, typer.Argument(help="Image to copy, e.g. harbor.example.com/team/app:v1")],
    to: Annotated[str, typer.Option("--to", help="aws:REGION, azure:REGION, or a registry HOST:PORT/PREFIX (port and prefix optional)")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="burst config file (its mirror: section)")] = None,
    platform: Annotated[list[str] | None, typer.Option("--platform", help="Copy only these os/arch (repeatable)")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain http to registries not in the config (tests)")] = False,
    parallel: Annotated[int | None, typer.Option("--parallel", min=1, max=64, help="Blobs copied at once")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON line")] = False,
) -> None:
    """Mirror IMAGE from Harbor into a cloud region's registry (or any registry), digest for digest."""
    from burst.store.memory import MemoryStore
    from providers.mirror_service import MirrorService
    from providers.oci import InvalidReference, tune_malloc_for_streaming

    try:
        settings, cloud, region = build_settings(image, to, config, insecure=insecure, platforms=platform, parallel=parallel)
        service = MirrorService(settings, MemoryStore())
        target = service.target_for(image, cloud, region)
    except (InvalidReference, InputError) as exc:
        raise _fail(str(exc)) from None
    except MirrorError as exc:
        raise _fail(str(exc)) from None
    tune_malloc_for_streaming()
    try:
        result = _run(service, image, cloud, region, show=progress and not json_out)
    except MirrorError as exc:
        raise _fail(f"{image} -> {target}: {exc}", 1) from None
    finally:
        service.close()
    if json_out:
        typer.echo(json.dumps({
            "source": result.source, "target": result.target, "digest": result.digest,
            "source_digest": result.source_digest, "bytes_uploaded": result.bytes_uploaded,
            "blobs_copied": result.blobs_copied, "blobs_skipped": result.blobs_skipped,
            "blobs_mounted": result.blobs_mounted, "seconds": round(result.seconds, 3),
        }))
    else:
        typer.echo(
            f"{result.target} {result.digest}: {result.bytes_uploaded:,} bytes uploaded, {result.blobs_copied} blobs "
            f"copied, {result.blobs_skipped} present, {result.blobs_mounted} mounted in {result.seconds:.1f}s"
        )


def _run(service: MirrorService, image: str, cloud: str, region: str, *, show: bool) -> CopyResult:
    if not show:
        return service.copy(image, cloud, region)
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TextColumn("layers {task.fields[layers]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_err(), transient=False) as bar:
        task = bar.add_task(image, total=None, layers="0/0")

        def update(p: CopyProgressT) -> None:
            bar.update(task, completed=p.bytes_done, total=p.bytes_total or None, layers=f"{p.layers_done}/{p.layers_total}")

        return service.copy(image, cloud, region, progress=update)


# Imported eagerly by our dependencies when installed, never used by this command: httpcore
# probes for trio to pick an async backend (~50 ms), httpx loads its own command-line client
# (click, rich.progress, pygments; ~45 ms). Marked absent in a process that only runs this
# command, both take their ImportError fallback. Left alone when already imported.
UNUSED_IN_CLI = ("trio", "httpx._main")


def main() -> None:  # pragma: no cover - thin wrapper
    for name in UNUSED_IN_CLI:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    typer.run(mirror_command)


if __name__ == "__main__":  # pragma: no cover
    main()
