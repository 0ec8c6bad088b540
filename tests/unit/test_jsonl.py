"""Task files: a UTF-8 byte-order mark is accepted, undecodable bytes name their line in both
modes, a UTF-16 file is refused as a whole."""

import codecs

import pytest

from pipeline.data.jsonl import DataError, read_pairs

GOOD = b'{"src": "how do i", "trg": "what way"}\n'


def test_a_byte_order_mark_loses_no_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + GOOD + GOOD.rstrip())       # and no final newline
    for mode in ("error", "skip"):
        read = read_pairs(path, mode)
        assert read.line_numbers == [1, 2] and not read.skipped


def test_undecodable_bytes_name_the_file_and_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_bytes(GOOD + b'{"src": "caf\xe9", "trg": "x"}\r\n' + GOOD)
    with pytest.raises(DataError, match=r"test.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 13\)"):
        read_pairs(path)
    read = read_pairs(path, "skip")
    assert read.line_numbers == [1, 3] and read.skipped == [f"{path}:2: not valid UTF-8 (byte 0xe9 "
                                                            "at column 13)"]


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_a_utf16_file_is_refused_whole(tmp_path, mode):
    path = tmp_path / "valid.jsonl"
    path.write_bytes(GOOD.decode().encode("utf-16"))
    with pytest.raises(DataError, match="valid.jsonl: the file is UTF-16"):
        read_pairs(path, mode)
