"""Two Kafka requests over raw TCP, so the launchers need no Kafka client library.

- `kafka_metadata`: Metadata v1 — the live (unfenced) brokers and every topic's
  partitions with their leader, replicas and in-sync replicas.
- `kafka_quorum`: DescribeQuorum v0 — the KRaft quorum's active controller and voters.
  (In KRaft the Metadata and DescribeCluster answers name a *random* live broker as
  "controller"; only DescribeQuorum names the active one.)
"""

from __future__ import annotations

import asyncio
import struct

CLIENT_ID = b"laddr-sandbox"
METADATA_TOPIC = b"__cluster_metadata"


class _Reader:
    """Decodes a response body: fixed-size ints, strings, arrays, and the compact forms."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def _bytes(self, n: int) -> str | None:
        if n < 0:
            return None
        self.pos += n
        return self.data[self.pos - n : self.pos].decode()

    def string(self) -> str | None:
        return self._bytes(self.take(">h"))

    def compact_string(self) -> str | None:
        return self._bytes(self.uvarint() - 1)

    def int32_array(self) -> list[int]:
        return [self.take(">i") for _ in range(self.take(">i"))]

    def compact_count(self) -> int:
        return max(self.uvarint() - 1, 0)

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.pos += self.uvarint()  # size, then the value


async def _request(bootstrap: str, header_and_body: bytes, timeout: float) -> bytes:
    """Send one request to the first address of `bootstrap`; the response without its size."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        writer.write(struct.pack(">i", len(header_and_body)) + header_and_body)
        await writer.drain()
        size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), timeout))[0]
        return await asyncio.wait_for(reader.readexactly(size), timeout)
    finally:
        writer.close()


async def kafka_metadata(bootstrap: str, timeout: float = 2.0) -> dict:
    """One Metadata v1 request for all topics (never auto-creates one).

    {"brokers": [(id, host, port)], "controller_id": int,
     "topics": {name: {partition: {"leader": id, "replicas": [ids], "isr": [ids], "error": code}}}}
    """
    # header: api_key 3 (Metadata), version 1, correlation id, client id; body: topics = null (all)
    body = struct.pack(">hhih", 3, 1, 7, len(CLIENT_ID)) + CLIENT_ID + struct.pack(">i", -1)
    r = _Reader(await _request(bootstrap, body, timeout), pos=4)  # skip the correlation id
    brokers = []
    for _ in range(r.take(">i")):
        node_id, host, port = r.take(">i"), r.string(), r.take(">i")
        r.string()  # rack
        brokers.append((node_id, host, port))
    controller_id = r.take(">i")
    topics: dict[str, dict[int, dict]] = {}
    for _ in range(r.take(">i")):
        r.take(">h")  # topic error
        name = r.string() or ""
        r.take(">b")  # is_internal
        parts = topics.setdefault(name, {})
        for _ in range(r.take(">i")):
            error, partition, leader = r.take(">h"), r.take(">i"), r.take(">i")
            parts[partition] = {"leader": leader, "replicas": r.int32_array(), "isr": r.int32_array(), "error": error}
    return {"brokers": brokers, "controller_id": controller_id, "topics": topics}


async def kafka_quorum(bootstrap: str, timeout: float = 2.0) -> dict:
    """One DescribeQuorum v0 request (a broker forwards it to the controllers).

    {"error": code, "leader_id": id (-1 while electing), "leader_epoch": int,
     "high_watermark": int, "voters": {id: log_end_offset}, "observers": {id: log_end_offset}}
    """
    # header v2 (flexible): api_key 55, version 0, correlation id, client id, no tags
    header = struct.pack(">hhih", 55, 0, 11, len(CLIENT_ID)) + CLIENT_ID + b"\x00"
    # topics [ "__cluster_metadata" [ partition 0 ] ] in compact arrays, each with no tags
    body = b"\x02" + bytes([len(METADATA_TOPIC) + 1]) + METADATA_TOPIC + b"\x02" + struct.pack(">i", 0)
    body += b"\x00\x00\x00"
    r = _Reader(await _request(bootstrap, header + body, timeout), pos=4)
    r.skip_tags()  # response header v1
    answer: dict = {"error": r.take(">h"), "leader_id": -1, "leader_epoch": -1, "high_watermark": -1,
                    "voters": {}, "observers": {}}
    for _ in range(r.compact_count()):
        r.compact_string()
        for _ in range(r.compact_count()):
            r.take(">i")  # partition index
            error = r.take(">h")
            answer["error"] = answer["error"] or error
            answer["leader_id"], answer["leader_epoch"] = r.take(">i"), r.take(">i")
            answer["high_watermark"] = r.take(">q")
            for kind in ("voters", "observers"):
                for _ in range(r.compact_count()):
                    replica, end_offset = r.take(">i"), r.take(">q")
                    r.skip_tags()
                    answer[kind][replica] = end_offset
            r.skip_tags()
        r.skip_tags()
    return answer
