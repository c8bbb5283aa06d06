"""AWS EC2 as a burst :class:`~burst.ports.Provider` (boto3).

What this module does, and how it keeps the Provider contract (burst/ports.py):

* **One instance per launch.** ``run_instances`` with ``MinCount=MaxCount=1``, tagged (instance
  *and* root volume) with every ``REQUIRED_TAGS`` entry, and ``ClientToken = intent id``. Real EC2
  makes a repeated token return the first instance; moto does not, so crash safety comes from the
  controller's intent row plus :meth:`AwsProvider.find` (by the ``burst:id`` tag). A repeated
  ``launch`` of the same intent in the same process returns the instance it already created.
* **Listing by tag**, in every configured region, with the paginator. A region that fails makes
  the whole listing fail: a partial list would make the controller believe instances were lost.
* **Idempotent terminate**, batched per region (<= 1000 ids a call); ids EC2 does not know are
  success.
* **Typed errors** (providers/errors.py). Retrying is botocore's own ("standard" mode with a
  bounded number of attempts) for reads and terminate. ``RunInstances`` uses a separate client
  with ``launch_max_attempts`` (default 1): EC2 sends ``InsufficientInstanceCapacity`` as an HTTP
  500, which botocore would otherwise retry, burning calls (and seconds of backoff) on an offer that
  has no capacity. The controller's offer backoff and the next tick do the pacing. No code here
  sleeps.
* **Credentials** come only from boto3's default chain (environment, shared config, SSO, instance
  or container role). They are never read, stored or logged here.

User data
---------
Rendering is cloud-neutral and lives in :mod:`providers.bootstrap`. ``user_data_template`` is a
file path, ``builtin:slurm`` / ``builtin:k8s`` (the templates shipped in ``providers/templates/``),
or inline text (anything containing a newline). It is a :class:`string.Template`: ``$name`` /
``${name}`` are burst's variables, ``$$`` is a literal ``$`` (write shell variables as
``$${VAR}``). An unknown ``$name`` is an error, found by :meth:`AwsProvider.validate`. Every value
must match ``[A-Za-z0-9._:/@,=+-]*`` so that it is inert in a shell script. The variables are
:data:`providers.bootstrap.USER_DATA_VARIABLES` plus ``template_vars`` from the settings (for
example ``slurmctld_host`` or ``k8s_api_endpoint``). A non-empty
``LaunchSpec.user_data`` is used as-is instead of the template.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from burst.domain import (
    REQUIRED_TAGS,
    TAG_CLUSTER,
    TAG_EXPIRES,
    TAG_ID,
    TAG_OWNER,
    TAG_PURPOSE,
    TAG_TEAM,
    CloudInstance,
    CloudState,
    LaunchSpec,
    Market,
    Offer,
)
from burst.errors import (
    CapacityError,
    ConfigError,
    PermanentProviderError,
    ProviderError,
)
from providers.bootstrap import (
    SAFE_VALUE,
    USER_DATA_VARIABLES,
    known_template,
    load_template,
    node_variables,
    render_user_data,
)
from providers.errors import aws_error_code, map_aws_error

log = logging.getLogger(__name__)

PROVIDER = "aws"
MAX_TERMINATE_BATCH = 1000
MAX_USER_DATA_BYTES = 16 * 1024  # EC2's limit, before base64
SPOT_INTERRUPTION_CODES = frozenset({"Server.SpotInstanceTermination", "Server.SpotInstanceShutdown"})

EC2_STATES: Mapping[str, CloudState] = {
    "pending": CloudState.PENDING,
    "running": CloudState.RUNNING,
    "stopping": CloudState.STOPPING,
    "stopped": CloudState.STOPPING,
    "shutting-down": CloudState.STOPPING,
    "terminated": CloudState.TERMINATED,
}

_TEMPLATE_SETTING = "aws.user_data_template"
_AZ_ID = re.compile(r"^[a-z]{2,}[0-9]+-(?:[a-z]+[0-9]+-)?az[0-9]+$")


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


class AwsRegionSettings(BaseModel):
    """One EC2 region burst may launch in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ami: str = Field(description="ami-... id, or an SSM parameter name ('/aws/service/...' or 'resolve:ssm:/...')")
    subnets: dict[str, str] = Field(description="AZ id (use1-az1) or AZ name (us-east-1a) -> subnet id")
    security_group_ids: list[str] = Field(default_factory=list)
    instance_profile: str | None = Field(default=None, description="instance profile name or ARN")
    key_name: str | None = None
    mirror_host: str = Field(default="", description="registry mirror for this region (user data)")
    instance_types: list[str] = Field(
        default_factory=list, description="types the catalog may offer here; checked by validate()"
    )

    @field_validator("ami")
    @classmethod
    def _ami_form(cls, v: str) -> str:
        if not (v.startswith("ami-") or v.startswith("/") or v.startswith("resolve:ssm:")):
            raise ValueError("must be an 'ami-...' id or an SSM parameter ('/...' or 'resolve:ssm:/...')")
        return v

    @field_validator("subnets")
    @classmethod
    def _subnet_form(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("at least one subnet is needed")
        for zone, subnet in v.items():
            if not subnet.startswith("subnet-"):
                raise ValueError(f"{zone}: {subnet!r} is not a subnet id")
        return v


class AwsSettings(BaseModel):
    """Everything :class:`AwsProvider` needs besides credentials (which come from boto3's chain)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: dict[str, AwsRegionSettings]
    root_volume_gib: int = Field(default=200, ge=8, le=16384)
    efa_secondary_interface_type: Literal["efa-only", "efa"] = Field(
        default="efa-only", description="EFA interfaces on network cards 1..n; 'efa' also gives each an IP"
    )
    root_volume_type: str = "gp3"
    root_device_name: str | None = Field(default=None, description="default: the AMI's RootDeviceName")
    user_data_template: Annotated[str, AfterValidator(known_template)] = Field(
        default="", description="path, builtin:slurm|builtin:k8s, or inline text"
    )
    template_vars: dict[str, str] = Field(default_factory=dict)
    harbor_host: str = ""
    node_name_prefix: str = ""
    allow_spot: bool = True
    endpoint_url: str | None = Field(default=None, description="tests (moto) or VPC endpoints")
    api_region: str | None = Field(default=None, description="region for account-wide calls; default: first region")
    max_attempts: int = Field(default=4, ge=1, le=20, description="botocore standard-mode total attempts")
    launch_max_attempts: int = Field(
        default=1, ge=1, le=10, description="attempts for RunInstances (>1 also retries capacity 500s)"
    )
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    availability_ttl_s: float = Field(default=3600.0, ge=0)
    ssm_ttl_s: float = Field(default=3600.0, ge=0)

    @field_validator("regions")
    @classmethod
    def _some_region(cls, v: dict[str, AwsRegionSettings]) -> dict[str, AwsRegionSettings]:
        if not v:
            raise ValueError("at least one region is needed")
        return v

    @model_validator(mode="after")
    def _template_vars_ok(self) -> AwsSettings:
        clash = sorted(set(self.template_vars) & set(USER_DATA_VARIABLES))
        if clash:
            raise ValueError(f"template_vars may not redefine burst's variables: {', '.join(clash)}")
        for key, value in self.template_vars.items():
            if not SAFE_VALUE.fullmatch(value):
                raise ValueError(f"template_vars.{key}: value has characters unsafe in a shell script")
        return self


# --------------------------------------------------------------------------------------------
# User data
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# EC2 description -> CloudInstance
# --------------------------------------------------------------------------------------------


def _tag_dict(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in raw.get("Tags") or ()}


def cloud_instance_from_ec2(
    raw: Mapping[str, Any], *, region: str, zone_ids: Mapping[str, str] | None = None
) -> CloudInstance:
    """Map one ``describe_instances``/``run_instances`` instance dict to a :class:`CloudInstance`.

    ``zone`` is the AZ *id* (the catalog's convention): ``Placement.AvailabilityZoneId`` when EC2
    sends it, else the AZ name mapped through ``zone_ids`` (name -> id), else the name.
    """
    tags = _tag_dict(raw)
    placement = raw.get("Placement") or {}
    zone_name = str(placement.get("AvailabilityZone") or "")
    zone = str(placement.get("AvailabilityZoneId") or (zone_ids or {}).get(zone_name, zone_name))
    state_name = str((raw.get("State") or {}).get("Name") or "")
    reason = str((raw.get("StateReason") or {}).get("Code") or "")
    spot = raw.get("InstanceLifecycle") == "spot" or (
        (raw.get("InstanceMarketOptions") or {}).get("MarketType") == "spot"
    )
    launch_time = raw.get("LaunchTime")
    launched_at: float | None = None
    if isinstance(launch_time, datetime):
        launched_at = launch_time.timestamp()
    return CloudInstance(
        cloud=PROVIDER,
        cloud_id=str(raw["InstanceId"]),
        burst_id=tags.get(TAG_ID, ""),
        region=region,
        zone=zone,
        instance_type=str(raw.get("InstanceType") or ""),
        state=EC2_STATES.get(state_name, CloudState.FAILED),
        tags=tags,
        launched_at=launched_at,
        address=str(raw.get("PrivateIpAddress") or ""),
        interrupted=reason in SPOT_INTERRUPTION_CODES,
        market=Market.SPOT if spot else Market.ON_DEMAND,
    )


def _client_token(intent_id: str) -> str:
    """EC2 accepts up to 64 ASCII characters; longer intent ids are hashed (deterministically)."""
    if len(intent_id) <= 64 and intent_id.isascii() and intent_id.isprintable():
        return intent_id
    return hashlib.sha256(intent_id.encode()).hexdigest()


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


_ID_TOKEN = re.compile(r"[^\s'\",\[\]]+")


# --------------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------------


class AwsProvider:
    """The Provider Protocol on EC2. See the module docstring for the rules it keeps."""

    name = PROVIDER

    def __init__(
        self,
        settings: AwsSettings,
        *,
        cluster: str,
        session: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not cluster:
            raise ConfigError("cluster", "a cluster name is needed (it is the burst:cluster tag)")
        import boto3.session
        from botocore.config import Config

        self.settings = settings
        self.cluster = cluster
        self._clock = clock
        self._session = session if session is not None else boto3.session.Session()
        self._lock = threading.RLock()
        common: dict[str, Any] = {
            "connect_timeout": settings.connect_timeout,
            "read_timeout": settings.read_timeout,
            "user_agent_extra": "burst",
        }
        self._config = Config(retries={"mode": "standard", "total_max_attempts": settings.max_attempts}, **common)
        self._launch_config = Config(
            retries={"mode": "standard", "total_max_attempts": settings.launch_max_attempts}, **common
        )
        self._clients: dict[tuple[str, str, str], Any] = {}
        # caches
        self._zones: dict[str, tuple[dict[str, str], dict[str, str]]] = {}  # region -> (name->id, id->name)
        self._avail: dict[str, tuple[float, dict[str, frozenset[str]]]] = {}
        self._ssm_images: dict[str, tuple[float, str]] = {}
        self._root_devices: dict[tuple[str, str], str] = {}
        self._efa: dict[tuple[str, str], int] = {}
        self._placement_groups: set[tuple[str, str]] = set()
        self._region_of: dict[str, str] = {}  # cloud id -> region
        self._launched: dict[str, CloudInstance] = {}  # intent id -> what launch() returned
        self._template_text: str | None = None

    # ---- clients ----------------------------------------------------------------------------

    def _client(self, service: str, region: str, kind: str = "default") -> Any:
        key = (service, region, kind)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._session.client(
                    service,
                    region_name=region,
                    endpoint_url=self.settings.endpoint_url,
                    config=self._launch_config if kind == "launch" else self._config,
                )
                self._clients[key] = client
            return client

    def _ec2(self, region: str) -> Any:
        return self._client("ec2", region)

    @property
    def regions(self) -> list[str]:
        return list(self.settings.regions)

    def _region_settings(self, region: str) -> AwsRegionSettings:
        try:
            return self.settings.regions[region]
        except KeyError:
            raise PermanentProviderError(
                f"region {region!r} is not configured for AWS (aws.regions)",
                provider=PROVIDER,
                code="RegionNotConfigured",
            ) from None

    # ---- region facts (cached) --------------------------------------------------------------

    def zones(self, region: str) -> tuple[dict[str, str], dict[str, str]]:
        """(AZ name -> AZ id, AZ id -> AZ name) for ``region``; cached for the provider's life."""
        with self._lock:
            cached = self._zones.get(region)
        if cached is not None:
            return cached
        resp = self._ec2(region).describe_availability_zones()
        by_name = {z["ZoneName"]: z["ZoneId"] for z in resp.get("AvailabilityZones", []) if z.get("ZoneId")}
        result = (by_name, {v: k for k, v in by_name.items()})
        with self._lock:
            self._zones[region] = result
        return result

    def availability(self, region: str) -> dict[str, set[str]]:
        """instance type -> AZ ids where EC2 offers it, cached for ``availability_ttl_s``.

        Restricted to the region's ``instance_types`` when that list is set (fewer pages).
        """
        now = self._clock()
        with self._lock:
            cached = self._avail.get(region)
        if cached is None or now - cached[0] >= self.settings.availability_ttl_s:
            kwargs: dict[str, Any] = {"LocationType": "availability-zone-id"}
            types = self._region_settings(region).instance_types
            if types:
                kwargs["Filters"] = [{"Name": "instance-type", "Values": list(types)}]
            found: dict[str, set[str]] = {}
            try:
                paginator = self._ec2(region).get_paginator("describe_instance_type_offerings")
                for page in paginator.paginate(**kwargs):
                    for row in page.get("InstanceTypeOfferings", []):
                        found.setdefault(row["InstanceType"], set()).add(row["Location"])
            except _aws_exceptions() as e:
                raise map_aws_error(e) from e
            cached = (now, {k: frozenset(v) for k, v in found.items()})
            with self._lock:
                self._avail[region] = cached
        return {k: set(v) for k, v in cached[1].items()}

    def supports(self, offer: Offer) -> bool:
        """Whether this provider's configuration can serve ``offer`` at all (region, subnet for
        the zone, spot allowed, type offered in the zone). For filtering the catalog."""
        if offer.cloud != PROVIDER or offer.region not in self.settings.regions:
            return False
        if offer.market == Market.SPOT and not self.settings.allow_spot:
            return False
        try:
            self._subnet_for(offer.region, offer.zone)
        except CapacityError:
            return False
        except _aws_exceptions() as e:
            raise map_aws_error(e) from e
        zones = self.availability(offer.region).get(offer.instance_type, set())
        return (offer.zone in zones) if offer.zone else bool(zones)

    def _subnet_for(self, region: str, zone: str) -> str:
        """Subnet for an AZ id (or name). Keys in the settings may be AZ ids or AZ names."""
        subnets = self._region_settings(region).subnets
        if not zone:
            return subnets[sorted(subnets)[0]]
        if zone in subnets:
            return subnets[zone]
        by_name, by_id = self.zones(region)
        other = by_id.get(zone) or by_name.get(zone)
        if other and other in subnets:
            return subnets[other]
        raise CapacityError(
            f"no subnet configured for zone {zone!r} in {region} (aws.regions.{region}.subnets)",
            provider=PROVIDER,
            code="NoSubnetForZone",
        )

    def _image(self, region: str) -> str:
        ami = self._region_settings(region).ami
        if ami.startswith("ami-"):
            return ami
        name = ami.removeprefix("resolve:ssm:")
        now = self._clock()
        with self._lock:
            cached = self._ssm_images.get(region)
        if cached is not None and now - cached[0] < self.settings.ssm_ttl_s:
            return cached[1]
        value = str(self._client("ssm", region).get_parameter(Name=name)["Parameter"]["Value"])
        with self._lock:
            self._ssm_images[region] = (now, value)
        return value

    def _root_device(self, region: str, image_id: str) -> str:
        if self.settings.root_device_name:
            return self.settings.root_device_name
        key = (region, image_id)
        with self._lock:
            cached = self._root_devices.get(key)
        if cached is not None:
            return cached
        images = self._ec2(region).describe_images(ImageIds=[image_id]).get("Images", [])
        if not images:
            raise PermanentProviderError(
                f"AMI {image_id} not found in {region}", provider=PROVIDER, code="InvalidAMIID.NotFound"
            )
        device = str(images[0].get("RootDeviceName") or "/dev/xvda")
        with self._lock:
            self._root_devices[key] = device
        return device

    def _efa_cards(self, region: str, instance_type: str) -> int:
        """How many EFA interfaces the type takes, one per network card (0: no EFA). Cached."""
        key = (region, instance_type)
        with self._lock:
            cached = self._efa.get(key)
        if cached is not None:
            return cached
        types = self._ec2(region).describe_instance_types(InstanceTypes=[instance_type]).get("InstanceTypes", [])
        net = (types[0].get("NetworkInfo") or {}) if types else {}
        cards = 0
        if net.get("EfaSupported"):
            most = int((net.get("EfaInfo") or {}).get("MaximumEfaInterfaces") or 1)
            cards = max(1, min(most, int(net.get("MaximumNetworkCards") or 1)))
        with self._lock:
            self._efa[key] = cards
        return cards

    def _ensure_placement_group(self, region: str, name: str, tags: Mapping[str, str]) -> None:
        """Create the cluster placement group once; an existing one (Duplicate) is success."""
        with self._lock:
            if (region, name) in self._placement_groups:
                return
        pg_tags = {k: v for k, v in tags.items() if k in REQUIRED_TAGS}
        pg_tags[TAG_ID] = name
        try:
            self._ec2(region).create_placement_group(
                GroupName=name,
                Strategy="cluster",
                TagSpecifications=[
                    {"ResourceType": "placement-group", "Tags": [{"Key": k, "Value": v} for k, v in pg_tags.items()]}
                ],
            )
        except _client_error() as e:
            if aws_error_code(e) != "InvalidPlacementGroup.Duplicate":
                raise
        with self._lock:
            self._placement_groups.add((region, name))

    # ---- user data --------------------------------------------------------------------------

    def template_text(self) -> str:
        if self._template_text is None:
            self._template_text = load_template(self.settings.user_data_template, where=_TEMPLATE_SETTING)
        return self._template_text

    def node_name(self, intent_id: str) -> str:
        return f"{self.settings.node_name_prefix}{intent_id}"

    def user_data_variables(self, spec: LaunchSpec) -> dict[str, str]:
        region = self.settings.regions.get(spec.offer.region)
        core = node_variables(
            spec,
            cluster=self.cluster,
            provider=PROVIDER,
            node_name=self.node_name(spec.intent_id),
            harbor_host=self.settings.harbor_host,
            mirror_host=region.mirror_host if region else "",
        )
        return {**self.settings.template_vars, **core}

    def render_user_data(self, spec: LaunchSpec) -> str:
        """The user data for ``spec``: ``spec.user_data`` if set, else the rendered template."""
        if spec.user_data:
            return spec.user_data
        text = self.template_text()
        return render_user_data(text, self.user_data_variables(spec), where=_TEMPLATE_SETTING) if text else ""

    # ---- Provider: launch -------------------------------------------------------------------

    def _tags_for(self, spec: LaunchSpec) -> dict[str, str]:
        """Tags for the instance and its volume. A spec whose burst:id or burst:cluster disagrees
        with the intent or this provider is refused (as the simulated provider does): such an
        instance would be invisible to this cluster's listing, i.e. leaked."""
        tags = {str(k): str(v) for k, v in spec.tags.items()}
        problem = ""
        if tags.setdefault(TAG_ID, spec.intent_id) != spec.intent_id:
            problem = f"tag {TAG_ID}={tags[TAG_ID]!r} differs from the intent id {spec.intent_id!r}"
        elif tags.setdefault(TAG_CLUSTER, self.cluster) != self.cluster:
            problem = f"tag {TAG_CLUSTER}={tags[TAG_CLUSTER]!r} is not this provider's cluster {self.cluster!r}"
        if problem:
            raise PermanentProviderError(
                problem, provider=PROVIDER, code="InvalidParameterValue", offer_key=spec.offer.key
            )
        tags.setdefault(TAG_PURPOSE, str(spec.purpose))
        tags.setdefault(TAG_OWNER, spec.owner)
        tags.setdefault(TAG_TEAM, spec.team)
        tags.setdefault(TAG_EXPIRES, "")
        tags.setdefault("Name", self.node_name(spec.intent_id))
        return tags

    def build_run_instances_request(self, spec: LaunchSpec) -> dict[str, Any]:
        """The ``run_instances`` keyword arguments for ``spec`` (may call EC2/SSM for lookups)."""
        offer = spec.offer
        region = offer.region
        cfg = self._region_settings(region)
        if offer.market == Market.SPOT and not self.settings.allow_spot:
            raise CapacityError(
                "spot is disabled for AWS (aws.allow_spot)", provider=PROVIDER, code="SpotNotAllowed", offer_key=offer.key
            )
        tags = self._tags_for(spec)
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        subnet = self._subnet_for(region, offer.zone)
        image = self._image(region)
        user_data = self.render_user_data(spec)
        if len(user_data.encode()) > MAX_USER_DATA_BYTES:
            raise PermanentProviderError(
                f"user data is {len(user_data.encode())} bytes; EC2 allows {MAX_USER_DATA_BYTES}",
                provider=PROVIDER,
                code="UserDataTooLarge",
                offer_key=offer.key,
            )
        req: dict[str, Any] = {
            "ImageId": image,
            "InstanceType": offer.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": _client_token(spec.intent_id),
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 2},
            "BlockDeviceMappings": [
                {
                    "DeviceName": self._root_device(region, image),
                    "Ebs": {
                        "VolumeSize": self.settings.root_volume_gib,
                        "VolumeType": self.settings.root_volume_type,
                        "DeleteOnTermination": True,
                        "Encrypted": True,
                    },
                }
            ],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
        }
        if user_data:
            req["UserData"] = user_data  # boto3 base64-encodes it
        if cfg.instance_profile:
            key = "Arn" if cfg.instance_profile.startswith("arn:") else "Name"
            req["IamInstanceProfile"] = {key: cfg.instance_profile}
        if cfg.key_name:
            req["KeyName"] = cfg.key_name
        if offer.market == Market.SPOT:
            req["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        if spec.placement_group:
            self._ensure_placement_group(region, spec.placement_group, tags)
            req["Placement"] = {"GroupName": spec.placement_group}
        cards = self._efa_cards(region, offer.instance_type) if spec.efa else 0
        if cards:
            # One EFA per network card, as AWS recommends for full bandwidth (p4d: 4, p5: 32).
            # Card 0 carries the primary interface, an EFA with ENA (the instance's IP traffic);
            # the others are EFA-only by default, which take no subnet IP address each (32 per
            # p5 otherwise) and keep GPU traffic off the IP path.
            groups = {"Groups": list(cfg.security_group_ids)} if cfg.security_group_ids else {}
            nics: list[dict[str, Any]] = [
                {"DeviceIndex": 0, "NetworkCardIndex": 0, "SubnetId": subnet, "InterfaceType": "efa",
                 "DeleteOnTermination": True, **groups}
            ]
            nics += [
                {"DeviceIndex": 1, "NetworkCardIndex": card, "SubnetId": subnet,
                 "InterfaceType": self.settings.efa_secondary_interface_type, "DeleteOnTermination": True, **groups}
                for card in range(1, cards)
            ]
            req["NetworkInterfaces"] = nics
        else:
            if spec.efa:
                log.warning("EFA requested but %s does not support it; launching without", offer.instance_type)
            req["SubnetId"] = subnet
            if cfg.security_group_ids:
                req["SecurityGroupIds"] = list(cfg.security_group_ids)
        return req

    def launch(self, spec: LaunchSpec) -> CloudInstance:
        offer = spec.offer
        if offer.cloud != PROVIDER:
            raise PermanentProviderError(
                f"offer {offer.key} is not an AWS offer", provider=PROVIDER, code="WrongCloud", offer_key=offer.key
            )
        with self._lock:
            done = self._launched.get(spec.intent_id)
        if done is not None:  # same intent again in this process: no second instance
            return done
        try:
            req = self.build_run_instances_request(spec)
            resp = self._client("ec2", offer.region, "launch").run_instances(**req)
        except _aws_exceptions() as e:
            raise map_aws_error(e, offer_key=offer.key) from e
        except ProviderError as e:
            if not e.offer_key:
                e.offer_key = offer.key
            raise
        raw = resp["Instances"][0]
        tags = {t["Key"]: t["Value"] for t in req["TagSpecifications"][0]["Tags"]}
        zone_name = str((raw.get("Placement") or {}).get("AvailabilityZone") or "")
        instance = cloud_instance_from_ec2(
            {**raw, "Tags": [{"Key": k, "Value": v} for k, v in {**tags, **_tag_dict(raw)}.items()]},
            region=offer.region,
            # the subnet was chosen for offer.zone, so the instance sits in that AZ id
            zone_ids={zone_name: offer.zone} if offer.zone else None,
        )
        with self._lock:
            self._region_of[instance.cloud_id] = offer.region
            self._launched[spec.intent_id] = instance
        log.info(
            "launched %s as %s (%s %s %s %s)",
            spec.intent_id,
            instance.cloud_id,
            offer.instance_type,
            offer.region,
            offer.zone,
            offer.market,
        )
        return instance

    # ---- Provider: list / find --------------------------------------------------------------

    def _describe(self, region: str, filters: list[dict[str, Any]]) -> list[CloudInstance]:
        out: list[CloudInstance] = []
        try:
            zone_ids = self.zones(region)[0]
            paginator = self._ec2(region).get_paginator("describe_instances")
            for page in paginator.paginate(Filters=filters):
                for reservation in page.get("Reservations", []):
                    for raw in reservation.get("Instances", []):
                        out.append(cloud_instance_from_ec2(raw, region=region, zone_ids=zone_ids))
        except _aws_exceptions() as e:
            raise map_aws_error(e) from e
        with self._lock:
            for inst in out:
                self._region_of[inst.cloud_id] = region
        return out

    def list_instances(self) -> list[CloudInstance]:
        cluster_filter = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]}]
        out: list[CloudInstance] = []
        for region in self.regions:
            out.extend(self._describe(region, cluster_filter))
        return out

    def find(self, intent_id: str) -> CloudInstance | None:
        filters = [
            {"Name": f"tag:{TAG_ID}", "Values": [intent_id]},
            {"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster]},
        ]
        found: list[CloudInstance] = []
        for region in self.regions:
            found.extend(self._describe(region, filters))
        if not found:
            return None
        # A live instance wins over a terminated one; among equals, the newest.
        found.sort(key=lambda i: (i.state != CloudState.TERMINATED, i.launched_at or 0.0))
        return found[-1]

    # ---- Provider: terminate ----------------------------------------------------------------

    def terminate(self, cloud_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(i for i in cloud_ids if i))
        if not ids:
            return
        by_region: dict[str, list[str]] = {}
        unknown: list[str] = []
        with self._lock:
            for cid in ids:
                region = self._region_of.get(cid)
                if region in self.settings.regions:
                    by_region.setdefault(region, []).append(cid)
                else:
                    unknown.append(cid)
        for region, batch in by_region.items():
            self._terminate_in(region, batch)  # the missing ones are gone: success
        for region in self.regions:
            if not unknown:
                break
            unknown = self._terminate_in(region, unknown)
        if unknown:
            log.info("terminate: %d id(s) unknown in every region, taken as gone", len(unknown))

    def _terminate_in(self, region: str, ids: Sequence[str]) -> list[str]:
        """Terminate ``ids`` in ``region``; returns the ids EC2 says do not exist there."""
        client = self._ec2(region)
        missing: list[str] = []
        for chunk in _chunks(ids, MAX_TERMINATE_BATCH):
            pending = chunk
            while pending:
                try:
                    client.terminate_instances(InstanceIds=pending)
                    pending = []
                except _client_error() as e:
                    code = aws_error_code(e)
                    if code not in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
                        raise map_aws_error(e) from e
                    named = _ids_named(e, pending)
                    if not named:  # the message names none of them: fall back to one by one
                        missing.extend(self._terminate_one_by_one(region, pending))
                        pending = []
                    else:
                        missing.extend(named)
                        pending = [i for i in pending if i not in named]
                except _aws_exceptions() as e:
                    raise map_aws_error(e) from e
        return missing

    def _terminate_one_by_one(self, region: str, ids: Sequence[str]) -> list[str]:
        missing: list[str] = []
        for cid in ids:
            try:
                self._ec2(region).terminate_instances(InstanceIds=[cid])
            except _aws_exceptions() as e:
                if aws_error_code(e) in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
                    missing.append(cid)
                else:
                    raise map_aws_error(e) from e
        return missing

    # ---- validation -------------------------------------------------------------------------

    def validate(self, instance_types: Iterable[str] = ()) -> None:
        """Check the settings against EC2 before any launch; raise :class:`ConfigError` naming
        the first bad key (and listing the others). Auth and network failures raise the mapped
        :class:`~burst.errors.ProviderError` instead: those are not configuration mistakes."""
        problems: list[tuple[str, str]] = []
        extra_types = list(instance_types)
        try:
            self._validate_into(problems, extra_types)
        except _aws_exceptions() as e:
            raise map_aws_error(e) from e
        if problems:
            key, msg = problems[0]
            rest = "; ".join(f"{k}: {m}" for k, m in problems[1:])
            raise ConfigError(key, msg + (f" (also: {rest})" if rest else ""))

    def _validate_into(self, problems: list[tuple[str, str]], extra_types: list[str]) -> None:
        if self.settings.user_data_template:
            try:
                text = self.template_text()
                dummy = {k: "x" for k in USER_DATA_VARIABLES} | dict(self.settings.template_vars)
                rendered = render_user_data(text, dummy, where=_TEMPLATE_SETTING)
                if len(rendered.encode()) > MAX_USER_DATA_BYTES:
                    problems.append(("aws.user_data_template", f"renders to more than {MAX_USER_DATA_BYTES} bytes"))
            except ConfigError as e:
                problems.append((e.where, e.message))

        home = self.settings.api_region or self.regions[0]
        known = {r["RegionName"] for r in self._ec2(home).describe_regions(AllRegions=True).get("Regions", [])}
        for region, cfg in self.settings.regions.items():
            where = f"aws.regions.{region}"
            if region not in known:
                problems.append((where, f"unknown EC2 region {region!r}"))
                continue
            ec2 = self._ec2(region)
            # AMI (explicit, or via SSM)
            image = ""
            try:
                image = self._image(region)
            except _client_error() as e:
                if aws_error_code(e) not in ("ParameterNotFound", "ParameterVersionNotFound", "ValidationException"):
                    raise
                problems.append((f"{where}.ami", f"SSM parameter {cfg.ami!r} not found in {region}"))
            if image:
                try:
                    images = ec2.describe_images(ImageIds=[image]).get("Images", [])
                except _client_error() as e:
                    if not aws_error_code(e).startswith("InvalidAMIID"):
                        raise
                    images = []
                if not images:
                    problems.append((f"{where}.ami", f"AMI {image} does not exist in {region}"))
            # subnets, and that each sits in the AZ it is listed under
            by_name, by_id = self.zones(region)
            for zone, subnet_id in cfg.subnets.items():
                key = f"{where}.subnets.{zone}"
                if zone not in by_name and zone not in by_id:
                    problems.append((key, f"{zone!r} is not an availability zone (name or id) of {region}"))
                try:
                    subnets = ec2.describe_subnets(SubnetIds=[subnet_id]).get("Subnets", [])
                except _client_error() as e:
                    if not aws_error_code(e).startswith("InvalidSubnetID"):
                        raise
                    subnets = []
                if not subnets:
                    problems.append((key, f"subnet {subnet_id} does not exist in {region}"))
                    continue
                sub = subnets[0]
                if zone not in (sub.get("AvailabilityZone"), sub.get("AvailabilityZoneId")) and (
                    zone in by_name or zone in by_id
                ):
                    problems.append(
                        (key, f"subnet {subnet_id} is in {sub.get('AvailabilityZone')}/{sub.get('AvailabilityZoneId')}")
                    )
            if cfg.key_name:
                try:
                    ec2.describe_key_pairs(KeyNames=[cfg.key_name])
                except _client_error() as e:
                    if not aws_error_code(e).startswith("InvalidKeyPair"):
                        raise
                    problems.append((f"{where}.key_name", f"key pair {cfg.key_name!r} does not exist in {region}"))
            if cfg.instance_profile:
                problem = self._instance_profile_problem(cfg.instance_profile)
                if problem:
                    problems.append((f"{where}.instance_profile", problem))
            for i, group in enumerate(cfg.security_group_ids):
                try:
                    ec2.describe_security_groups(GroupIds=[group])
                except _client_error() as e:
                    if not aws_error_code(e).startswith(("InvalidGroup", "InvalidSecurityGroupID")):
                        raise
                    problems.append((f"{where}.security_group_ids[{i}]", f"security group {group} does not exist"))
            # instance types: offered in the region, and in at least one configured subnet's AZ
            types = list(dict.fromkeys([*cfg.instance_types, *extra_types]))
            if types:
                offered = self.availability(region) if not extra_types else self._offerings(region, types)
                subnet_zones = {by_name.get(z, z) for z in cfg.subnets}
                for t in types:
                    zones = offered.get(t, set())
                    if not zones:
                        problems.append((f"{where}.instance_types", f"{t} is not offered in {region}"))
                    elif not zones & subnet_zones:
                        problems.append(
                            (f"{where}.instance_types", f"{t} is not offered in any configured subnet's AZ ({sorted(zones)})")
                        )

    def _instance_profile_problem(self, profile: str) -> str:
        """'' when the instance profile exists (or cannot be checked), else what is wrong.

        IAM is global; a controller role without ``iam:GetInstanceProfile`` cannot check, and
        that is not a configuration mistake: it is logged and the launch will tell."""
        name = profile.rsplit("/", 1)[-1] if profile.startswith("arn:") else profile
        home = self.settings.api_region or self.regions[0]
        try:
            self._client("iam", home).get_instance_profile(InstanceProfileName=name)
        except _client_error() as e:
            code = aws_error_code(e)
            if code == "NoSuchEntity":
                return f"instance profile {name!r} does not exist"
            if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
                log.info("cannot check instance profile %s (no iam:GetInstanceProfile); skipped", name)
                return ""
            raise
        return ""

    def _offerings(self, region: str, types: list[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        paginator = self._ec2(region).get_paginator("describe_instance_type_offerings")
        for page in paginator.paginate(
            LocationType="availability-zone-id", Filters=[{"Name": "instance-type", "Values": types}]
        ):
            for row in page.get("InstanceTypeOfferings", []):
                found.setdefault(row["InstanceType"], set()).add(row["Location"])
        return found


def _ids_named(exc: BaseException, pending: Sequence[str]) -> list[str]:
    response = getattr(exc, "response", {}) or {}
    message = str((response.get("Error") or {}).get("Message") or "")
    tokens = set(_ID_TOKEN.findall(message))
    return [i for i in pending if i in tokens]


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    return ClientError


def _aws_exceptions() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    return (ClientError, BotoCoreError, ResponseParserError)
