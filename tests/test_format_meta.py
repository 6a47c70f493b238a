"""The meta section's JSON rules (docs/FORMAT.md section 4): what a reader refuses, and that the writer
never writes it."""

import pytest

from deepcompress.format import FormatError, decode, encode
from deepcompress.format.manifest import META_MAX_DEPTH, pack_preamble


def file_with_meta(raw: bytes) -> bytes:
    """A layerless .dcz file whose meta section is exactly `raw` (valid CRC)."""
    return pack_preamble(raw, [])


def nested(depth: int) -> bytes:
    """A meta object whose arrays bring the nesting to `depth` levels (the object itself is level 1)."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


REFUSED = {
    "bom": (b'\xef\xbb\xbf{"model":"x"}', "byte order mark"),
    "duplicate key": (b'{"ops":[],"model":"x","ops":[]}', "duplicate key 'ops'"),
    "duplicate nested key": (b'{"a":[{"k":1,"k":1}]}', "duplicate key 'k'"),
    "duplicate after unescaping": (b'{"a":1,"\\u0061":2}', "duplicate key 'a'"),
    "float overflow": (b'{"x":1e999}', "number 1e999 is beyond the range of a 64-bit float"),
    "negative overflow": (b'{"x":-1.5E400}', "number -1.5E400 is beyond"),
    "NaN": (b'{"x":NaN}', "JSON constant NaN"),
    "Infinity": (b'{"x":[-Infinity]}', "JSON constant -Infinity"),
    "top-level array": (b"[1,2]", "expected a JSON object, got list"),
    "top-level string": (b'"x"', "expected a JSON object, got str"),
    "lone high surrogate": (b'{"name":"a\\ud800b"}', "unpaired surrogate \\ud800"),
    "lone low surrogate key": (b'{"\\uDC00":1}', "unpaired surrogate \\udc00"),
    "reversed pair": (b'{"x":["\\ude00\\ud83d"]}', "unpaired surrogate"),
    "integer above int64": (b'{"n":9223372036854775808}', "outside the signed 64-bit range"),
    "integer below int64": (b'{"n":-9223372036854775809}', "outside the signed 64-bit range"),
    "huge integer": (b'{"n":' + b"7" * 100_000 + b"}", "(100000 characters) is outside"),
    "too deep": (nested(META_MAX_DEPTH + 1), f"deeper than {META_MAX_DEPTH} levels"),
    "very deep": (b"[" * 200_000, f"deeper than {META_MAX_DEPTH} levels"),
    "encoded surrogate": (b'{"x":"\xed\xa0\x80"}', "not valid UTF-8"),
    "empty": (b"", "not valid JSON"),
    "trailing comma": (b'{"a":1,}', "not valid JSON"),
}


@pytest.mark.parametrize("raw, message", REFUSED.values(), ids=REFUSED.keys())
def test_reader_refuses_and_names_the_meta_section(raw, message):
    with pytest.raises(FormatError) as info:
        decode(file_with_meta(raw))
    assert str(info.value).startswith("meta: ") and message in str(info.value), str(info.value)


ACCEPTED = {
    "deepest allowed": (nested(META_MAX_DEPTH), None),
    "brackets in strings": (b'{"a":"' + b"[{" * 100 + b'\\"]"}', {"a": "[{" * 100 + '"]'}),
    "surrogate pair": (b'{"s":"\\ud83d\\ude00"}', {"s": "\U0001F600"}),
    "escaped backslash then u": (b'{"s":"\\\\ud800"}', {"s": "\\ud800"}),
    "int64 edges": (b'{"lo":-9223372036854775808,"hi":9223372036854775807}', {"lo": -2**63, "hi": 2**63 - 1}),
    "underflow to zero": (b'{"x":1e-999}', {"x": 0.0}),
    "whitespace around": (b' \n{"a" : [1, 2.5]}\t', {"a": [1, 2.5]}),
    "same key in two objects": (b'{"a":{"k":1},"b":{"k":2}}', {"a": {"k": 1}, "b": {"k": 2}}),
}


@pytest.mark.parametrize("raw, expected", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_reader_accepts_valid_corner_cases(raw, expected):
    _, meta = decode(file_with_meta(raw))
    assert expected is None or meta == expected


def deep_dict(depth: int) -> dict:
    """{"a": {"a": ...}} with `depth` objects."""
    meta = {}
    for _ in range(depth - 1):
        meta = {"a": meta}
    return meta


@pytest.mark.parametrize("meta, message", [
    ({"n": 2**63}, "outside the signed 64-bit range"), ({"s": "\ud800"}, "unpaired surrogate"),
    ({"x": float("inf")}, "not JSON compliant"), ({"x": float("nan")}, "not JSON compliant"),
    (deep_dict(META_MAX_DEPTH + 1), f"deeper than {META_MAX_DEPTH} levels")])
def test_writer_refuses_what_readers_refuse(meta, message):
    with pytest.raises(ValueError) as info:
        encode([], meta)
    assert message in str(info.value)


def test_writer_output_parses_back_at_the_limits():
    meta = {"deep": deep_dict(META_MAX_DEPTH - 1), "n": [-2**63, 2**63 - 1], "x": 1e308, "s": "\U0001F600 é"}
    assert decode(encode([], meta))[1] == meta
