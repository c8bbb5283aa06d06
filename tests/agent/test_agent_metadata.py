"""The node agent against a fake metadata service over real HTTP (AWS IMDSv2 and Azure Scheduled
Events shapes): notices are read and reported once; endpoint failures never crash the agent and
are logged once per kind."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from burst.agent.__main__ import main as agent_main
from burst.agent.metadata import AwsImds, AzureScheduledEvents, MetadataError, Notice
from burst.agent.report import ReportError
from burst.agent.runner import Agent
from policies.spot import utc_iso
from tests.support.fake_metadata import FakeMetadata

NOW = 1_700_000_000.0


class Recorder:
    """A reporter that keeps what it was given (the Slurm one is tested in test_agent_slurm)."""

    def __init__(self) -> None:
        self.got: list[Notice] = []
        self.fail = ""

    def report(self, notice: Notice) -> None:
        if self.fail:
            raise ReportError(self.fail)
        self.got.append(notice)


@pytest.fixture
def fake() -> Iterator[FakeMetadata]:
    with FakeMetadata() as f:
        yield f


def test_aws_no_notice_is_404_then_the_instance_action(fake: FakeMetadata) -> None:
    src = AwsImds(fake.url, timeout_s=1)
    assert src.poll(NOW) is None
    fake.aws_action = {"action": "terminate", "time": utc_iso(NOW + 120) + "Z"}
    n = src.poll(NOW + 5)
    assert n == Notice(NOW + 120, "aws:terminate", "terminate")
    # IMDSv2: one token for both polls, sent on every GET
    assert fake.requests["PUT /latest/api/token"] == 1
    assert fake.requests["GET /latest/meta-data/spot/instance-action"] == 2


def test_azure_preempt_event_is_the_notice(fake: FakeMetadata) -> None:
    src = AzureScheduledEvents(fake.url, timeout_s=1, resource="vm-1")
    fake.set_azure_events([{"EventId": "e0", "EventType": "Reboot", "Resources": ["vm-1"], "EventStatus": "Scheduled",
                            "NotBefore": "Tue, 14 Nov 2023 22:15:00 GMT"}])
    assert src.poll(NOW) is None  # a reboot is not a reclaim
    fake.set_azure_events([{"EventId": "e1", "EventType": "Preempt", "Resources": ["vm-2"], "EventStatus": "Scheduled",
                            "NotBefore": "Tue, 14 Nov 2023 22:14:50 GMT"}])
    assert src.poll(NOW) is None  # another VM of the set
    fake.set_azure_events([{"EventId": "e2", "EventType": "Preempt", "ResourceType": "VirtualMachine",
                            "Resources": ["vm-1"], "EventStatus": "Scheduled", "NotBefore": "Tue, 14 Nov 2023 22:14:50 GMT",
                            "Description": "", "EventSource": "Platform", "DurationInSeconds": -1}])
    n = src.poll(NOW)
    assert n == Notice(NOW + 90.0, "azure:Preempt", "e2")  # NOW is 22:13:20Z
    fake.set_azure_events([{"EventId": "e3", "EventType": "Preempt", "Resources": ["vm-1"], "NotBefore": ""}])
    assert src.poll(NOW) == Notice(NOW + 30.0, "azure:Preempt", "e3")


@pytest.mark.parametrize("cloud", ["aws", "azure"])
@pytest.mark.parametrize("fault,kind", [("5xx", "http-503"), ("garbage", "garbage"), ("slow", "timeout")])
def test_endpoint_failures_never_crash_and_are_logged_once(
    fake: FakeMetadata, caplog: pytest.LogCaptureFixture, cloud: str, fault: str, kind: str
) -> None:
    src = AwsImds(fake.url, timeout_s=0.5) if cloud == "aws" else AzureScheduledEvents(fake.url, timeout_s=0.5)
    fake.slow_s = 1.0
    with pytest.raises(MetadataError) as e:
        fake.fault = fault
        src.poll(NOW)
    assert e.value.kind == kind
    rec = Recorder()
    agent = Agent(src, rec, clock=lambda: NOW)
    with caplog.at_level(logging.INFO, logger="burst.agent"):
        for _ in range(3):
            assert agent.step() is None
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1 and kind in warned[0].getMessage()
        # it answers again, with a notice: reported once, recovery logged
        fake.fault = ""
        if cloud == "aws":
            fake.aws_action = {"action": "stop", "time": utc_iso(NOW + 120) + "Z"}
        else:
            fake.set_azure_events([{"EventId": "x", "EventType": "Preempt", "Resources": [], "NotBefore": ""}])
        agent.step()
        agent.step()
    assert len(rec.got) == 1 and agent.errors == 3
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_unreachable_endpoint_and_failed_report_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    with FakeMetadata() as fake:
        url = fake.url
    agent = Agent(AwsImds(url, timeout_s=0.5), rec, clock=lambda: NOW)  # nothing listens there now
    with caplog.at_level(logging.WARNING, logger="burst.agent"):
        agent.step()
        agent.step()
    assert agent.errors == 2 and len(caplog.records) == 1 and "unreachable" in caplog.records[0].getMessage()
    with FakeMetadata() as fake:
        fake.aws_action = {"action": "terminate", "time": utc_iso(NOW + 120) + "Z"}
        agent = Agent(AwsImds(fake.url, timeout_s=1), rec, clock=lambda: NOW)
        rec.fail = "slurmctld down"
        agent.step()
        assert rec.got == [] and agent.reported is None
        rec.fail = ""
        agent.step()
        agent.step()
    assert [n.reclaim_at for n in rec.got] == [NOW + 120]


def test_cli_rejects_a_bad_interval(capsys: pytest.CaptureFixture[str]) -> None:
    assert agent_main(["--cloud", "aws", "--node", "n1", "--interval", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--interval" in err
