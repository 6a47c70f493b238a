"""R serialized data (rserial) and the Jane Austen corpus (data_text).

The synthetic files are written here byte by byte from R's documented XDR layout (R Internals,
"Serialization formats"; the same layout R's saveRDS writes), so the reader is checked against the
format, not against itself; the real corpus is checked against its published size (REFERENCE.md: 4.0M
characters, ~718k words) and its known first lines.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import pytest

from deepcompress.data import DataError
from deepcompress.data_text import (AUSTEN_SPLITS, UNKNOWN, austen_folder, char_corpus, lm_dataset, windows, word_corpus,
                                   words_of)
from deepcompress.rserial import RFormatError, RObject, read_lazyload, unserialize

ATTR, TAG = 1 << 9, 1 << 10
UTF8 = 1 << 3 << 12


def i32(*values) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def charsxp(s: str | None) -> bytes:
    if s is None:
        return i32(9, -1)
    raw = s.encode()
    return i32(9 | UTF8, len(raw)) + raw


def symbol(name: str) -> bytes:
    return i32(1) + charsxp(name)


def names_attr(names: list[str]) -> bytes:
    """A pairlist (names = <character vector>) as R writes an attribute list."""
    return i32(2 | TAG) + symbol("names") + strsxp(names) + i32(254)


def strsxp(values, names=None) -> bytes:
    head = i32(16 | (ATTR if names else 0), len(values))
    return head + b"".join(charsxp(v) for v in values) + (names_attr(names) if names else b"")


def intsxp(values, kind=13) -> bytes:
    return i32(kind, len(values), *values)


def vecsxp(items: list[bytes], names=None) -> bytes:
    return i32(19 | (ATTR if names else 0), len(items)) + b"".join(items) + (names_attr(names) if names else b"")


def serialized(body: bytes, version: int = 3) -> bytes:
    header = b"X\n" + i32(version, 0x040201, 0x030500)
    return header + (i32(5) + b"UTF-8" if version == 3 else b"") + body


def lazyload_db(tmp_path, variables: dict[str, bytes]):
    """Write NAME.rdx / NAME.rdb holding `variables` (name -> serialized body), as R's makeLazyLoadDB does."""
    rdb, where = b"", []
    for body in variables.values():
        raw = serialized(body)
        blob = struct.pack(">I", len(raw)) + zlib.compress(raw)
        where.append(intsxp([len(rdb), len(blob)]))
        rdb += blob
    index = vecsxp([vecsxp(where, names=list(variables)), vecsxp([]), intsxp([1], kind=10)],
                   names=["variables", "references", "compressed"])
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(serialized(index)))
    (tmp_path / "Rdata.rdb").write_bytes(rdb)
    return tmp_path / "Rdata.rdx", tmp_path / "Rdata.rdb"


@pytest.mark.parametrize("version", [2, 3])
def test_vectors_lists_names_and_na(version):
    body = vecsxp([strsxp(["a", None, "é"]), intsxp([1, -(2 ** 31), 7]), intsxp([0, 1], kind=10)],
                  names=["text", "ints", "flags"])
    obj = unserialize(serialized(body, version))
    assert obj.names() == ["text", "ints", "flags"]
    text, ints, flags = obj.value
    assert text.value == ["a", None, "é"]
    assert ints.value.tolist() == [1, -(2 ** 31), 7] and flags.value.tolist() == [0, 1]


def test_a_repeated_symbol_is_a_reference():
    # the second `names` symbol is written as REFSXP 1 (flags 1 << 8 | 255), as R does
    attr = i32(2 | TAG) + symbol("names") + strsxp(["x"]) + i32(254)
    second = i32(2 | TAG) + i32((1 << 8) | 255) + strsxp(["y"]) + i32(254)
    body = vecsxp([i32(16 | ATTR, 0) + attr, i32(16 | ATTR, 0) + second])
    obj = unserialize(serialized(body))
    assert [item.names() for item in obj.value] == [["x"], ["y"]]


def test_lazyload_database(tmp_path):
    rdx, rdb = lazyload_db(tmp_path, {"alpha": strsxp(["one", "two"]), "beta": intsxp([5, 6, 7])})
    got = read_lazyload(rdx, rdb)
    assert got["alpha"].value == ["one", "two"] and got["beta"].value.tolist() == [5, 6, 7]


@pytest.mark.parametrize("blob, message", [
    (b"A\n" + i32(3), "not R XDR"),
    (serialized(strsxp(["abc"]))[:-2], "truncated"),
    (serialized(i32(16, 2 ** 30)), "exceeds"),
    (serialized(i32(16, -1, 1, 0)), "exceeds"),         # a long vector bigger than the file
    (serialized(i32(3)), "not plain data"),                          # a closure
    (serialized(i32(4)), "not plain data"),                          # an environment
    (serialized(i32((5 << 8) | 255)), "reference 5"),
    (serialized(i32(9, 2) + b"\xff\xfe"), "not valid UTF-8"),
    (serialized(i32(16, 1) + intsxp([1])), "holds type 13"),
    (b"X\n" + i32(7, 0, 0), "version 7"),
])
def test_corrupt_or_hostile_data_is_one_error(blob, message):
    with pytest.raises(RFormatError, match=message) as info:
        unserialize(blob, "test")
    assert "\n" not in str(info.value)


def test_deep_nesting_is_refused():
    body = i32(19, 1) * 100 + i32(254)
    with pytest.raises(RFormatError, match="nested deeper"):
        unserialize(serialized(body))


def test_lazyload_offsets_outside_the_file_are_refused(tmp_path):
    rdx, rdb = lazyload_db(tmp_path, {"alpha": strsxp(["one"])})
    rdb.write_bytes(rdb.read_bytes()[:10])
    with pytest.raises(RFormatError, match="outside"):
        read_lazyload(rdx, rdb)


def test_char_corpus_uses_the_training_characters():
    texts = {"a": "abca", "b": "cab", "c": "abz"}
    corpus = char_corpus(texts, {"train": ("a", "b"), "valid": ("c",), "test": ("c",)})
    assert corpus.vocab[1:] == "\nabc"
    assert corpus.decode(corpus.train) == "abca\n\ncab"
    assert corpus.encode("cab?") == [4, 2, 3, UNKNOWN]
    assert corpus.test.tolist()[-1] == UNKNOWN and corpus.decode(corpus.test) == "ab\ufffd"
    x, y = windows(np.arange(11), 3)
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and y.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_words_are_lower_cased_words_numbers_dash_runs_and_marks():
    assert words_of('Mr. Darcy\'s--"Well," said she; 1811') == [
        "mr", ".", "darcy's", "--", '"', "well", ",", '"', "said", "she", ";", "1811"]


def test_word_corpus_keeps_the_most_frequent_training_words():
    texts = {"a": "the cat, the dog.", "b": "The cat sat.", "c": "a dog sat on the mat"}
    corpus = word_corpus(texts, 4, {"train": ("a", "b"), "valid": ("c",), "test": ("c",)})
    # counts: the 3, cat 2, . 2, then dog / sat / , once each: ties in alphabetical order
    assert corpus.vocab == ("<unk>", "the", ".", "cat")
    assert corpus.decode(corpus.train) == "the cat <unk> the <unk> . the cat <unk> ."
    assert corpus.test.tolist() == [UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, 1, UNKNOWN]
    assert corpus.encode("The cat, on the mat.") == [1, 3, UNKNOWN, UNKNOWN, 1, UNKNOWN, 2]
    with pytest.raises(DataError, match="at least 2"):
        word_corpus(texts, 1, {"train": ("a",), "valid": ("c",), "test": ("c",)})


def test_the_real_austen_corpus():
    if not (austen_folder() / "Rdata.rdb").is_file():
        pytest.skip("Jane Austen's novels not installed: run `deepcompress data fetch austen`")
    from deepcompress.data_text import load_austen_novels

    texts = load_austen_novels()
    assert sorted(texts) == sorted(n for split in AUSTEN_SPLITS.values() for n in split)
    assert sum(len(t) for t in texts.values()) == 4_025_022  # each novel's lines joined by newlines
    assert 710_000 < sum(len(t.split()) for t in texts.values()) < 725_000
    assert texts["emma"].startswith("EMMA\n\nBy Jane Austen") and texts["persuasion"].startswith("Persuasion")
    corpus = char_corpus(texts)
    assert len(corpus.vocab) == 82 and (corpus.test == UNKNOWN).sum() == 0  # 81 characters + unknown
    ds = lm_dataset(corpus, 100)
    assert ds.train_x.shape[1] == 100 and (ds.train_y[:, :-1] == ds.train_x[:, 1:]).all()
    words = word_corpus(texts)
    assert len(words.vocab) == 5000 and len(words.train) == 671_950
    assert 0.979 < (words.train != UNKNOWN).mean() < 0.981 and 0.950 < (words.test != UNKNOWN).mean() < 0.952


def test_missing_corpus_names_the_fix(tmp_path):
    from deepcompress.data_text import load_austen_novels

    with pytest.raises(DataError, match="deepcompress data fetch austen"):
        load_austen_novels(tmp_path)
    (tmp_path / "Rdata.rdx").write_bytes(b"x")
    (tmp_path / "Rdata.rdb").write_bytes(b"x")
    with pytest.raises(DataError, match="checksum mismatch"):
        load_austen_novels(tmp_path)


def test_an_unknown_austen_corpus_name_is_refused():
    from deepcompress.data_text import austen_corpus_named

    with pytest.raises(DataError, match="no Austen corpus named 'austen-letters'"):
        austen_corpus_named("austen-letters")
