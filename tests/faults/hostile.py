"""Hostile payloads for the fuzz tests: random bytes, JSON of wrong types, NaN/Infinity, huge numbers,
deep nesting, unicode, and near-valid bodies with one field replaced by any of those."""

from __future__ import annotations

import json
from typing import Any

import faust
from hypothesis import strategies as st

EXAMPLES = 2000  # generated cases per decoder and per endpoint

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", "NaN", "Infinity", "1e999", "-0", "\u0000", "\ud7ff\ufffd", "2026-13-45T99:99:99",
                     "patient-001", "pt-" + "0" * 48, "9" * 400]),
)
json_values = st.recursive(
    scalars, lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)),
    max_leaves=20,
)


def dumps(value: Any) -> bytes:
    """JSON as a sloppy client writes it: NaN and Infinity included (Python's default)."""
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def deep(depth: int, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * depth + closer * depth).encode()


raw_tricks = st.one_of(
    st.integers(min_value=1, max_value=5_000).map(deep),
    st.integers(min_value=1, max_value=3_000).map(lambda d: ('{"a":' * d + "1" + "}" * d).encode()),
    st.sampled_from([b"", b"{", b"[1,", b"NaN", b"Infinity", b"-Infinity", b"1e999999", b"9" * 5000,
                     b'{"a": NaN}', b"\xff\xfe\x00", b'"\\ud800"', b"null", b"[]", b"{}", b"true"]),
)


def near_valid(example: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """`example` with one field replaced, removed, or one extra field added, each by anything."""
    keys = sorted(example) or ["x"]

    def build(args: tuple[str, Any, int]) -> bytes:
        key, value, how = args
        body = dict(example)
        if how == 0:
            body[key] = value
        elif how == 1:
            body.pop(key, None)
        else:
            body[f"extra_{key}"] = value
        return dumps(body)

    return st.tuples(st.sampled_from(keys), json_values, st.integers(0, 2)).map(build)


def nested_near_valid(example: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Like `near_valid`, inside the first nested object of `example` (e.g. `measurements`)."""
    inner_keys = [key for key, value in example.items() if isinstance(value, dict)]
    if not inner_keys:
        return near_valid(example)
    outer = inner_keys[0]
    inner = example[outer]

    def build(args: tuple[str, Any]) -> bytes:
        key, value = args
        return dumps({**example, outer: {**inner, key: value}})

    return st.tuples(st.sampled_from(sorted(inner)), json_values).map(build)


def bodies(example: dict[str, Any] | list[Any] | None) -> st.SearchStrategy[bytes]:
    """Everything hostile, weighted towards near-valid bodies (they reach the deepest code)."""
    options = [st.binary(max_size=300), json_values.map(dumps), raw_tricks]
    if isinstance(example, dict):
        options += [near_valid(example), near_valid(example), nested_near_valid(example)]
    elif isinstance(example, list) and example and isinstance(example[0], dict):
        options += [near_valid(example[0]).map(lambda raw: b"[" + raw + b"]"),
                    st.lists(near_valid(example[0]), max_size=4).map(lambda raws: b"[" + b",".join(raws) + b"]")]
    return st.one_of(*options)


def post_routes(app: Any) -> dict[str, Any]:
    """Every route of the app whose view answers POST (a new POST view is covered without editing tests)."""
    return {path: type(view) for path, view in app.web.views.items()
            if type(view).post is not faust.web.View.post}
