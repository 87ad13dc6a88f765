"""What Laddr 0.9.6's own workers do differently, said the same way wherever it shows
(send, the api, verify, the TUI, the readiness report)."""

from __future__ import annotations

from sandbox.protocol import Response

KAFKA_ANSWERS = ("Laddr 0.9.6's Kafka worker answers with no key and no task_id, so Laddr's own client "
                 "(KafkaBus.wait_for_response, which Laddr's API uses) never matches them")
REDIS_ANSWERS = "a Laddr worker's answer (no task_id inside), matched by its Redis key as Laddr's own client does"


def matching_note(response: Response) -> str | None:
    """One line when the answer came from a worker that does not name its task (a Laddr worker)."""
    if response.matched_by == "job_id":
        return (f"matched by its job_id only: {KAFKA_ANSWERS} — a migration blocker; "
                "see: laddr-sandbox check --project DIR")
    if response.matched_by == "key":
        return REDIS_ANSWERS
    return None
