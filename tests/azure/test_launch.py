"""AzureProvider launch / find / terminate with the real azure-mgmt-compute SDK against the ARM
stand-in: the VM body ARM receives, idempotency, LRO shapes, gangs, spot, eviction."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from burst.domain import REQUIRED_TAGS, TAG_ID, CloudState, Instance, InstanceState, Market, Purpose
from burst.errors import CapacityError, PermanentProviderError, TransientProviderError
from policies.reconcile import ReconcileSettings, reconcile_instance
from providers.azure import vm_name
from tests.aws.helpers import make_spec
from tests.azure.helpers import SSH_KEY, azure_offer, make_provider
from tests.support.arm_standin import ArmStandin, custom_data_of


def test_launch_sends_the_vm_burst_needs(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    spec = make_spec("b-launch-1", azure_offer(), ssh_public_key="ssh-ed25519 AAAAuserkey alice@laptop")
    inst = provider.launch(spec)
    assert inst.cloud == "azure" and inst.burst_id == "b-launch-1" and inst.state is CloudState.RUNNING
    vm = standin.vm("b-launch-1")
    assert vm is not None
    for key in REQUIRED_TAGS:
        assert vm["tags"][key] == spec.tags[key], key
    props = vm["properties"]
    assert props["hardwareProfile"]["vmSize"] == "Standard_NC24ads_A100_v4"
    net = props["networkProfile"]
    assert net["networkApiVersion"] == "2022-11-01"
    (nic,) = net["networkInterfaceConfigurations"]
    assert nic["properties"]["deleteOption"] == "Delete"
    assert nic["properties"]["enableAcceleratedNetworking"] is True
    assert nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"] == standin.subnet_id("eastus")
    assert props["storageProfile"]["osDisk"]["deleteOption"] == "Delete"
    assert props["storageProfile"]["imageReference"]["publisher"] == "canonical"
    keys = [k["keyData"] for k in props["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]]
    assert keys == [SSH_KEY, "ssh-ed25519 AAAAuserkey alice@laptop"]
    assert "priority" not in props and "zones" not in vm


def test_the_vm_carries_the_node_identity_and_only_it(standin: ArmStandin) -> None:
    """terraform/azure's node identity (AcrPull, Key Vault secret read) is the VM's one identity:
    the node pulls from ACR and reads its join secret with it."""
    identity = standin.node_identity_id()
    make_provider(standin, node_identity_id=identity).launch(make_spec("b-ident-1", azure_offer()))
    assert standin.identities_of("b-ident-1") == [identity]
    assert standin.vm("b-ident-1")["identity"]["type"] == "UserAssigned"  # type: ignore[index]
    # no identity configured: the VM gets none (not an empty or system-assigned one)
    make_provider(standin, node_identity_id="").launch(make_spec("b-ident-2", azure_offer()))
    assert "identity" not in standin.vm("b-ident-2")  # type: ignore[operator]


def test_an_unknown_node_identity_is_refused_by_arm(standin: ArmStandin) -> None:
    gone = standin.node_identity_id("no-such-identity")
    with pytest.raises(PermanentProviderError) as err:
        make_provider(standin, node_identity_id=gone).launch(make_spec("b-ident-3", azure_offer()))
    assert "no-such-identity" in str(err.value)
    assert standin.vms() == []


def test_custom_data_is_the_rendered_join_script(standin: ArmStandin) -> None:
    provider = make_provider(standin, node_name_prefix="az-")
    provider.launch(make_spec("b-join-1", azure_offer()))
    script = custom_data_of(standin, "b-join-1")
    assert script.startswith("#!/bin/bash")
    assert "slurmd -D -s -Z -N az-b-join-1 --conf-server ctld.example.org:6817" in script
    assert "Feature=cloud,azure,eastus" in script and "Gres=gpu:a100:1" in script
    assert 'MIRROR_HOST="bursteastus.azurecr.io"' in script
    # a LaunchSpec with its own user data (on-demand: the user's key) is sent as is
    provider.launch(make_spec("b-join-2", azure_offer(), user_data="#cloud-config\nssh_authorized_keys: [k]\n"))
    assert custom_data_of(standin, "b-join-2") == "#cloud-config\nssh_authorized_keys: [k]\n"


def test_repeated_create_is_idempotent_across_restarts(standin: ArmStandin) -> None:
    spec = make_spec("b-idem-1", azure_offer())
    first = make_provider(standin).launch(spec)
    # a new controller process (no memory of the first launch) launches the same intent again
    second = make_provider(standin).launch(spec)
    assert second.cloud_id == first.cloud_id
    assert standin.state.created == 1
    assert standin.count("PUT", r"/virtualMachines/b-idem-1$") == 1
    assert len(standin.vms()) == 1


def test_vm_names_follow_azure_rules_and_stay_distinct() -> None:
    assert vm_name("b-0123456789abcdef") == "b-0123456789abcdef"
    odd = ["B_Upper.Case", "b_upper.case", "x" * 100, "x" * 99, "-lead", "ok/slash"]
    names = [vm_name(i) for i in odd]
    for n in names:
        assert 1 <= len(n) <= 64 and n[0] != "-" and n[-1] != "-"
        assert all(c.isdigit() or c == "-" or ("a" <= c <= "z") for c in n), n
    assert len(set(names)) == len(names)
    assert vm_name("B_Upper.Case") == vm_name("B_Upper.Case")


@pytest.mark.parametrize("shape", ["async", "location"])
def test_long_running_operations_of_either_shape(standin: ArmStandin, shape: str) -> None:
    standin.set_lro(shape, polls=3)
    provider = make_provider(standin)
    inst = provider.launch(make_spec("b-lro-1", azure_offer()))
    assert inst.state is CloudState.RUNNING
    poll_path = r"^/_ops/" if shape == "async" else r"^/_loc/"
    assert standin.count("GET", poll_path) >= 3
    provider.terminate([inst.cloud_id])
    assert standin.vm("b-lro-1") is not None  # terminate does not wait for the delete
    standin.complete_operations()
    assert standin.vm("b-lro-1") is None


def test_terminate_does_not_start_a_second_delete(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    inst = provider.launch(make_spec("b-del-1", azure_offer()))
    standin.slow(5, op="delete_vm")
    provider.terminate([inst.cloud_id])
    provider.terminate([inst.cloud_id])
    make_provider(standin).terminate([inst.cloud_id])  # another process: sees it Deleting
    assert standin.count("DELETE", r"/virtualMachines/b-del-1$") == 1
    found = provider.find("b-del-1")
    assert found is not None and found.state is CloudState.TERMINATED and not found.interrupted
    standin.complete_operations()
    assert provider.find("b-del-1") is None
    provider.terminate([inst.cloud_id])  # gone: success
    assert standin.usage("eastus", "cores")[0] == 0


def test_gang_members_share_one_proximity_placement_group(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    nd = azure_offer("Standard_ND96asr_v4", gpus=8, price=27.2)
    for i in (1, 2):
        provider.launch(make_spec(f"b-gang-{i}", nd, placement_group="g-train-1", gang_id="g-train-1"))
    ppgs = {standin.vm(f"b-gang-{i}")["properties"]["proximityPlacementGroup"]["id"] for i in (1, 2)}  # type: ignore[index]
    assert len(ppgs) == 1
    (ppg,) = standin.state.ppgs.values()
    assert ppg["id"] == ppgs.pop() and ppg["location"] == "eastus" and ppg["tags"][TAG_ID] == "g-train-1"
    # a single (non-gang) launch gets no PPG
    provider.launch(make_spec("b-solo", nd))
    assert "proximityPlacementGroup" not in standin.vm("b-solo")["properties"]  # type: ignore[index]


def test_spot_priority_eviction_policy_and_max_price(standin: ArmStandin) -> None:
    spot = azure_offer(market=Market.SPOT, price=1.5)
    make_provider(standin).launch(make_spec("b-spot-1", spot))
    props = standin.vm("b-spot-1")["properties"]  # type: ignore[index]
    assert (props["priority"], props["evictionPolicy"], props["billingProfile"]["maxPrice"]) == ("Spot", "Delete", -1)
    make_provider(standin, spot_max_price="catalog", spot_max_price_factor=1.2).launch(make_spec("b-spot-2", spot))
    assert standin.vm("b-spot-2")["properties"]["billingProfile"]["maxPrice"] == pytest.approx(1.8)  # type: ignore[index]
    inst = make_provider(standin).find("b-spot-1")
    assert inst is not None and inst.market is Market.SPOT
    assert standin.usage("eastus", "lowPriorityCores")[0] == 48 and standin.usage("eastus", "cores")[0] == 0


def test_spot_eviction_is_reported_lost(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    spot = azure_offer(market=Market.SPOT)
    provider.launch(make_spec("b-evict-1", spot))
    provider.launch(make_spec("b-evict-2", spot))
    standin.evict("b-evict-1", linger=True)  # still listed while Azure deletes it
    listed = {i.burst_id: i for i in provider.list_instances()}
    assert listed["b-evict-1"].interrupted and listed["b-evict-1"].state is CloudState.TERMINATED
    assert not listed["b-evict-2"].interrupted and listed["b-evict-2"].state is CloudState.RUNNING
    # what the controller decides from it: lost (a spot reclaim), books closed, work requeued
    decision = reconcile_instance(_running(listed["b-evict-1"].cloud_id), listed["b-evict-1"], None, 100.0,
                                  ReconcileSettings())
    states = [getattr(a, "to", None) for a in decision.steps]
    assert InstanceState.LOST in states and "spot reclaim" in repr(decision)
    standin.finish_evictions()
    assert provider.find("b-evict-1") is None
    assert {i.burst_id for i in provider.list_instances()} == {"b-evict-2"}


def _running(cloud_id: str) -> Instance:
    return Instance(
        id="b-evict-1", cloud="azure", region="eastus", zone="", instance_type="Standard_NC24ads_A100_v4",
        market=Market.SPOT, purpose=Purpose.OVERFLOW, gpus=1, gpu_model="A100", price_per_hour=1.0,
        state=InstanceState.RUNNING, cloud_id=cloud_id, created_at=0.0, launched_at=1.0,
    )


def test_throttled_launch_reaches_our_error_without_sdk_sleeping(standin: ArmStandin) -> None:
    provider = make_provider(standin, lro_polling_interval_s=30.0)
    standin.throttle("put_vm", retry_after=40)
    started = time.monotonic()
    with pytest.raises(TransientProviderError) as err:
        provider.launch(make_spec("b-429", azure_offer()))
    assert time.monotonic() - started < 20.0  # no Retry-After sleep (40 s), no retry; room for a loaded machine
    assert err.value.retry_after == 40 and err.value.code == "TooManyRequests"
    assert err.value.offer_key == azure_offer().key
    assert standin.count("PUT", r"/virtualMachines/b-429$") == 1
    # the quota view got the vCPUs back: nothing was launched
    assert provider.view("eastus").launched.get("cores", 0) == 0
    assert provider.launch(make_spec("b-429", azure_offer())).state is CloudState.RUNNING


def test_list_shows_cluster_vms_in_every_region_and_deletes_failed_ones(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    provider.launch(make_spec("b-east", azure_offer()))
    provider.launch(make_spec("b-west", azure_offer(region="westus2")))
    assert {(i.burst_id, i.region) for i in provider.list_instances()} == {("b-east", "eastus"), ("b-west", "westus2")}
    # a create that failed, and whose cleanup failed too (as if the controller died in between)
    standin.fail("put_vm", "AllocationFailed", name="b-crashed")
    standin.fail("delete_vm", "InternalServerError", name="b-crashed")
    with pytest.raises(CapacityError):
        make_provider(standin).launch(make_spec("b-crashed", azure_offer()))
    assert standin.vm("b-crashed")["properties"]["provisioningState"] == "Failed"  # type: ignore[index]
    listed = {i.burst_id: i for i in provider.list_instances()}
    assert listed["b-crashed"].state is CloudState.FAILED
    assert standin.vm("b-crashed") is None  # deleted by that listing
    assert standin.usage("eastus", "cores")[0] == 24  # only b-east holds quota now


def test_spec_changes_do_not_touch_an_existing_vm(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    spec = make_spec("b-same", azure_offer())
    first = provider.launch(spec)
    again = make_provider(standin).launch(replace(spec, user_data="#!/bin/sh\necho other\n"))
    assert again.cloud_id == first.cloud_id
    assert standin.count("PUT", r"/virtualMachines/b-same$") == 1


@pytest.mark.parametrize(("template", "secret_var", "aws_marker"), [
    ("builtin:slurm", "munge_key_secret_url", "aws ssm get-parameter"),
    ("builtin:k8s", "bootstrap_token_secret_url", "aws ssm get-parameter"),
])
def test_builtin_templates_read_secrets_the_azure_way(
    standin: ArmStandin, template: str, secret_var: str, aws_marker: str
) -> None:
    url = "https://burst-kv.vault.azure.net/secrets/node-secret"
    tvars = {"slurmctld_host": "ctld.example.org:6817", "k8s_api_endpoint": "10.0.0.1:6443",
             "k8s_ca_cert_hash": "sha256:ab", secret_var: url}
    provider = make_provider(standin, user_data_template=template, template_vars=tvars)
    provider.validate()  # the AWS-only variables need no value on Azure
    provider.launch(make_spec("b-tpl", azure_offer()))
    script = custom_data_of(standin, "b-tpl")
    assert "# @include" not in script
    assert aws_marker not in script and "169.254.169.254/latest/api/token" not in script
    assert f'="{url}"' in script and "vault.azure.net" in script and "metadata/identity/oauth2/token" in script
    # AWS renders its own part from the same template
    from providers.bootstrap import USER_DATA_VARIABLES, load_template, render_user_data

    aws = render_user_data(load_template(template), {**{k: "x" for k in USER_DATA_VARIABLES}, **tvars,
                                                     "munge_key_ssm_param": "/p", "bootstrap_token_ssm_param": "/t"})
    assert aws_marker in aws and "vault.azure.net" not in aws


def test_nic_and_disk_go_with_the_vm_and_the_address_is_the_nics(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    inst = provider.launch(make_spec("b-nic", azure_offer()))
    snap = standin.snapshot()
    assert [n.rsplit("/", 1)[-1] for n in snap["nics"]] == ["b-nic-nic"]
    assert [d.rsplit("/", 1)[-1] for d in snap["disks"]] == ["b-nic-osdisk"]
    nic = standin.state.nics[snap["nics"][0].lower()]
    ip = nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
    assert inst.address == ip
    gets = standin.count("GET", "/networkInterfaces/")
    listed = make_provider(standin).list_instances()
    assert [i.address for i in listed] == [ip]
    provider.list_instances()
    assert standin.count("GET", "/networkInterfaces/") == gets + 1  # once per VM per process
    provider.terminate([inst.cloud_id])
    snap = standin.snapshot()
    assert snap["vms"] == [] and snap["nics"] == [] and snap["disks"] == []


def test_a_slow_create_is_reported_pending_after_launch_wait(standin: ArmStandin) -> None:
    standin.slow(10_000)  # far more polls than the wait allows
    provider = make_provider(standin, launch_wait_s=0.3, lro_polling_interval_s=0.05)
    started = time.monotonic()
    inst = provider.launch(make_spec("b-slow", azure_offer()))
    assert time.monotonic() - started < 20.0  # gave up at its 0.3 s wait, not after 10,000 polls (500 s)
    assert inst.state is CloudState.PENDING and inst.burst_id == "b-slow"
    standin.complete_operations()
    found = provider.find("b-slow")
    assert found is not None and found.state is CloudState.RUNNING


def test_a_put_of_an_existing_vm_never_makes_a_second_one(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    provider.launch(make_spec("b-put", azure_offer()))
    body = provider.build_vm(make_spec("b-put", azure_offer()), "b-put")
    vm = provider.client.virtual_machines.begin_create_or_update("burst-rg", "b-put", body).result()
    assert vm.name == "b-put" and standin.state.created == 1 and len(standin.vms()) == 1


def test_spec_image_and_describe(standin: ArmStandin) -> None:
    provider = make_provider(standin)
    urn = "canonical:ubuntu-24_04-lts:server:latest"
    provider.launch(make_spec("b-img", azure_offer(), image=urn))
    ref = standin.vm("b-img")["properties"]["storageProfile"]["imageReference"]  # type: ignore[index]
    assert (ref["offer"], ref["sku"]) == ("ubuntu-24_04-lts", "server")
    provider.launch(make_spec("b-img2", azure_offer(), image="ami-0123"))  # not an Azure image: the region's
    assert standin.vm("b-img2")["properties"]["storageProfile"]["imageReference"]["publisher"] == "canonical"  # type: ignore[index]
    standin.restrict("Standard_ND96asr_v4", "westus2")
    summary = make_provider(standin).describe()
    assert "Standard_ND96asr_v4" in summary["westus2"]["restricted"]  # type: ignore[operator]
    assert "Standard_ND96asr_v4" in summary["eastus"]["gpu_sizes"]  # type: ignore[operator]
    assert summary["eastus"]["quota_left"]["cores"] == 10000 - 2 * 24  # type: ignore[index]


def test_a_create_nobody_polls_still_finishes(standin: ArmStandin) -> None:
    """A controller killed while waiting for a create: the next one finds the VM pending, and it
    becomes running as the cloud is watched (the stand-in progresses on reads, as ARM would in time)."""
    # Up to 3 polls land while launch runs (the SDK poller's first status read, from a thread of
    # its own, and launch's own read of the VM), in an order a loaded machine changes: 8 polls
    # keep the create running past launch whatever the order. The poller then sleeps (a killed
    # controller's would not poll at all); reads by the next controller move it on.
    standin.slow(8)
    provider = make_provider(standin, launch_wait_s=0.0, lro_polling_interval_s=3600.0)
    assert provider.launch(make_spec("b-orphan-op", azure_offer())).state is CloudState.PENDING
    states = [make_provider(standin).find("b-orphan-op").state for _ in range(8)]  # type: ignore[union-attr]
    assert states[-1] is CloudState.RUNNING and standin.state.created == 1
