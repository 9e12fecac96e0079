"""Reading a delimited text file the way a brand's exports really come: any encoding, a BOM,
CRLF, quoted fields with embedded newlines, stray quotes, huge fields.

    bytes --decode (configured encoding, or a BOM, or UTF-8, or the legacy code page
            charset-normalizer finds)--> text; undecodable bytes mark their line
          --physical lines (\\r\\n, \\n or \\r)--> records: a line, or the lines a quoted field spans
          --csv--> fields

A record is built from whole lines, so a malformed one costs that line only: a line whose quote
is never closed into a record of the right shape is set aside alone and reading goes on at the
next line (the parser resynchronises at the next record boundary instead of swallowing the rest
of the file into one field). Every record knows the physical line it starts on, which is what
the accounting check verifies against a count of line breaks that does not use this parser.
"""

from __future__ import annotations

import codecs
import csv
import re
import sys
from dataclasses import dataclass, field

# a record may span at most this many physical lines (a quoted address or note spans a few; a
# quote never closed would otherwise take the rest of the file)
MAX_RECORD_LINES = 100
# a field longer than this is set aside with its raw content (csv's own limit is 131,072)
MAX_FIELD_CHARS = 131_072
DELIMITERS = (",", ";", "\t", "|")
# the code point our decoder puts where bytes could not be decoded: a Unicode noncharacter, never
# in interchanged text
UNDECODABLE = "\ufdd0"
LINE_BREAK = re.compile(r"\r\n|\r|\n")
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# up to this share of lines with bytes that are not UTF-8, a file is UTF-8 with bad lines;
# above it, it is in a legacy code page
UTF8_BAD_LINE_SHARE = 0.01
# another code page is taken over cp1252 only when charset-normalizer finds it this much less chaotic
CODE_PAGE_MARGIN = 0.05

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # our own MAX_FIELD_CHARS decides, with a reason


class FileFormatError(ValueError):
    """The file cannot be read at all (an encoding that does not exist, no header)."""


@dataclass
class Decoded:
    text: str
    encoding: str
    how: str                                         # configured | byte order mark | utf-8 | detected
    bad_bytes: list[bytes] = field(default_factory=list)   # in file order, one per UNDECODABLE


def _mark_undecodable(bad: list[bytes]):
    def handler(err: UnicodeDecodeError):
        bad.append(err.object[err.start:err.end])
        return UNDECODABLE, err.end
    return handler


def _decode_marking(data: bytes, encoding: str) -> tuple[str, list[bytes]]:
    bad: list[bytes] = []
    name = f"cdp_mark_{id(bad)}"
    codecs.register_error(name, _mark_undecodable(bad))
    return data.decode(encoding, errors=name), bad


def decode(data: bytes, encoding: str | None = None) -> Decoded:
    """The file's text. Bytes the encoding cannot decode become UNDECODABLE (their line is set
    aside), never a silent replacement character."""
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise FileFormatError(f"encoding {encoding!r} is not a known text encoding") from None
        text, bad = _decode_marking(data, encoding)
        return Decoded(text.lstrip("\ufeff"), encoding, "configured", bad)
    for bom, name in BOMS:
        if data.startswith(bom):
            text, bad = _decode_marking(data, name)
            return Decoded(text.lstrip("\ufeff"), name, "byte order mark", bad)
    text, bad = _decode_marking(data, "utf-8")
    if not bad:
        return Decoded(text, "utf-8", "utf-8")
    lines = max(1, len(LINE_BREAK.findall(text)) + 1)
    bad_lines = sum(1 for line in LINE_BREAK.split(text) if UNDECODABLE in line)
    if bad_lines / lines <= UTF8_BAD_LINE_SHARE:
        return Decoded(text, "utf-8", "utf-8 (a few lines hold other bytes)", bad)
    legacy = _legacy_code_page(data)
    text, bad = _decode_marking(data, legacy)
    return Decoded(text, legacy, "detected", bad)


def _legacy_code_page(data: bytes) -> str:
    """The single-byte code page of a file that is not UTF-8. cp1252 (Excel's on Windows in the
    Americas and Western Europe; a superset of latin-1's letters) when it decodes the bytes and
    charset-normalizer finds no code page clearly more plausible (on a short Western text several
    read equally well: é is 0xE9 in cp1252, cp1250, cp1257...); else charset-normalizer's best
    guess; else latin-1, which decodes every byte."""
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(data[:1_000_000]) if not m.encoding.startswith(("utf", "ascii"))]
    western = next((m for m in matches if "cp1252" in m.could_be_from_charset), None)
    if western is not None and (not matches or matches[0].chaos >= western.chaos - CODE_PAGE_MARGIN):
        return "cp1252"
    if matches:
        return matches[0].encoding
    try:
        data.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def read_header(data: bytes, encoding: str | None = None, delimiter: str | None = None) -> list[str]:
    """The column names of a file from its first bytes (the Spark driver reads no more)."""
    decoded = decode(data, encoding)
    lines = split_lines(decoded.text)
    if not lines or not lines[0].strip():
        raise FileFormatError("it is empty (no header row)" if not lines else "the first line (the header) is blank")
    return [h.strip() for h in _fields(lines[0], delimiter or sniff_delimiter(lines[0]))]


def physical_lines(text: str) -> int:
    """Lines of the text (a final line without a line break counts; a trailing break does not
    start another): the count the accounting check trusts, made without the CSV parser."""
    if not text:
        return 0
    breaks = text.count("\n") + text.count("\r") - text.count("\r\n")
    return breaks + (0 if text.endswith(("\n", "\r")) else 1)


def split_lines(text: str) -> list[str]:
    if not text:
        return []
    lines = LINE_BREAK.split(text)
    if lines and lines[-1] == "" and text:
        lines.pop()  # the break after the last line
    return lines


# ---- records ------------------------------------------------------------------------------------

@dataclass(slots=True)
class Record:
    line: int            # the physical line it starts on (1: the header)
    lines: int           # physical lines it spans
    text: str
    fields: list[str] | None = None
    problem: str | None = None


_QUOTE_OR_DELIM = {d: re.compile('["' + re.escape(d) + "]") for d in DELIMITERS}


def _inside_quotes_after(line: str, inside: bool, delimiter: str) -> bool:
    """Whether a line leaves a quoted field open, starting inside one or not (csv's reading: a
    quote opens a field only at its start, "" inside is a quote, a quote then text is text)."""
    if '"' not in line:
        return inside
    at_field_start = not inside
    after_quote = False
    pos = 0
    for m in _QUOTE_OR_DELIM[delimiter].finditer(line):
        between = m.start() > pos
        if between:  # ordinary characters before this quote or delimiter
            if after_quote:          # "ab"cd: the field was closed, the rest is text
                inside, after_quote = False, False
            at_field_start = False
        ch = m.group()
        if inside:
            if after_quote:
                if ch == '"':        # "" inside a quoted field
                    after_quote = False
                else:                # a closing quote, then the delimiter
                    inside, after_quote, at_field_start = False, False, True
            elif ch == '"':
                after_quote = True
        else:
            if ch == delimiter:
                at_field_start = True
            elif at_field_start:     # a quote opening the field
                inside, at_field_start = True, False
            else:                    # a quote in the middle of an unquoted field: text
                at_field_start = False
        pos = m.end()
    if after_quote:
        inside = False               # the field closed at the end of the line
    return inside


def _fields(text: str, delimiter: str) -> list[str]:
    return next(csv.reader([text], delimiter=delimiter), [])


def sniff_delimiter(header: str) -> str:
    """The delimiter of a header line: the most frequent of , ; tab | (comma when none)."""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def records(lines: list[str], width: int, delimiter: str, first_line: int = 2) -> list[Record]:
    """The records of the data lines (lines[0] is physical line `first_line`): each a whole line,
    or the lines a quoted field spans when that gives a record of `width` fields. A line that
    opens a quote it never closes into such a record is a record of its own with a problem, and
    reading resumes at the line after it."""
    out: list[Record] = []
    single: list[int] = []   # records of one line: parsed together in one csv pass below
    i = 0
    while i < len(lines):
        line = lines[i]
        number = first_line + i
        if UNDECODABLE in line:
            out.append(Record(number, 1, line, problem="undecodable bytes"))
            i += 1
            continue
        if '"' not in line or not _inside_quotes_after(line, False, delimiter):
            single.append(len(out))
            out.append(Record(number, 1, line))
            i += 1
            continue
        # a quoted field spans lines: take them while it stays open (a few, never a whole file)
        j, inside = i, True
        while inside and j + 1 < len(lines) and j + 1 - i < MAX_RECORD_LINES and UNDECODABLE not in lines[j + 1]:
            j += 1
            inside = _inside_quotes_after(lines[j], True, delimiter)
        text = "\n".join(lines[i:j + 1])
        fields = None if inside else _fields(text, delimiter)
        if fields is not None and len(fields) == width:
            out.append(Record(number, j - i + 1, text, fields))
            i = j + 1
        else:
            out.append(Record(number, 1, line, problem="a quote that is never closed"))
            i += 1
    # each item is a whole record without an open quote: csv yields exactly one row per item
    for k, fields in zip(single, csv.reader([out[k].text for k in single], delimiter=delimiter)):
        out[k].fields = fields
    return out


@dataclass
class ParsedFile:
    header: list[str]
    delimiter: str
    encoding: str
    how: str
    records: list[Record]
    physical_lines: int


def parse(data: bytes, encoding: str | None = None, delimiter: str | None = None) -> ParsedFile:
    """A delimited file's header and records. Raises FileFormatError when there is no header."""
    decoded = decode(data, encoding)
    lines = split_lines(decoded.text)
    if not lines:
        raise FileFormatError("it is empty (no header row)")
    if not lines[0].strip():
        raise FileFormatError("the first line (the header) is blank")
    if UNDECODABLE in lines[0]:
        raise FileFormatError(f"its header holds bytes that are not {decoded.encoding}; set the source's "
                              "`encoding:`")
    delimiter = delimiter or sniff_delimiter(lines[0])
    header = [h.strip() for h in _fields(lines[0], delimiter)]
    if not any(header):
        raise FileFormatError("the first line (the header) has no column names")
    out = records(lines[1:], len(header), delimiter)
    _restore_bad_bytes(out, decoded.bad_bytes)
    return ParsedFile(header, delimiter, decoded.encoding, decoded.how, out, physical_lines(decoded.text))


def _restore_bad_bytes(recs: list[Record], bad: list[bytes]) -> None:
    """Show the undecodable bytes of the set-aside lines as \\xNN escapes (raw content kept)."""
    if not bad:
        return
    queue = iter(bad)
    for r in recs:
        if UNDECODABLE in r.text:
            parts = r.text.split(UNDECODABLE)
            r.text = parts[0] + "".join("".join(f"\\x{b:02x}" for b in next(queue, b"")) + p for p in parts[1:])
