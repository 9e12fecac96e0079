"""Source files as brands export them: encodings, byte order marks, CRLF, stray quotes, quoted
line breaks, a 1 MB field. Every row is loaded or quarantined with its reason and raw content,
a malformed line costs that line only, and the accounting check counts the file's lines without
the parser that loaded them (so it fails when rows are lost)."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest
import yaml
from dagster_duckdb import DuckDBResource

from cdp.stages.sources import files as sf
from cdp.config import ConfigError, load_config
from cdp.stages import sources
from cdp.stages.sources.assets import SourceFileError, build_domain_table

HEADER = "id,first,last,email,city"
PEOPLE = [("1", "José", "Müller", "jose@example.com", "Málaga"), ("2", "Zoë", "Ñúñez", "zoe@example.com", "Köln"),
          ("3", "François", "Çelik", "fc@example.com", "Zürich")]


def lines(rows=PEOPLE, header=HEADER):
    return [header, *(",".join(r) for r in rows)]


def tenant(tmp_path, data: bytes, **source) -> tuple:
    (tmp_path / "people.csv").write_bytes(data)
    doc = {"tenant": "t", "sources": {"people": {
        "path": "people.csv", "kind": "customers",
        "columns": {"id": "pk", "first": "given-name", "last": "surname", "email": "email", "city": "city"},
        **source}}}
    (tmp_path / "tenant.yaml").write_text(yaml.safe_dump(doc))
    cfg = load_config(tmp_path / "tenant.yaml")
    return cfg, cfg.sources["people"], tmp_path / "people.csv"


def load(tmp_path, data: bytes, **source):
    cfg, source, path = tenant(tmp_path, data, **source)
    domain, batch, read = build_domain_table("people", source, path)
    return domain, batch


@pytest.mark.parametrize("encoding,bom", [("latin-1", b""), ("cp1252", b""), ("utf-8", b"\xef\xbb\xbf"),
                                          ("utf-16", b""), ("utf-8", b"")])
def test_every_encoding_keeps_its_accents(tmp_path, encoding, bom):
    """Detected: a BOM (Excel's 'CSV UTF-8', UTF-16), else UTF-8, else the legacy code page."""
    text = "\r\n".join(lines()) + "\r\n"  # CRLF, as Excel writes
    domain, batch = load(tmp_path, bom + text.encode(encoding))
    assert list(domain["given_name"]) == ["José", "Zoë", "François"]
    assert list(domain["surname"]) == ["Müller", "Ñúñez", "Çelik"]
    assert list(domain["pk"]) == ["1", "2", "3"] and not batch.rejects
    assert batch.read_as["encoding"] in ({"latin-1": ("cp1252",), "cp1252": ("cp1252",),
                                          "utf-16": ("utf-16",)}.get(encoding) or ("utf-8", "utf-8-sig"))


def test_a_configured_encoding_is_used_and_a_wrong_one_named(tmp_path):
    domain, batch = load(tmp_path, "\n".join(lines()).encode("cp1252"), encoding="cp1252")
    assert batch.read_as == {"encoding": "cp1252", "encoding_from": "configured", "delimiter": ",", "physical_lines": 4}
    with pytest.raises(ConfigError, match=r"sources.people.encoding: 'klingon' is not a text encoding"):
        tenant(tmp_path, b"id\n", encoding="klingon")


def test_bytes_that_are_not_utf8_quarantine_their_line_with_the_raw_bytes(tmp_path):
    """A UTF-8 file with one line written in cp1252: that line is set aside (never 'Jos\\ufffd'),
    its bytes shown as \\xNN, the others load."""
    good = [f"{i},Ann,Lee,a{i}@example.com,Leeds" for i in range(4, 200)]
    data = ("\n".join([*lines(), *good]) + "\n").encode("utf-8")
    data += "999,Renée,Dubois,r@example.com,Nîmes\n".encode("cp1252")
    domain, batch = load(tmp_path, data)
    assert len(domain) == 3 + len(good)
    assert "\ufffd" not in "".join(domain["given_name"].dropna())
    [reject] = batch.rejects
    assert reject["reason"].startswith("undecodable bytes: not utf-8")
    assert json.loads(reject["raw_row"])["line"] == "999,Ren\\xe9e,Dubois,r@example.com,N\\xeemes"
    assert reject["source_row"] == 4 + len(good) + 1


def test_a_stray_quote_costs_its_own_line_only(tmp_path):
    """One unterminated quote used to swallow the 41 rows after it into one quarantine row."""
    rows = [f"{i},Ann{i},Lee,a{i}@example.com,Leeds" for i in range(10, 52)]
    rows[0] = '10,"Ann,Lee,a10@example.com,Leeds'
    domain, batch = load(tmp_path, "\n".join([HEADER, *rows]).encode())
    assert len(domain) == 41
    [reject] = batch.rejects
    assert reject["reason"] == "unreadable CSV line: a quote that is never closed"
    assert reject["source_row"] == 2 and json.loads(reject["raw_row"])["line"] == rows[0]


def test_quoted_line_breaks_are_one_record_and_numbered_by_their_first_line(tmp_path):
    data = (f'{HEADER}\n1,"Ann\nMarie",Lee,a@example.com,"Leeds\r\nWest"\n2,Bob,Ray,b@example.com,York\n'
            '3,Cy,"5"" tall",c@example.com,Hull\n').encode()
    domain, batch = load(tmp_path, data)
    assert list(domain["pk"]) == ["1", "2", "3"] and not batch.rejects
    assert list(domain["source_row"]) == [2, 5, 6] and list(domain["source_lines"]) == [3, 1, 1]
    assert sf.parse(data).records[2].fields[2] == '5" tall'  # a doubled quote is a quote


def test_a_huge_field_is_quarantined_with_its_raw_content(tmp_path):
    huge = "x" * 1_048_576
    data = "\n".join([HEADER, f"1,Ann,Lee,a@example.com,{huge}", "2,Bob,Ray,b@example.com,York"]).encode()
    domain, batch = load(tmp_path, data)
    assert list(domain["pk"]) == ["2"]
    [reject] = batch.rejects
    assert reject["reason"] == "a field of 1,048,576 characters (over 131,072)"
    assert json.loads(reject["raw_row"])["line"].endswith(huge)


def test_semicolons_are_sniffed_and_a_header_error_is_one_line(tmp_path):
    domain, _ = load(tmp_path, "id;first;last;email;city\n1;Jürgen;Groß;j@example.de;Köln\n".encode("cp1252"))
    assert list(domain["given_name"]) == ["Jürgen"]
    for data, why in ((b"", "it is empty"), (b"\n1,2\n", "the header\\) is blank"),
                      (b"id,id,first,last,email,city\n", r"the header names \['id'\] more than once")):
        with pytest.raises(SourceFileError, match=f"source 'people': .*{why}"):
            load(tmp_path, data)


def test_physical_lines_count_every_kind_of_line_break():
    assert sf.physical_lines("a\r\nb\nc\rd") == 4
    assert sf.physical_lines("a\nb\n") == 2 and sf.physical_lines("") == 0 and sf.physical_lines("h") == 1


# ---- the accounting check, through Dagster ------------------------------------------------------

def test_the_accounting_check_counts_lines_itself_and_fails_when_rows_are_lost(tmp_path):
    rows = [f"{i},Ann{i},Lee,a{i}@example.com,Leeds" for i in range(1, 30)]
    rows[3] = '4,"Ann\nMarie",Lee,a4@example.com,Leeds'           # two lines, one record
    rows[7] = '8,"Stray,Lee,a8@example.com,Leeds'                 # a quote never closed
    rows[9] = "10,too,many,fields,here,extra"
    data = ("\r\n".join([HEADER, *rows, "", "30,Zed,Lee,z@example.com,Leeds"]) + "\r\n").encode("cp1252")
    cfg, source, path = tenant(tmp_path, data)
    stage = sources.definitions(cfg)
    assets, checks = list(stage.assets), list(stage.asset_checks)
    warehouse = tmp_path / "wh.duckdb"
    resources = {"warehouse": DuckDBResource(database=str(warehouse))}
    result = dg.materialize([*assets, *checks], resources=resources)
    [check] = result.get_asset_check_evaluations()
    meta = {k: v.value for k, v in check.metadata.items()}
    assert check.passed, meta
    assert meta["lines_in_file"] == 32 and meta["records_over_several_lines"] == 1
    assert meta["rows_loaded"] + meta["rows_quarantined"] == 31   # 32 lines, one record on two
    with duckdb.connect(str(warehouse)) as con:
        reasons = dict(con.execute("select source_row, reason from domain.quarantine").fetchall())
        # lines: the header is 1, record 4 takes two lines, so record 8 starts on line 10
        assert reasons == {10: "unreadable CSV line: a quote that is never closed",
                           12: "expected 5 fields, found 6", 32: "blank line"}
        con.execute("delete from domain.people where pk = '20'")      # a row lost after loading
    lost = dg.materialize(checks, resources=resources, selection=dg.AssetSelection.checks(*checks))
    [check] = lost.get_asset_check_evaluations()
    assert not check.passed
    assert "1 rows do not end where the next begins" in check.metadata["problems"].value[0]
