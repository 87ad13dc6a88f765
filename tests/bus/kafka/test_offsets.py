"""Kafka's delivery counting and committable offsets, without a broker (the real-broker tests stay in test_contract)."""

from __future__ import annotations

from typing import NamedTuple

import orjson

from sandbox.bus.kafka.offsets import Offsets


class TP(NamedTuple):  # the shape of aiokafka's TopicPartition
    topic: str
    partition: int


P0, P1 = TP("laddr.tasks.a", 0), TP("laddr.tasks.a", 1)


def committed_by(offsets: Offsets) -> dict[TP, tuple[int, str]]:
    """Commit what is committable, as the consumer does after the broker took it."""
    found = offsets.committable()
    offsets.mark_committed(found)
    return found


def test_first_owner_counts_every_task_as_a_first_delivery() -> None:
    offsets = Offsets("w1")
    offsets.learn([P0], {})  # the group never committed on this partition
    assert [offsets.track(P0, o) for o in range(3)] == [1, 1, 1]


def test_the_oldest_open_offset_is_what_gets_committed() -> None:
    offsets = Offsets("w1")
    offsets.learn([P0], {})
    for o in (5, 6, 7):
        offsets.track(P0, o)
        offsets.attempt(P0, o)
    offsets.done(P0, 6)
    offsets.done(P0, 7)
    assert committed_by(offsets)[P0][0] == 5  # 5 is still unanswered: nothing past it is committed
    offsets.done(P0, 5)
    assert committed_by(offsets)[P0][0] == 8  # all answered: the next offset to read
    assert offsets.committable() == {}  # nothing changed since: nothing to commit again


def test_metadata_says_how_far_was_fetched_and_the_oldest_open_count() -> None:
    offsets = Offsets("w1")
    offsets.learn([P0], {})
    for o in (0, 1, 2):
        offsets.track(P0, o)
        offsets.attempt(P0, o)
    offsets.done(P0, 0)
    offset, metadata = committed_by(offsets)[P0]
    assert offset == 1
    assert orjson.loads(metadata) == {"upto": 3, "n": 1, "by": "w1"}


def test_redelivery_counts_from_the_previous_owners_commit() -> None:
    """Committed at 10 having fetched up to 15, the task at 10 tried twice: the next owner knows."""
    offsets = Offsets("w2")
    offsets.learn([P0], {P0: (10, orjson.dumps({"upto": 15, "n": 2, "by": "w1"}).decode())})
    assert offsets.delivery_count(P0, 10) == 3  # the oldest open task: one more than its count
    assert offsets.delivery_count(P0, 12) == 2  # fetched by the dead owner, not answered
    assert offsets.delivery_count(P0, 15) == 1  # never fetched before


def test_commit_metadata_round_trips_to_the_next_owner() -> None:
    first = Offsets("w1")
    first.learn([P0, P1], {})
    for tp in (P0, P1):
        for o in range(4):
            first.track(tp, o)
            first.attempt(tp, o)
    first.done(P0, 0)  # P0: 1..3 open; P1: 0..3 open
    commit = committed_by(first)  # then w1 dies

    second = Offsets("w2")
    second.learn([P0, P1], commit)
    assert [second.track(P0, o) for o in range(1, 6)] == [2, 2, 2, 1, 1]
    assert [second.track(P1, o) for o in range(0, 5)] == [2, 2, 2, 2, 1]

    # w2 dies too with P0's oldest (delivery 2) in hand: the third owner sees its third delivery.
    second.attempt(P0, 1)
    third = Offsets("w3")
    third.learn([P0], {P0: committed_by(second)[P0]})
    assert third.delivery_count(P0, 1) == 3


def test_a_held_back_record_is_not_charged_a_delivery_it_did_not_get() -> None:
    """A redelivery waiting its turn: if this member dies first, its count must not go up."""
    offsets = Offsets("w2")
    offsets.learn([P0], {P0: (4, orjson.dumps({"upto": 6, "n": 1}).decode())})
    assert offsets.track(P0, 4) == 2
    held = committed_by(offsets)[P0]
    assert held[0] == 4 and orjson.loads(held[1])["n"] == 1  # as it was: not tried here yet
    offsets.attempt(P0, 4)
    tried = committed_by(offsets)[P0]
    assert tried[0] == 4 and orjson.loads(tried[1])["n"] == 2  # now it is


def test_a_rebalance_forgets_the_revoked_partitions_only() -> None:
    offsets = Offsets("w1")
    offsets.learn([P0, P1], {})
    for tp in (P0, P1):
        offsets.track(tp, 0)
        offsets.attempt(tp, 0)
    offsets.forget([P0])
    assert not offsets.knows(P0) and offsets.knows(P1)
    assert not offsets.is_open(P0, 0) and offsets.is_open(P1, 0)
    assert set(offsets.committable()) == {P1}
    assert offsets.attempting == {(P1, 0)}


def test_a_partition_owned_again_later_is_learnt_afresh() -> None:
    offsets = Offsets("w1")
    offsets.learn([P0], {})
    offsets.track(P0, 0)
    offsets.forget([P0])
    offsets.learn([P0], {P0: (0, orjson.dumps({"upto": 2, "n": 1}).decode())})  # another member had it meanwhile
    assert offsets.track(P0, 0) == 2


def test_leaving_the_group_drops_the_work_but_keeps_what_previous_owners_left() -> None:
    offsets = Offsets("w1")
    offsets.learn([P0], {P0: (3, orjson.dumps({"upto": 5, "n": 1}).decode())})
    offsets.track(P0, 3)
    offsets.attempt(P0, 3)
    offsets.reset()
    assert offsets.committable() == {} and not offsets.attempting and not offsets.is_open(P0, 3)
    assert offsets.knows(P0) and offsets.delivery_count(P0, 3) == 2


def test_metadata_not_written_by_the_sandbox_counts_as_a_first_delivery() -> None:
    offsets = Offsets("w1")
    offsets.learn([P0, P1], {P0: (7, "not json"), P1: (7, None)})
    assert offsets.delivery_count(P0, 7) == 1
    assert offsets.delivery_count(P1, 7) == 1
