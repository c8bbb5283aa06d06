"""Cloud-neutral node bootstrap: the user data a burst instance boots with, and the containerd
mirror block that makes it pull Harbor images from its region's registry.

One module for every Provider (AWS and Azure): nothing here knows a cloud SDK. A provider
fills :func:`node_variables` from a :class:`~burst.domain.LaunchSpec` and its own settings, adds
its ``template_vars``, and renders a template from :func:`load_template` with
:func:`render_user_data`.

Templates
---------
A template is a file path, ``builtin:slurm`` / ``builtin:k8s`` (shipped in
``providers/templates/``), or inline text (anything containing a newline). It is a
:class:`string.Template`: ``$name`` / ``${name}`` are burst's variables, ``$$`` is a literal ``$``
(write shell variables as ``$${VAR}``). An unknown ``$name`` is a :class:`ConfigError`. Every
value must match ``[A-Za-z0-9._:/@,=+-]*`` so that it is inert in a shell script. The builtin
templates splice shared parts in at ``# @include <part>.sh`` lines (one level).

The containerd mirror rule
--------------------------
:func:`containerd_mirror_url` is the one rule for where containerd finds a mirror
``host[:port][/prefix]``; both :func:`containerd_hosts_toml` (written by the mirror service and
``burst mirror``) and the ``mirror_url`` template variable use it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from burst.domain import LaunchSpec
from burst.errors import ConfigError

USER_DATA_VARIABLES: Mapping[str, str] = {
    "cluster": "burst cluster name (the burst:cluster tag)",
    "instance_id": "burst's intent id (the burst:id tag; the ClientToken on AWS, the VM name on Azure)",
    "node_name": "scheduler node name for this instance (node_name_prefix + intent id)",
    "provider": "the cloud: 'aws' or 'azure'",
    "region": "the cloud region, e.g. us-east-1 or eastus",
    "zone": "zone from the offer, e.g. use1-az1",
    "instance_type": "instance type (VM size), e.g. p4d.24xlarge",
    "gpu_model": "GPU model from the offer, e.g. A100",
    "gpus": "GPU count of the instance",
    "gpu_gres_type": "GPU model as a Slurm GRES type, lower case: a100, a100_80gb",
    "market": "'on-demand' or 'spot'",
    "purpose": "overflow, on-demand or grand-challenge",
    "harbor_host": "on-prem Harbor registry host[:port]",
    "mirror_host": "this region's registry mirror host[:port][/prefix] (ECR, ACR), as configured",
    "mirror_registry": "the mirror's registry host[:port] alone; empty when no mirror is configured",
    "mirror_url": "containerd host URL of the mirror: https://host or https://host/v2/<prefix>",
    "mirror_override_path": "'true' when mirror_url carries the API root (a repository prefix)",
    "mirror_auth": "how the node gets a mirror pull token: ecr, acr or none",
    "gang_id": "the gang this instance belongs to, '' when none (builtin:k8s registers it held)",
}
SAFE_VALUE = re.compile(r"[A-Za-z0-9._:/@,=+\-]*")
BUILTIN_TEMPLATES = {"builtin:slurm": "userdata-slurm.sh", "builtin:k8s": "userdata-k8s.sh"}

_INCLUDE = re.compile(r"^# @include ([a-z0-9{}-]+\.sh)$", re.M)
CLOUDS = ("aws", "azure")
_ECR_HOST = re.compile(r"^[0-9]{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?(?::[0-9]+)?$")
_TOML_SAFE = re.compile(r"^[A-Za-z0-9.:\-\[\]]+(?:/[a-z0-9._\-/]+)?$")


# ---- templates --------------------------------------------------------------------------------


def builtin_text(name: str) -> str:
    """A file shipped in ``providers/templates/``, as is (no includes spliced)."""
    return resources.files("providers").joinpath("templates", name).read_text("utf-8")


def _with_includes(text: str, cloud: str = "aws") -> str:
    """Splice shipped parts into a builtin template at ``# @include <part>.sh`` lines (one level).
    Written by hand because string.Template has no includes, and the Slurm and Kubernetes
    templates share their whole containerd mirror block. ``{cloud}`` in a part's name picks the
    cloud's own part: how a node reads its secrets (SSM with the instance role on AWS, Key Vault
    with the managed identity on Azure) is the one thing the templates do differently per cloud."""
    def part(m: re.Match[str]) -> str:
        body = builtin_text(m.group(1).replace("{cloud}", cloud))
        # the part's own header (what it is, where it goes) stays in the part file
        return body[body.index("# ----") :].rstrip("\n")

    return _INCLUDE.sub(part, text)


def template_name_problem(source: str) -> str | None:
    """Why ``source`` cannot name a template, found without reading any file: a ``builtin:``
    name that is not shipped (``builtin:kubeadm``) would otherwise be taken for a file path and
    fail only when the first instance is launched. None when it may be fine."""
    if source.startswith("builtin:") and source not in BUILTIN_TEMPLATES:
        return f"unknown builtin template {source[:40]!r}; the shipped ones are {', '.join(sorted(BUILTIN_TEMPLATES))}"
    return None


def known_template(source: str) -> str:
    """``source`` itself, or ValueError with :func:`template_name_problem`'s reason: the
    validator both clouds' ``user_data_template`` settings use (``AfterValidator``)."""
    problem = template_name_problem(source)
    if problem is not None:
        raise ValueError(problem)
    return source


def load_template(source: str, *, where: str = "user_data_template", cloud: str = "aws") -> str:
    """Template text from ``builtin:slurm``/``builtin:k8s``, a file path, or inline text.
    ``where`` names the setting in errors (e.g. ``aws.user_data_template``); ``cloud`` picks the
    builtin templates' per-cloud parts (see :func:`_with_includes`)."""
    if not source:
        return ""
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r}")
    if source in BUILTIN_TEMPLATES:
        return _with_includes(builtin_text(BUILTIN_TEMPLATES[source]), cloud)
    problem = template_name_problem(source)
    if problem is not None:
        raise ConfigError(where, problem)
    if "\n" in source:
        return source
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(where, f"no such file: {source}")
    return path.read_text("utf-8")


def render_user_data(template: str, variables: Mapping[str, str], *, where: str = "user_data_template") -> str:
    """Fill a :class:`string.Template` strictly: unknown ``$names`` and unsafe values are errors."""
    for key, value in variables.items():
        if not SAFE_VALUE.fullmatch(value):
            raise ConfigError(f"user data variable {key}", f"value {value!r} has characters unsafe in a shell script")
    try:
        return string.Template(template).substitute(variables)
    except KeyError as e:
        raise ConfigError(where, f"unknown variable ${e.args[0]}") from None
    except ValueError as e:  # a stray '$' not followed by a name
        raise ConfigError(where, f"{e} (write a literal $ as $$)") from None


def node_variables(
    spec: LaunchSpec, *, cluster: str, provider: str, node_name: str, harbor_host: str, mirror_host: str
) -> dict[str, str]:
    """burst's own template variables (:data:`USER_DATA_VARIABLES`) for one launch."""
    offer = spec.offer
    return {
        "cluster": cluster,
        "instance_id": spec.intent_id,
        "node_name": node_name,
        "provider": provider,
        "region": offer.region,
        "zone": offer.zone,
        "instance_type": offer.instance_type,
        "gpu_model": offer.gpu_model,
        # Slurm GRES type names are matched case-sensitively; sites name them in lower case
        # (gpu:a100:8), while the catalog says "A100" / "A100-80GB".
        "gpu_gres_type": offer.gpu_model.lower().replace("-", "_"),
        "gpus": str(offer.gpu_count),
        "market": str(offer.market),
        "purpose": str(spec.purpose),
        "harbor_host": harbor_host,
        "gang_id": spec.gang_id,
        **mirror_variables(mirror_host),
    }


# ---- containerd mirror --------------------------------------------------------------------------


def mirror_variables(mirror_host: str) -> dict[str, str]:
    """User-data variables for containerd's registry mirror (see USER_DATA_VARIABLES).

    ``mirror_host`` is ``host[:port]`` optionally followed by the repository prefix burst copies
    under (:func:`containerd_mirror_url` turns that into containerd's host URL).
    """
    host = mirror_host.partition("/")[0]
    if not host:
        return {"mirror_host": "", "mirror_registry": "", "mirror_url": "", "mirror_override_path": "false",
                "mirror_auth": "none"}
    auth = "ecr" if _ECR_HOST.match(host) else "acr" if host.split(":")[0].endswith(".azurecr.io") else "none"
    url, override_path = containerd_mirror_url(mirror_host)
    return {
        "mirror_host": mirror_host,
        "mirror_registry": host,
        "mirror_url": url,
        "mirror_override_path": "true" if override_path else "false",
        "mirror_auth": auth,
    }


def containerd_mirror_url(mirror_host: str, *, insecure: bool = False) -> tuple[str, bool]:
    """containerd's host URL for a mirror ``host[:port][/prefix]``, and whether it needs
    ``override_path``: a repository prefix makes the API root ``/v2/<prefix>``, so that
    ``harbor/team/app`` is fetched as ``mirror/<prefix>/team/app``. One rule for
    :func:`containerd_hosts_toml` and for the ``mirror_url`` the user-data templates write."""
    host, _, prefix = mirror_host.partition("/")
    prefix = prefix.strip("/")
    scheme = "http" if insecure else "https"
    return (f"{scheme}://{host}/v2/{prefix}", True) if prefix else (f"{scheme}://{host}", False)


def containerd_hosts_toml(
    harbor_host: str,
    mirror_host: str,
    *,
    mirror_insecure: bool = False,
    resolve_from_mirror: bool = False,
    ca_file: str | None = None,
) -> str:
    """``/etc/containerd/certs.d/<harbor_host>/hosts.toml`` that pulls Harbor images from the mirror.

    ``mirror_host`` is ``host[:port]`` optionally followed by the repository prefix
    (``123456789012.dkr.ecr.us-east-1.amazonaws.com/burst``); with a prefix the host URL carries
    the ``/v2/<prefix>`` API root and ``override_path = true``, so ``harbor/team/app`` is fetched
    as ``mirror/burst/team/app``.

    By default the mirror gets only the ``pull`` capability: tags are still resolved at Harbor
    (the source of truth, one small request), and manifests and blobs are then fetched by digest
    from the mirror, which holds them byte-identical. When the mirror lacks a digest containerd
    falls back to Harbor. ``resolve_from_mirror`` also lets tags resolve at the mirror (no WAN
    round trip at all, but a tag moved in Harbor is seen only after the next mirror run).
    """
    for name, value in (("harbor_host", harbor_host), ("mirror_host", mirror_host)):
        if not value or not _TOML_SAFE.match(value):
            raise ValueError(f"{name} {value!r} is not host[:port][/path]")
    if ca_file is not None and ('"' in ca_file or "\n" in ca_file):
        raise ValueError("ca_file must not hold quotes or newlines")
    url, override_path = containerd_mirror_url(mirror_host, insecure=mirror_insecure)
    caps = '["pull", "resolve"]' if resolve_from_mirror else '["pull"]'
    lines = [
        "# Written by burst: pull Harbor images from the regional mirror, fall back to Harbor.",
        f'server = "https://{harbor_host}"',
        "",
        f'[host."{url}"]',
        f"  capabilities = {caps}",
    ]
    if override_path:
        lines.append("  override_path = true")
    if ca_file:
        lines.append(f'  ca = "{ca_file}"')
    return "\n".join(lines) + "\n"
