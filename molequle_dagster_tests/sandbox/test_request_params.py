"""The request-parsing helpers every REST route shares (params.py): both list wire forms, lead-id inputs,
unknown-parameter strictness, dates and position tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from molequle_dagster.sandbox.envelope import MarketoApiError
from molequle_dagster.sandbox.params import (
    allow_params,
    body_lead_ids,
    decode_token,
    encode_token,
    int_list_param,
    lead_id_input,
    list_param,
    paged,
    parse_datetime,
)


def request(*pairs: tuple[str, object]) -> Request:
    query = urlencode([(k, str(v)) for k, v in pairs]).encode()
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query, "headers": []})


def code_of(call: object) -> str:
    with pytest.raises(MarketoApiError) as raised:
        call()  # type: ignore[operator]
    return raised.value.code


def test_list_params_accept_comma_separated_and_repeated_forms() -> None:
    assert list_param(request(("id", "1,2"), ("id", " 3 "), ("id", "")), "id") == ["1", "2", "3"]
    assert int_list_param(request(("id", "4"), ("id", "5,6")), "id") == [4, 5, 6]
    assert code_of(lambda: int_list_param(request(("id", "4,x")), "id")) == "1001"


def test_lead_id_input_takes_query_or_body_but_not_both() -> None:
    assert lead_id_input(request(("id", "1,2")), {}) == [1, 2]
    assert lead_id_input(request(), {"input": [{"id": 3}, {"id": 4}]}) == [3, 4]
    assert code_of(lambda: lead_id_input(request(("id", 1)), {"input": [{"id": 2}]})) == "1003"
    assert code_of(lambda: lead_id_input(request(), {})) == "1003"
    too_many = ",".join(str(i) for i in range(301))
    assert code_of(lambda: lead_id_input(request(("id", too_many)), {})) == "1003"
    assert len(lead_id_input(request(("id", too_many.rsplit(",", 1)[0])), {})) == 300


@pytest.mark.parametrize("item", [{"id": "3"}, {"id": True}, {"id": 1.5}, {"leadId": 3}, 3, None])
def test_body_lead_ids_name_the_bad_item(item: object) -> None:
    with pytest.raises(MarketoApiError) as raised:
        body_lead_ids({"input": [{"id": 1}, item]})
    assert raised.value.code == "1003" and "input[1]" in raised.value.message


def test_allow_params_names_the_unknown_one_and_ignores_gate_params() -> None:
    allow_params(request(("batchSize", 1), ("access_token", "t"), ("_method", "GET")), "batchSize")
    with pytest.raises(MarketoApiError) as raised:
        allow_params(request(("batchsize", 1)), "batchSize", "nextPageToken")
    assert raised.value.code == "1003" and "'batchsize'" in raised.value.message
    assert "batchSize" in raised.value.message  # says what was expected


def test_datetimes_take_z_or_an_offset_and_no_offset_means_gmt() -> None:
    expected = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    for text in ("2026-03-10T15:00:00Z", "2026-03-10T16:00:00+01:00", "2026-03-10T10:00:00-0500"):
        assert parse_datetime(text, "startAt") == expected
    assert parse_datetime("2026-03-10T16:00:00 01:00", "startAt") == expected  # an unencoded '+'
    assert parse_datetime("2026-03-10T15:00:00", "startAt") == expected  # no offset means GMT
    assert code_of(lambda: parse_datetime("10/03/2026", "startAt")) == "704"


@given(st.sampled_from(["leads", "lists", "leadprograms"]), st.integers(min_value=0, max_value=10**9))
def test_position_tokens_round_trip_and_guard_their_kind(kind: str, offset: int) -> None:
    token = encode_token(kind, offset)
    assert token == token.upper() and decode_token(token, kind) == [str(offset)]
    with pytest.raises(MarketoApiError):
        decode_token(token, "other")


def test_paged_adds_paging_members_only_when_more_exists() -> None:
    first = paged(list(range(5)), 0, 2, "leads")
    assert first["result"] == [0, 1] and first["moreResult"] is True
    last = paged(list(range(5)), 4, 2, "leads")
    assert last["result"] == [4] and "moreResult" not in last and "nextPageToken" not in last
