"""The guide's requirements.txt change: Laddr with its Kafka extra and aiokafka>=0.11.0.

    laddr>=0.9.6        ->  laddr[kafka]>=0.9.6
    aiokafka>=0.8.0     ->  aiokafka>=0.11.0
    (no aiokafka line)  ->  aiokafka>=0.11.0 added after the laddr line

Only those lines change (their comments and markers stay); a file without a laddr
line gets `laddr[kafka]` only if it has no aiokafka either. The rollback leaves
the file as it is: aiokafka does no harm on Redis (a backup restores it exactly).
"""

from __future__ import annotations

import re

AIOKAFKA_MIN = (0, 11, 0)
AIOKAFKA_REQ = "aiokafka>=0.11.0"

# name, [extras], the rest (version spec, markers, comment)
_REQ = re.compile(r"^(?P<indent>\s*)(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?(?P<rest>.*)$")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(spec: str) -> tuple[int, ...] | None:
    m = re.search(r">=\s*([0-9]+(?:\.[0-9]+)*)", spec)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def _parse(line: str):
    body = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
    if not body.strip() or body.lstrip().startswith("-"):
        return None
    return _REQ.match(line.rstrip("\r\n"))


def to_kafka(text: str) -> str:
    lines = text.splitlines(keepends=True)
    laddr_at = aiokafka_at = None
    for i, line in enumerate(lines):
        m = _parse(line)
        if not m:
            continue
        name = _canon(m["name"])
        if name == "laddr" and laddr_at is None:
            laddr_at = i
            extras = [e.strip() for e in (m["extras"] or "").split(",") if e.strip()]
            if not {"kafka", "all", "all-queues"} & set(extras):
                extras.append("kafka")
                eol = line[len(line.rstrip("\r\n")):]
                lines[i] = f"{m['indent']}{m['name']}[{','.join(extras)}]{m['rest']}{eol}"
        elif name == "aiokafka" and aiokafka_at is None:
            aiokafka_at = i
            spec = m["rest"].split("#", 1)[0].split(";", 1)[0]
            version = _version(spec)
            if version is None and not spec.strip():
                continue  # unpinned: pip takes the newest, which is >= 0.11.0
            if version is None or version < AIOKAFKA_MIN:
                eol = line[len(line.rstrip("\r\n")):]
                tail = m["rest"][len(spec):]
                lines[i] = f"{m['indent']}{AIOKAFKA_REQ}{tail}{eol}"
    if aiokafka_at is None:
        nl = "\r\n" if "\r\n" in text else "\n"
        at = laddr_at + 1 if laddr_at is not None else len(lines)
        if at > 0 and not lines[at - 1].endswith("\n"):
            lines[at - 1] += nl
        lines.insert(at, AIOKAFKA_REQ + nl)
    return "".join(lines)


def to_redis(text: str) -> str:
    return text
