"""KubernetesQueue's watch caches, with the real client over HTTP against the stand-in API server
(which streams real watch events: resourceVersions, bookmarks, 410 Gone, dropped connections)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from burst.daemon import Daemon
from burst.errors import QueueParseError, QueueUnavailable
from burst.queues.kubernetes.adapter import KubernetesQueue
from tests.k8s.conftest import eventually, watcher_threads
from tests.support.fake_kube_api import FakeKube, ts

PODS, NODES, JOBS = "/api/v1/pods", "/api/v1/nodes", "/apis/batch/v1/jobs"
MakeQueue = Callable[..., KubernetesQueue]


def lists(kube: FakeKube) -> tuple[int, int, int]:
    return kube.lists(PODS), kube.lists(NODES), kube.lists(JOBS)


def pending_ids(q: KubernetesQueue) -> set[str]:
    return {j.id for j in q.snapshot().pending}


def seen_within(q: KubernetesQueue, check: Callable[[], bool], what: str) -> float:
    """Seconds until ``check`` holds (it reads ``q``'s snapshots)."""
    t0 = time.perf_counter()
    eventually(check, what=what)
    return time.perf_counter() - t0


def test_changes_reach_the_snapshot_without_another_list(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("gpu01", 8)
    kube.add_pod("fill", "ml", gpus=8, node="gpu01")
    snap = queue.snapshot()  # the initial sync: one LIST each
    assert [j.id for j in snap.running] == ["ml/pod/fill"] and lists(kube) == (1, 1, 1)

    lag: dict[str, float] = {}
    kube.add_pod("new", "ml", gpus=4)  # created
    lag["create"] = seen_within(queue, lambda: "ml/pod/new" in pending_ids(queue), "the new pod")
    with kube.lock:  # changed in place, as kube-scheduler and the kubelet would
        pod = kube.pods[("ml", "new")]
        pod["spec"]["nodeName"] = "gpu01"
        pod["status"] = {"phase": "Running", "startTime": ts(time.time()),
                         "conditions": [{"type": "PodScheduled", "status": "True"}]}
    lag["bind"] = seen_within(queue, lambda: "ml/pod/new" in {j.id for j in queue.snapshot().running}, "binding")
    assert next(n for n in queue.snapshot().nodes if n.name == "gpu01").gpus_used == 12
    del kube.pods[("ml", "new")]  # deleted
    lag["delete"] = seen_within(queue, lambda: {j.id for j in queue.snapshot().running} == {"ml/pod/fill"},
                                "the deletion")
    kube.add_node("gpu02", 8)
    lag["node"] = seen_within(queue, lambda: "gpu02" in {n.name for n in queue.snapshot().nodes}, "the node")
    kube.add_job("train", "ml", gpus_per_pod=8, suspend=True)
    lag["job"] = seen_within(queue, lambda: "ml/job/train" in pending_ids(queue), "the suspended job")

    assert lists(kube) == (1, 1, 1), "every snapshot after the initial sync came from the caches"
    stats = queue.watch_stats()
    assert stats["pods"]["events"] >= 3 and stats["pods"]["relists"] == 0 and stats["pods"]["alive"]
    print("change -> snapshot (s):", {k: round(v, 4) for k, v in lag.items()})
    assert max(lag.values()) < 1.0


def test_410_gone_relists_and_converges(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_pod("a", "ml", gpus=1)
    assert pending_ids(queue) == {"ml/pod/a"}
    with kube.lock:  # the change is compacted away before any watcher can see it
        kube.add_pod("b", "ml", gpus=1)
        del kube.pods[("ml", "a")]
        kube.compact()
    eventually(lambda: pending_ids(queue) == {"ml/pod/b"}, what="convergence after 410")
    assert queue.watch_stats()["pods"]["relists"] >= 1
    assert kube.lists(PODS) >= 2  # the relist
    kube.add_pod("c", "ml", gpus=1)  # and it watches again afterwards
    eventually(lambda: pending_ids(queue) == {"ml/pod/b", "ml/pod/c"})


def test_resuming_outside_the_retained_window_is_410(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.watch_window = 2  # the server keeps only the last two events
    assert pending_ids(queue) == set()
    kube.watch_fail_status = 503  # watchers cannot reconnect while ...
    kube.drop_watches()
    eventually(lambda: queue.watch_stats()["pods"]["failing"], what="the watcher to notice")
    for i in range(5):  # ... more changes happen than the window holds
        kube.add_pod(f"p{i}", "ml", gpus=1)
        kube.sync()
    kube.watch_fail_status = None
    eventually(lambda: pending_ids(queue) == {f"ml/pod/p{i}" for i in range(5)}, what="convergence")
    assert queue.watch_stats()["pods"]["relists"] >= 1


def test_dropped_watch_reconnects_from_its_version(kube: FakeKube, queue: KubernetesQueue) -> None:
    assert pending_ids(queue) == set()
    for round_ in range(3):
        watches = kube.watches(PODS)
        kube.drop_watches()  # mid-stream, no final chunk
        kube.add_pod(f"p{round_}", "ml", gpus=1)
        name = f"ml/pod/p{round_}"
        eventually(lambda: name in pending_ids(queue), what=f"the pod after drop {round_}")  # noqa: B023
        eventually(lambda: kube.watches(PODS) > watches, what="a new watch request")  # noqa: B023 - polled now
    assert lists(kube) == (1, 1, 1), "resumed from the last version: no relist"
    assert queue.watch_stats()["pods"]["failures"] >= 1


def test_clean_watch_timeouts_resume_without_gaps(kube: FakeKube, make_queue: MakeQueue) -> None:
    q = make_queue(watch_timeout_s=1)
    assert pending_ids(q) == set()
    for i in range(6):  # spans several server-side timeouts
        kube.add_pod(f"p{i}", "ml", gpus=1)
        time.sleep(0.3)
    eventually(lambda: pending_ids(q) == {f"ml/pod/p{i}" for i in range(6)})
    # the re-watch after a server-side timeout may lag on a loaded machine: polled, not assumed
    eventually(lambda: kube.watches(PODS) >= 2, what="a new watch after the server-side timeout")
    assert kube.lists(PODS) == 1
    assert q.watch_stats()["pods"]["failures"] == 0


def test_failing_watch_falls_back_to_list_then_unavailable(kube: FakeKube, make_queue: MakeQueue) -> None:
    q = make_queue(watch_stale_after_s=0.3, timeout_s=1)
    kube.add_pod("a", "ml", gpus=1)
    assert pending_ids(q) == {"ml/pod/a"}
    kube.watch_fail_status = 500  # LIST works, WATCH does not
    kube.drop_watches()
    eventually(lambda: q.watch_stats()["pods"]["failing"], what="the watcher to fail")
    kube.add_pod("b", "ml", gpus=1)  # no watcher can see this one
    t_fail = time.monotonic()
    eventually(lambda: pending_ids(q) == {"ml/pod/a", "ml/pod/b"}, what="the LIST fallback")
    assert time.monotonic() - t_fail < 2
    before = lists(kube)
    assert pending_ids(q) == {"ml/pod/a", "ml/pod/b"}
    assert all(n == b + 1 for n, b in zip(lists(kube), before, strict=True)), "each stale snapshot LISTs"

    kube.watch_fail_status = None  # the watch recovers: back to the caches
    eventually(lambda: not any(s["failing"] for s in q.watch_stats().values()), what="recovery")
    kube.add_pod("c", "ml", gpus=1)
    eventually(lambda: "ml/pod/c" in pending_ids(q))
    before = lists(kube)
    q.snapshot()
    assert lists(kube) == before

    kube.stop()  # the API server is gone: watchers fail, then the LIST fallback fails too
    time.sleep(0.4)
    t0 = time.monotonic()
    with pytest.raises(QueueUnavailable):
        eventually(lambda: pending_ids(q) == set(), timeout=3)  # raises before it could hold
    assert time.monotonic() - t0 < 3


def test_malformed_pod_from_a_watch_is_a_clear_error_and_the_watcher_lives(kube: FakeKube,
                                                                          queue: KubernetesQueue) -> None:
    kube.add_node("gpu01", 8)
    assert pending_ids(queue) == set()
    with kube.lock:  # arrives by watch, already malformed
        pod = kube.add_pod("odd", "ml", gpus=1)
        pod["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "lots"

    def parse_error() -> QueueParseError | None:
        try:
            queue.snapshot()
        except QueueParseError as e:
            return e
        return None

    err = eventually(parse_error, what="the parse error")
    assert err is not None and err.where == "pod ml/odd.spec.containers[0].resources.requests[nvidia.com/gpu]"
    assert "not a quantity: 'lots'" in str(err)
    with pytest.raises(QueueParseError):  # every snapshot, while the object is malformed (as LIST)
        queue.snapshot()
    stats = queue.watch_stats()["pods"]
    assert stats["parse_errors"] >= 1 and stats["alive"] and not stats["failing"]

    with kube.lock:  # fixed: the next event clears it
        kube.pods[("ml", "odd")]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] = "2"
    eventually(lambda: parse_error() is None and "ml/pod/odd" in pending_ids(queue), what="the fix")
    with kube.lock:  # a malformed node, then deleted: the error goes with it
        node = kube.add_node("bad")
        node["status"]["allocatable"]["nvidia.com/gpu"] = {"x": 1}
    err = eventually(parse_error, what="the node's parse error")
    assert err is not None and err.where == "node bad.status.allocatable[nvidia.com/gpu]"
    del kube.nodes["bad"]
    kube.add_pod("later", "ml", gpus=1)
    eventually(lambda: parse_error() is None and "ml/pod/later" in pending_ids(queue))
    assert lists(kube) == (1, 1, 1) and all(s["alive"] for s in queue.watch_stats().values())


def test_own_writes_are_seen_by_the_next_snapshot(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("b-1", 8, labels={"burst.dev/instance-id": "b-1"})
    kube.add_pod("work", "ml", gpus=8, node="b-1")
    kube.add_job("train", "ml", parallelism=2, gpus_per_pod=8, pods="running:b-1,b-1")
    snap = queue.snapshot()
    assert next(n for n in snap.nodes if n.name == "b-1").schedulable
    before = lists(kube)
    # The watch lags behind the writes (as on a busy API server): what the next snapshot shows
    # must come from the write answers and the settle wait, not from a fast watch.
    kube.watch_delay_s = 0.5

    queue.drain_node("b-1", "idle", busy_ok=True)  # cordon (PATCH answer) + eviction (awaited)
    snap = queue.snapshot()
    node = next(n for n in snap.nodes if n.name == "b-1")
    assert not node.schedulable and "ml/pod/work" not in {j.id for j in snap.running}
    queue.hold(["ml/job/train"])  # suspend (PATCH answer) + the Job controller's deletions (awaited)
    snap = queue.snapshot()
    assert snap.running == () and [j.id for j in snap.pending] == ["ml/job/train"]
    queue.undrain_node("b-1", "back")
    assert next(n for n in queue.snapshot().nodes if n.name == "b-1").schedulable
    queue.remove_node("b-1")  # DELETE (awaited)
    assert "b-1" not in {n.name for n in queue.snapshot().nodes}
    # the drain's own read of the node's pods is a LIST; snapshots added none
    assert (kube.lists(NODES), kube.lists(JOBS)) == before[1:]


def test_without_watch_every_snapshot_lists(kube: FakeKube, make_queue: MakeQueue) -> None:
    q = make_queue(watch=False)
    kube.add_pod("a", "ml", gpus=1)
    assert pending_ids(q) == {"ml/pod/a"}
    kube.add_pod("b", "ml", gpus=1)
    assert pending_ids(q) == {"ml/pod/a", "ml/pod/b"}  # at once: it read by LIST
    assert lists(kube) == (2, 2, 2) and kube.watches(PODS) == 0
    assert q.watch_stats() == {} and not watcher_threads()


def test_close_stops_the_watchers_promptly(kube: FakeKube, queue: KubernetesQueue) -> None:
    queue.snapshot()
    assert len(watcher_threads()) == 3
    t0 = time.monotonic()
    queue.close()
    # prompt: a close that did not interrupt the watches would wait for each join's timeout_s + 1
    # (6 s) and leave the threads alive; 4 s leaves room for a loaded machine
    assert not watcher_threads() and time.monotonic() - t0 < 4
    queue.close()  # idempotent
    kube.add_pod("a", "ml", gpus=1)
    assert pending_ids(queue) == {"ml/pod/a"}  # a later snapshot syncs again
    assert len(watcher_threads()) == 3


def test_a_dropped_queue_stops_its_watchers(kube: FakeKube, make_queue: MakeQueue) -> None:
    q = KubernetesQueue(make_queue().settings)  # not closed by the fixture
    q.snapshot()
    assert len(watcher_threads()) == 3
    del q  # the threads hold no reference to it: the finalizer stops them
    eventually(lambda: not watcher_threads(), what="the watchers to end")


def test_daemon_stop_closes_the_queue(kube: FakeKube, queue: KubernetesQueue) -> None:
    queue.snapshot()
    released: list[str] = []
    store = SimpleNamespace(release_lease=lambda lease, holder: released.append(lease))
    daemon = Daemon(cast(Any, SimpleNamespace(queue=queue)), cast(Any, None), cast(Any, store), holder="t",
                    closeables=[queue])
    daemon.stop()
    assert released == ["controller"] and not watcher_threads()


def test_snapshots_while_events_stream_in(kube: FakeKube, queue: KubernetesQueue) -> None:
    """Concurrency: a writer churns pods while snapshots are taken; every snapshot is
    consistent with some state and the final one with the last."""
    queue.snapshot()
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            kube.add_pod(f"p{i % 20}", "ml", gpus=1)
            if i % 3 == 0:
                kube.pods.pop(("ml", f"p{(i + 7) % 20}"), None)
            i += 1
            time.sleep(0.001)

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(200):
            assert all(j.id.startswith("ml/pod/p") for j in queue.snapshot().pending)
    finally:
        stop.set()
        t.join()
    want = {f"ml/pod/{ns_name[1]}" for ns_name in kube.pods}
    eventually(lambda: pending_ids(queue) == want, what="the final state")
    assert lists(kube) == (1, 1, 1)


def test_a_proxy_that_ends_every_watch_at_once_is_failing_not_healthy(kube: FakeKube, make_queue: MakeQueue) -> None:
    # Each watch connects (200) and ends with nothing. A connection alone must not count as
    # health, or the failure clock restarts every cycle and the stale fallback never comes.
    q = make_queue(watch_stale_after_s=0.5, timeout_s=1)
    kube.add_pod("a", "ml", gpus=1)
    assert pending_ids(q) == {"ml/pod/a"}
    kube.watch_end_at_once = True
    kube.drop_watches()
    eventually(lambda: q.watch_stats()["pods"]["failing"], what="the watcher to fail")
    time.sleep(0.8)  # longer than watch_stale_after_s, over several connect-and-end cycles
    assert q.watch_stats()["pods"]["failing"], "each accepted-then-ended watch reset the clock"
    kube.add_pod("b", "ml", gpus=1)  # only a LIST can see it now
    assert pending_ids(q) == {"ml/pod/a", "ml/pod/b"}
    kube.watch_end_at_once = False
    eventually(lambda: not any(s["failing"] for s in q.watch_stats().values()), what="recovery")


def test_a_write_answer_never_brings_back_an_object_the_watch_deleted(kube: FakeKube, queue: KubernetesQueue) -> None:
    kube.add_node("b-1", 8, labels={"burst.dev/instance-id": "b-1"})
    assert "b-1" in {n.name for n in queue.snapshot().nodes}
    import copy

    answer = copy.deepcopy(kube.nodes["b-1"])  # what a PATCH would have answered
    answer["metadata"]["resourceVersion"] = "999999"
    del kube.nodes["b-1"]
    eventually(lambda: "b-1" not in {n.name for n in queue.snapshot().nodes}, what="the deletion")
    informers = queue._informers
    assert informers is not None
    informers.nodes.remember(answer)  # the cordon's answer arriving after the DELETED event
    assert "b-1" not in {n.name for n in queue.snapshot().nodes}
