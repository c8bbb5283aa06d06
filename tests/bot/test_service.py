"""OnDemandService: validation, quotas, approvals, extend/release, SSH keys, status, grand challenges."""

from __future__ import annotations

import base64
import dataclasses
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bot.format import format_budget, format_status
from burst.challenges import ChallengeRequest, record_queue
from burst.domain import ChallengeState, Job, JobState, Node, QueueSnapshot, RequestState
from burst.ondemand.errors import Denied, ServiceError
from burst.ondemand.service import OnDemandService, RequestArgs
from burst.ondemand.sshkeys import validate_ssh_key
from burst.ondemand.userdata import make_user_data_for
from burst.store.memory import MemoryStore
from tests.bot.conftest import ADMIN, OTHER, USER, ManualClock, bot_offers, make_settings


def _openssh(pub: object) -> str:
    return pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()  # type: ignore[attr-defined]


def ed25519_key() -> str:
    return _openssh(ed25519.Ed25519PrivateKey.generate().public_key())


def test_ssh_keys_accepted_and_rejected() -> None:
    for key in (
        ed25519_key(),
        _openssh(ec.generate_private_key(ec.SECP256R1()).public_key()),
        _openssh(ec.generate_private_key(ec.SECP384R1()).public_key()),
        _openssh(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()),
    ):
        norm, fp = validate_ssh_key(key + " someone@host")
        assert norm == key and fp.startswith("SHA256:")
    small = _openssh(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
    with pytest.raises(ServiceError, match="2048"):
        validate_ssh_key(small)
    body = ed25519_key().split()[1]
    with pytest.raises(ServiceError):
        validate_ssh_key(f"ssh-rsa {body}")  # type prefix inside the blob does not match
    with pytest.raises(ServiceError):
        validate_ssh_key("ssh-ed25519 not*base64")
    with pytest.raises(ServiceError):
        validate_ssh_key("ssh-dss AAAAB3NzaC1kc3MAAACBAP")
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 31) + b"\0" * 31
    with pytest.raises(ServiceError):
        validate_ssh_key("ssh-ed25519 " + base64.b64encode(blob).decode())
    with pytest.raises(ServiceError):
        validate_ssh_key("ssh-ed25519 " + body + "'; rm -rf / #")


def test_ssh_key_stored_and_put_in_user_data(service: OnDemandService, store: MemoryStore) -> None:
    from burst.domain import Instance, Purpose
    from tests.bot.conftest import bot_offers as offers

    def instance(iid: str, purpose: Purpose, owner: str = "") -> Instance:
        o = offers()[0]
        return Instance(iid, o.cloud, o.region, o.zone, o.instance_type, o.market, purpose, o.gpu_count,
                        o.gpu_model, o.price_per_hour, owner=owner)

    key = ed25519_key()
    service.set_ssh_key(USER, key + " comment `$(id)`")
    assert store.get_user_setting(USER, "ssh_public_key") == key
    ud = make_user_data_for(store, "researcher", lambda _i: "JOIN")(instance("od-1", Purpose.ON_DEMAND, USER))
    assert key in ud and "researcher" in ud and "$(id)" not in ud
    assert make_user_data_for(store, "researcher", lambda _i: "JOIN")(
        instance("ov-1", Purpose.OVERFLOW)
    ) == "JOIN"


def test_request_validation_records_nothing(service: OnDemandService, store: MemoryStore) -> None:
    bad = [
        RequestArgs(0, "A100"),
        RequestArgs(65, "A100"),
        RequestArgs(1, "TPU"),
        RequestArgs(1, "A100", hours=0),
        RequestArgs(1, "A100", hours=1000),
        RequestArgs(1, "A100", region="mars-1"),
        RequestArgs(9, "A100"),  # no instance has 9 A100s
        RequestArgs(1, "A100", cloud="azure", region="us-east-1"),
    ]
    for args in bad:
        with pytest.raises(ServiceError):
            service.request(USER, args)
    assert store.requests() == [] and store.audit_rows() == []


def test_quota_per_user_and_team(service: OnDemandService, store: MemoryStore, clock: ManualClock) -> None:
    a = service.request(USER, RequestArgs(8, "a100", hours=2))
    assert a.request.state is RequestState.AUTO_APPROVED and a.request.gpu_model == "A100"
    b = service.request(USER, RequestArgs(1, "A100", hours=1))
    assert b.needs_approval and any("your limit of 8" in r for r in b.verdict.reasons)
    # a teammate in another team is unaffected
    c = service.request(OTHER, RequestArgs(8, "A100", hours=1))
    assert c.request.state is RequestState.AUTO_APPROVED
    # GPU-hours per month
    service.release(USER, a.request.id)
    d = service.request(USER, RequestArgs(8, "A100", hours=26))
    assert d.needs_approval and any("GPU-hours" in r for r in d.verdict.reasons)


def test_team_budget(store: MemoryStore, clock: ManualClock) -> None:
    from burst.ondemand.settings import Quota

    svc = OnDemandService(store, make_settings(team_quotas={"vision": Quota(max_gpus=64, budget_month_usd=10.0)}), bot_offers(), clock)
    r = svc.request(USER, RequestArgs(8, "A100", hours=8))
    assert r.needs_approval and any("budget" in x for x in r.verdict.reasons)


def test_approve_reject_admin_only(service: OnDemandService, store: MemoryStore) -> None:
    r = service.request(USER, RequestArgs(8, "A100", hours=30)).request
    with pytest.raises(Denied):
        service.approve(USER, r.id)
    assert store.audit_rows(kind="admin")[0].action == "denied"
    got = service.approve(ADMIN, r.id)
    assert got.state is RequestState.APPROVED and got.approver == ADMIN
    with pytest.raises(ServiceError, match="already"):
        service.reject(ADMIN, r.id)


def test_extend_ready_and_expiring(service: OnDemandService, store: MemoryStore, clock: ManualClock) -> None:
    r = service.request(USER, RequestArgs(1, "A100", hours=2)).request
    now = clock.now()
    store.transition_request(r.id, RequestState.PROVISIONING, now=now, actor="t", reason="t")
    store.transition_request(r.id, RequestState.READY, now=now, actor="t", reason="t", expires_at=now + 7200)
    got = service.extend(USER, r.id, 1.5)
    assert got.state is RequestState.READY and got.expires_at == now + 7200 + 5400 and got.hours == 3.5
    store.transition_request(r.id, RequestState.EXPIRING, now=now, actor="t", reason="reminder")
    got = service.extend(USER, r.id, 1)
    assert got.state is RequestState.READY
    with pytest.raises(ServiceError, match=f"^No request `{r.id}`.$"):  # issue 12: no id oracle
        service.extend(OTHER, r.id, 1)
    with pytest.raises(ServiceError, match="over quota"):
        service.extend(USER, r.id, 70)


def test_status_budget_and_grand_challenges(service: OnDemandService, store: MemoryStore, clock: ManualClock) -> None:
    running = (Job(id="j1", gpus=8, submit_time=0.0, state=JobState.RUNNING, owner=USER, start_time=clock.now() - 3600,
                   node_names=("n1",)),)
    store.set_controller_status(
        {"at": clock.now(), "onprem_gpus": 1024, "onprem_gpus_used": 1000, "pending": 12, "running": 90,
         "longest_wait_s": 1800, "queue": record_queue(QueueSnapshot((), running, (Node("n1", 8, 8), Node("n2", 8))))},
        now=clock.now())
    req = ChallengeRequest(start_at=clock.now() + 3600, duration_s=4 * 3600, job_text="#!/bin/sh\n", name="llm-eval",
                           note="<!channel> big")
    gc = service.gc_schedule(ADMIN, req)
    text = format_status(service.status())
    assert "1000/1024" in text and "12 pending" in text and "30 min" in text and gc.id in text
    assert "&lt;!channel&gt;" in service.gc_get(gc.id).note.replace("<", "&lt;").replace(">", "&gt;")
    with pytest.raises(ServiceError, match="overlaps"):
        service.gc_schedule(ADMIN, dataclasses.replace(req, start_at=clock.now() + 7200, duration_s=3600))
    with pytest.raises(ServiceError, match="asks for 3 nodes; the on-prem cluster has 2"):
        service.gc_schedule(ADMIN, dataclasses.replace(req, start_at=clock.now() + 86400, nodes=3))
    with pytest.raises(Denied):
        service.gc_cancel(USER, gc.id)
    with pytest.raises(Denied):
        service.gc_assess(USER, req)
    assert service.gc_cancel(ADMIN, gc.id).state is ChallengeState.CANCELLED
    impact = service.gc_assess(ADMIN, req).impact
    assert impact is not None and impact.jobs == ("j1",) and impact.users == (USER,)
    assert impact.gpu_hours == pytest.approx(16.0)  # 8 GPUs, running 1 h now + 1 h until the start
    assert "vision" in format_budget(service.budget())
