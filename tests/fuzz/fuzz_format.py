"""Coverage-guided fuzzing of the .dcz reader with atheris (optional; not collected by pytest).

    pip install atheris
    PYTHONPATH=src python tests/fuzz/fuzz_format.py -max_total_time=60 [CORPUS_DIR]

Any exception other than FormatError, or a FormatError from the reader's last-resort net ("uncaught"),
is a finding. Inputs are decoded both with and without CRC checks so mutations reach the stream decoders.
"""

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from deepcompress.format import FormatError, decode, size_breakdown

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_format_fuzz import small_file  # noqa: E402  (the seeds: fc + conv layers, Huffman and fixed width)


def test_one_input(data: bytes) -> None:
    for parse in (decode, lambda b: decode(b, verify_crc=False), size_breakdown):
        try:
            parse(data)
        except FormatError as err:
            if "uncaught" in str(err):
                raise


def main() -> None:
    args = list(sys.argv)
    if all(a.startswith("-") for a in args[1:]):  # no corpus folder given: start from the seed file
        corpus = Path(tempfile.mkdtemp(prefix="dcz-fuzz-"))
        (corpus / "seed.dcz").write_bytes(small_file())  # version 1, float32 values
        (corpus / "seed-f16.dcz").write_bytes(small_file("f16"))  # version 2, float16 values
        args.append(str(corpus))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
