"""Vectorised normalizers for match keys: Arrow string array in, Arrow string array out.

Every normalizer runs as a handful of `pyarrow.compute` kernels (RE2 regexes in C++), never a Python loop
per row. Contract shared by all of them:

* input may be any Arrow type (numbers are cast to their decimal text); nulls stay null;
* output is lower-case text, and a value that normalizes to "" (or that is not a valid value of the
  kind, e.g. an email without "@" or a domain without a dot) becomes **null**, which means "no key":
  a null never matches anything, so junk like "", "n/a" or "none" cannot glue records together.

Normalizers (names are the `Normalizer` literal in settings.py):

* ``trim_case``: trim (Unicode whitespace), lower-case, collapse inner whitespace runs (incl. NBSP) to one
  space.
* ``email``: trim, lower-case, drop a leading ``mailto:``, drop plus-addressing in the local part
  (``a+x@b.com`` -> ``a@b.com``) and trailing dots of the domain; valid only as ``local@domain`` with
  exactly one "@", no whitespace and both parts non-empty.
* ``email_domain``: the domain part of ``email`` (``Bob@Example.COM`` -> ``example.com``), validated like
  ``domain``; a bare domain passes through (so the normalizer is idempotent).
* ``domain`` (alias ``url_domain``): the host of a URL, an email address or a bare host: scheme,
  ``mailto:``, user info/local part, path/query/fragment, port, a leading ``www.`` (or ``www2.``) and
  trailing dots are stripped; valid only with at least one dot and no whitespace or empty label.
* ``company_name``: lower-case, apostrophes and dots removed (``S.A.`` -> ``sa``), other punctuation to a
  space, whitespace collapsed, then trailing legal suffixes removed repeatedly (``LEGAL_SUFFIXES``:
  ``Acme Co., Ltd.`` -> ``acme``). A name that is only a suffix (``Company``) is kept.
* ``digits``: ASCII digits only (``+1 (555) 010-9999`` -> ``15550109999``).

Chains apply left to right (e.g. ``[email_domain, trim_case]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

# Legal-form suffixes removed from the end of company names (lower-case, dots already removed).
LEGAL_SUFFIXES: tuple[str, ...] = (
    "inc",
    "incorporated",
    "llc",
    "llp",
    "ltd",
    "limited",
    "gmbh",
    "ag",
    "kg",
    "sa",
    "sas",
    "bv",
    "nv",
    "plc",
    "corp",
    "corporation",
    "co",
    "company",
    "pty",
)

# RE2 `\s` is ASCII only; real CRM data is full of NBSP and other Unicode spaces.
_SPACE = r"[\s\p{Z}]"
_SUFFIX_RUN = r"(" + _SPACE + r"+(" + "|".join(LEGAL_SUFFIXES) + r"))+$"
_EMAIL_SHAPE = r"^[^@\s\p{Z}]+@[^@\s\p{Z}]+$"
_DOMAIN_SHAPE = r"^[^\s\p{Z}./]+(\.[^\s\p{Z}./]+)+$"

Normalize = Callable[[pa.Array], pa.Array]


def _as_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Plain `string` array whatever came in (chunked, dictionary, large_string, numbers, all-null)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.type != pa.string():
        values = pc.cast(values, pa.string())
    return values


def _sub(values: pa.Array, pattern: str, replacement: str = "") -> pa.Array:
    return pc.replace_substring_regex(values, pattern=pattern, replacement=replacement)


def _empty_to_null(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _keep_if(values: pa.Array, pattern: str) -> pa.Array:
    """Null out values that do not match `pattern` (invalid values must not become keys)."""
    matches = pc.fill_null(pc.match_substring_regex(values, pattern=pattern), False)
    return pc.if_else(matches, values, pa.scalar(None, pa.string()))


def _trimmed_lower(values: pa.Array) -> pa.Array:
    return pc.utf8_lower(pc.utf8_trim_whitespace(values))


def trim_case(values: pa.Array) -> pa.Array:
    return _empty_to_null(_sub(_trimmed_lower(values), _SPACE + "+", " "))


def email(values: pa.Array) -> pa.Array:
    text = _sub(_trimmed_lower(values), r"^mailto:")
    text = _sub(text, r"^([^@+]*)\+[^@]*@", r"\1@")  # plus-addressing lives in the local part only
    text = _sub(text, r"\.+$")
    return _keep_if(text, _EMAIL_SHAPE)


def email_domain(values: pa.Array) -> pa.Array:
    # A value that is already a bare domain stays one, so the normalizer is idempotent; the domain part
    # must be a valid domain (with a dot), like everything `domain` returns.
    text = _as_text(values)
    has_at = pc.fill_null(pc.match_substring(text, "@"), False)
    return pc.if_else(has_at, domain(_sub(email(text), r"^[^@]*@")), domain(text))


def domain(values: pa.Array) -> pa.Array:
    text = _trimmed_lower(values)
    text = _sub(text, r"^[a-z][a-z0-9+.\-]*://")  # scheme
    text = _sub(text, r"^mailto:")
    text = _sub(text, r"[/?#\\].*$")  # path, query, fragment
    text = _sub(text, r"^.*@")  # user info or email local part
    text = _sub(text, r":[0-9]*$")  # port
    text = _sub(text, r"^www[0-9]*\.")
    text = _sub(text, r"\.+$")
    return _keep_if(text, _DOMAIN_SHAPE)


def company_name(values: pa.Array) -> pa.Array:
    text = _sub(pc.utf8_lower(values), r"['\x{2019}.]")  # "S.A." -> "sa"; "O'Brien" -> "obrien"
    text = _sub(text, r"[^\p{L}\p{N}]+", " ")
    text = pc.utf8_trim_whitespace(text)
    text = _sub(text, _SUFFIX_RUN)
    return _empty_to_null(pc.utf8_trim_whitespace(text))


def digits(values: pa.Array) -> pa.Array:
    return _empty_to_null(_sub(values, r"[^0-9]+"))


NORMALIZERS: dict[str, Normalize] = {
    "trim_case": trim_case,
    "email": email,
    "email_domain": email_domain,
    "url_domain": domain,
    "domain": domain,
    "company_name": company_name,
    "digits": digits,
}


def normalize_column(values: pa.Array | pa.ChunkedArray, chain: Sequence[str]) -> pa.Array:
    """Apply a chain of normalizers; an empty chain still maps "" to null (exact match on the rest)."""
    text = _as_text(values)
    for name in chain:
        try:
            step = NORMALIZERS[name]
        except KeyError:
            raise ValueError(
                f"unknown normalizer {name!r}; expected one of {', '.join(sorted(NORMALIZERS))}"
            ) from None
        text = step(text)
    return _empty_to_null(text)
