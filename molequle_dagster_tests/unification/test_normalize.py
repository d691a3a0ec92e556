"""Each normalizer on ordinary and nasty values; the shared null/empty contract; idempotence."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from molequle_dagster.unification import NORMALIZERS, normalize_column


def norm(chain: list[str], values: list[object]) -> list[str | None]:
    return normalize_column(pa.array(values), chain).to_pylist()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ada   Lovelace ", "ada lovelace"),
        ("Ada\u00a0\u2003Lovelace", "ada lovelace"),  # NBSP and em space from CRM copy/paste
        ("ÄNGSTRÖM", "ängström"),
        ("\t\n", None),
        ("", None),
        (None, None),
    ],
)
def test_trim_case_collapses_whitespace_and_lowercases(raw: str | None, expected: str | None) -> None:
    assert norm(["trim_case"], [raw]) == [expected]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Bob+News@Example.COM ", "bob@example.com"),
        ("bob+a+b@example.com", "bob@example.com"),
        ("mailto:Bob@Example.com", "bob@example.com"),
        ("bob@example.com.", "bob@example.com"),
        ("first.last@sub.example.co.uk", "first.last@sub.example.co.uk"),  # dots in the local part stay
        ("+tag@example.com", None),  # nothing left of the local part
        ("bob@", None),
        ("@example.com", None),
        ("bob", None),
        ("a@b@c.com", None),
        ("bob smith@example.com", None),
        ("", None),
        (None, None),
    ],
)
def test_email_is_lowercased_without_tags_and_invalid_ones_give_no_key(
    raw: str | None, expected: str | None
) -> None:
    assert norm(["email"], [raw]) == [expected]


def test_email_domain_is_the_lowercased_part_after_the_at() -> None:
    values = ["Bob+x@Example.COM", "JohnDoe_10093@tdtest.combo", "no-at-sign", None]
    assert norm(["email_domain"], values) == ["example.com", "tdtest.combo", None, None]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.Example.com:8080/path?q=1#top", "example.com"),
        ("HTTP://example.com", "example.com"),
        ("www.brexit.com", "brexit.com"),  # as in the Adobe companies example
        ("globallogic.com", "globallogic.com"),
        ("www2.acme.io.", "acme.io"),
        ("bob@acme.io", "acme.io"),
        ("mailto:bob@acme.io", "acme.io"),
        ("http://user:secret@host.example.org:80/x", "host.example.org"),
        ("acme.io/about", "acme.io"),
        ("n/a", None),
        ("none", None),
        ("localhost", None),
        ("a..b", None),
        ("http://", None),
        ("", None),
    ],
)
def test_domain_keeps_the_host_without_scheme_www_port_or_path(raw: str, expected: str | None) -> None:
    assert norm(["domain"], [raw]) == [expected]
    assert norm(["url_domain"], [raw]) == [expected]  # documented alias


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Acme, Inc.", "acme"),
        ("ACME Inc", "acme"),
        ("Acme Co., Ltd.", "acme"),
        ("Acme Limited", "acme"),
        ("Nestlé S.A.", "nestlé"),
        ("Siemens AG", "siemens"),
        ("Foo GmbH & Co. KG", "foo"),
        ("Capgemini SAS", "capgemini"),
        ("Philips N.V.", "philips"),
        ("Shell plc", "shell"),
        ("Microsoft Corporation", "microsoft"),
        ("McDonald\u2019s Corp", "mcdonalds"),
        ("McDonald's", "mcdonalds"),
        ("The Coca-Cola Company", "the coca cola"),
        ("Company", "company"),  # only a suffix: kept, never emptied
        ("Incubator Labs", "incubator labs"),  # suffix words only count at the end, as whole words
        ("...", None),
        (None, None),
    ],
)
def test_company_name_drops_legal_suffixes_and_punctuation(raw: str | None, expected: str | None) -> None:
    assert norm(["company_name"], [raw]) == [expected]


def test_digits_keeps_only_the_digits() -> None:
    assert norm(["digits"], ["+1 (555) 010-9999", "ext.", None]) == ["15550109999", None, None]


def test_numbers_become_text_and_normalizers_chain_in_order() -> None:
    assert norm(["digits"], [42, None]) == ["42", None]
    assert norm(["email_domain", "trim_case"], ["x@ACME.io"]) == ["acme.io"]
    assert norm([], ["", "Exact"]) == [None, "Exact"]  # no normalizer: exact match, "" still means no key


def test_chunked_and_dictionary_input() -> None:
    chunked = pa.chunked_array([["A@x.com"], ["b@X.com", None]])
    assert normalize_column(chunked, ["email"]).to_pylist() == ["a@x.com", "b@x.com", None]
    encoded = pa.array(["Acme Inc", "acme"]).dictionary_encode()
    assert normalize_column(encoded, ["company_name"]).to_pylist() == ["acme", "acme"]


def test_unknown_normalizer_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown normalizer 'soundex'.*company_name"):
        normalize_column(pa.array(["x"]), ["soundex"])


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=1, max_size=20),
    name=st.sampled_from(sorted(NORMALIZERS)),
)
def test_normalizers_are_idempotent_and_never_emit_empty(values: list[str | None], name: str) -> None:
    once = normalize_column(pa.array(values, pa.string()), [name])
    twice = normalize_column(once, [name])
    assert twice.to_pylist() == once.to_pylist()
    assert "" not in once.to_pylist()
    assert len(once) == len(values)
