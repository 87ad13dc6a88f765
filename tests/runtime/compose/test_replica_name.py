"""How a Compose worker finds its replica number (sandbox/replica_name.py): pure parsing, no engine.

The answer below is what Docker's embedded DNS sent for a container named
c3x-proj-researcher_worker-2 on the network c3dnstest (captured once on Docker 20.10).
"""

from sandbox.replica_name import ptr_query, parse_ptr_answer, replica_number

ANSWER = (b"\xfa\xf8\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x012\x010\x0219\x03172\x07in-addr\x04arpa\x00"
          b"\x00\x0c\x00\x01\x012\x010\x0219\x03172\x07in-addr\x04arpa\x00\x00\x0c\x00\x01\x00\x00\x02X\x00("
          b"\x1cc3x-proj-researcher_worker-2\tc3dnstest\x00")


def test_the_ptr_answer_names_the_container() -> None:
    assert parse_ptr_answer(ANSWER, 0xFAF8) == "c3x-proj-researcher_worker-2.c3dnstest"


def test_an_answer_to_another_query_or_an_error_is_not_taken() -> None:
    assert parse_ptr_answer(ANSWER, 0x1234) is None
    nxdomain = ANSWER[:3] + b"\x83" + ANSWER[4:]
    assert parse_ptr_answer(nxdomain, 0xFAF8) is None


def test_a_compressed_name_is_followed() -> None:
    # the answer's name as a pointer to the question's (offset 12), as most DNS servers send it
    question_end = ANSWER.index(b"\x00\x0c\x00\x01") + 4
    record = ANSWER[question_end:]
    name_end = record.index(b"\x00\x0c\x00\x01")
    compressed = ANSWER[:question_end] + b"\xc0\x0c" + record[name_end:]
    assert parse_ptr_answer(compressed, 0xFAF8) == "c3x-proj-researcher_worker-2.c3dnstest"


def test_the_query_asks_for_the_reversed_address() -> None:
    assert b"\x012\x010\x0218\x03172\x07in-addr\x04arpa\x00\x00\x0c\x00\x01" in ptr_query("172.18.0.2", 7)


def test_the_number_is_the_last_part_of_the_container_name_for_both_compose_versions() -> None:
    assert replica_number("myproj-1a2b3c4d-researcher_worker-12.myproj-1a2b3c4d_default") == 12  # v2
    assert replica_number("myproj_researcher_worker_3.myproj_default") == 3  # v1
    assert replica_number("3ed3bd7947f0") is None  # a bare container id
