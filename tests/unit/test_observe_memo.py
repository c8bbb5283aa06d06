"""Controller._observe_clouds reuses last tick's listing dict only while every provider hands
back the very same tuple; any launch, state change, termination, listing error or list-typed
listing gives what a fresh build gives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from burst.controller import Controller
from burst.domain import TAG_CLUSTER, TAG_ID, CloudInstance, LaunchSpec, Offer, Purpose
from tests.core.world import AWS_AZ1, AZURE, CLUSTER, World

ops = st.lists(
    st.one_of(
        st.tuples(st.just("launch"), st.sampled_from(("aws", "azure"))),
        st.tuples(st.just("advance"), st.floats(0.0, 400.0)),
        st.tuples(st.just("terminate"), st.sampled_from(("aws", "azure")), st.integers(0, 5)),
        st.tuples(st.just("break"), st.sampled_from(("aws", "azure")), st.booleans()),
        st.tuples(st.just("same"),),
    ),
    max_size=25,
)


def fresh(providers: Mapping[str, object]) -> tuple[dict[str, CloudInstance], set[str]]:
    """The same method with nothing remembered: the reference."""
    return Controller._observe_clouds(SimpleNamespace(providers=providers, _listed=None))  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(ops)
def test_memo_lists_what_a_fresh_build_lists(seq: list[tuple[object, ...]]) -> None:
    w = World()
    ctrl = w.controller
    k = 0
    for op in seq:
        if op[0] == "launch" and not w.providers[str(op[1])].broken:
            cloud = str(op[1])
            k += 1
            iid = f"i-{k}"
            w.providers[cloud].launch(spec(iid, AWS_AZ1 if cloud == "aws" else AZURE))
        elif op[0] == "advance":
            w.clock.advance(float(op[1]))  # type: ignore[arg-type]
            for p in w.providers.values():
                p.advance(w.clock.now())
        elif op[0] == "terminate":
            p = w.providers[str(op[1])]
            live = sorted(p._live)
            if live:
                p.terminate([live[int(op[2]) % len(live)]])  # type: ignore[call-overload]
        elif op[0] == "break":
            w.providers[str(op[1])].broken = "denied" if op[2] else ""
        got = ctrl._observe_clouds()
        assert got == fresh(ctrl.providers)


def spec(iid: str, offer: Offer = AWS_AZ1) -> LaunchSpec:
    return LaunchSpec(intent_id=iid, offer=offer, purpose=Purpose.OVERFLOW, tags={TAG_ID: iid, TAG_CLUSTER: CLUSTER})


class ListingAList:
    """A provider stand-in that hands back one list it changes in place."""

    def __init__(self, listed: list[CloudInstance]) -> None:
        self.listed = listed

    def list_instances(self) -> Sequence[CloudInstance]:
        return self.listed


def test_a_list_changed_in_place_is_listed_again() -> None:
    w = World()
    ci = w.providers["aws"].launch(spec("i-1"))
    stand_in = ListingAList([])
    ctrl = w.controller
    ctrl.providers = {"aws": stand_in}  # type: ignore[dict-item]
    assert ctrl._observe_clouds() == ({}, set())
    stand_in.listed.append(ci)
    assert ctrl._observe_clouds() == ({"i-1": ci}, set())


def test_the_same_tuple_gives_the_same_dict() -> None:
    w = World()
    w.providers["aws"].launch(spec("i-1"))
    first, _ = w.controller._observe_clouds()
    again, _ = w.controller._observe_clouds()
    assert again is first  # remembered while nothing changed
    w.providers["aws"].launch(spec("i-2"))
    third, _ = w.controller._observe_clouds()
    assert third is not first and set(third) == {"i-1", "i-2"}
