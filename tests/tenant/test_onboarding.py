"""`cdp init`: a starting tenant config from data files (cdp/onboarding/)."""

from __future__ import annotations

import csv

import pandas as pd
import pytest
import yaml

from cdp.cli import main
from cdp.config import load_config
from cdp.onboarding import InitError, name_scores, read_sample

GIVEN = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Susan",
         "William", "Karen", "Richard", "Nancy", "Joseph", "Lisa", "Thomas", "Betty", "Charles", "Sandra"]
FAMILY = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
          "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee"]
VORNAMEN = ["Lukas", "Anna", "Leon", "Marie", "Finn", "Sophie", "Jonas", "Emma", "Paul", "Mia", "Felix", "Hannah",
            "Max", "Lena", "Noah", "Lea", "Elias", "Laura", "Ben", "Julia"]
NACHNAMEN = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
             "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
             "Schwarz", "Zimmermann"]
LAENDER = ["Bayern", "Berlin", "Hessen", "Sachsen", "Hamburg", "Bremen", "Niedersachsen", "Thüringen"]
STREETS = ["Oak Street", "Maple Avenue", "Pine Road", "Cedar Lane", "Elm Drive"]
N = 40


def write_csv(path, header, rows, encoding="utf-8", delimiter=","):
    with open(path, "w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def data(tmp_path):
    """A US customers file with odd column names (one misleading), a German customers file
    (semicolons, umlauts) and an orders file referring to the first by its keys."""
    d = tmp_path / "data"
    d.mkdir()
    customers = [[f"C{1000 + i}", GIVEN[i % 20], FAMILY[(i * 7) % 20],
                  f"{GIVEN[i % 20].lower()}.{FAMILY[(i * 7) % 20].lower()}{i}@example.org",
                  f"+1 212-555-{1000 + i:04d}" if i % 5 else f"+1 (415) 555-{2000 + i:04d}",
                  f"{(i % 12) + 1:02d}/{(i % 27) + 1:02d}/{1950 + i}", f"{10001 + i * 37:05d}",
                  f"{100 + i} {STREETS[i % 5]}", "call after 5" if i % 3 == 0 else ""]
                 for i in range(N)]
    write_csv(d / "customers.csv",
              ["CustRef", "FirstName", "fam_name", "contact", "Email", "col6", "ZIP", "Address1", "notes"],
              customers)
    kunden = [[f"K-{5000 + i}", VORNAMEN[i % 20], NACHNAMEN[(i * 3) % 20], f"{VORNAMEN[i % 20].lower()}{i}@web.de",
               f"030 {2345000 + i * 17}", f"Hauptstraße {i + 1}", f"{10115 + i * 101:05d}", "Berlin",
               f"{(i % 27) + 1:02d}.{(i % 12) + 1:02d}.{1960 + i}", LAENDER[i % 8]]
              for i in range(N)]
    write_csv(d / "Kunden_2024.csv", ["Kundennummer", "Vorname", "Nachname", "E-Mail", "Telefon", "Straße",
                                      "PLZ", "Ort", "Geburtsdatum", "Bundesland"], kunden, delimiter=";")
    orders = [[f"ORD{90000 + i}", f"C{1000 + (i * 3) % N}", f"2024-0{1 + i % 9}-1{i % 10} 1{i % 10}:30:00",
               f"{12.5 + i * 3.25:.2f}"] for i in range(2 * N)]
    write_csv(d / "orders.csv", ["order_no", "cust", "ts", "total"], orders)
    return d


def run_init(tmp_path, data, *extra):
    out = tmp_path / "tenant.yaml"
    files = [str(data / f) for f in ("customers.csv", "Kunden_2024.csv", "orders.csv")]
    return main(["init", *files, "--out", str(out), *extra]), out


def columns_of(text: str, source: str) -> dict[str, str]:
    return yaml.safe_load(text)["sources"][source]["columns"]


def test_init_writes_a_config_that_loads_with_the_expected_tags(tmp_path, data, capsys):
    rc, out = run_init(tmp_path, data)
    assert rc == 0, capsys.readouterr().err
    text = out.read_text()
    cfg = load_config(out)
    assert main(["check-config", str(out)]) == 0
    assert set(cfg.sources) == {"customers", "kunden_2024", "orders"}
    assert {n: s.kind.value for n, s in cfg.sources.items()} == {
        "customers": "customers", "kunden_2024": "customers", "orders": "transactions"}
    assert cfg.sources["customers"].path == "data/customers.csv"  # relative to the config
    cust = columns_of(text, "customers")
    # odd names, and values that tag what the names do not (contact, col6) or override them (Email)
    assert cust == {"CustRef": "pk", "FirstName": "given-name", "fam_name": "surname", "contact": "email",
                    "Email": "phone", "col6": "birthdate", "ZIP": "postal", "Address1": "address"}
    assert columns_of(text, "kunden_2024") == {
        "Kundennummer": "pk", "Vorname": "given-name", "Nachname": "surname", "E-Mail": "email",
        "Telefon": "phone", "Straße": "address", "PLZ": "postal", "Ort": "city", "Geburtsdatum": "birthdate",
        "Bundesland": "state"}
    assert cfg.country == "US" and cfg.sources["kunden_2024"].country == "DE"
    assert cfg.sources["customers"].country is None
    # the orders refer to the customers by their keys
    assert columns_of(text, "orders") == {"order_no": "order-id", "cust": "customer-pk", "ts": "order-datetime",
                                          "total": "order-revenue"}
    assert cfg.sources["orders"].customer_source == "customers"
    # what it is unsure of carries a comment with the alternatives; untagged columns are listed
    email_line = next(line for line in text.splitlines() if line.strip().startswith("Email:"))
    assert "# unsure: phone" in email_line and "email (" in email_line
    assert "# not tagged: notes" in text
    # the German file's delimiter is written for `cdp run` (and said, as detected, like its encoding)
    assert cfg.sources["kunden_2024"].delimiter == ";" and cfg.sources["customers"].delimiter is None


def test_init_refuses_to_overwrite_without_force(tmp_path, data, capsys):
    rc, out = run_init(tmp_path, data)
    assert rc == 0
    out.write_text("# mine\n")
    rc, _ = run_init(tmp_path, data)
    err = capsys.readouterr().err
    assert rc == 2 and "already exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "# mine\n"
    rc, _ = run_init(tmp_path, data, "--force", "--tenant", "acme", "--country", "de")
    assert rc == 0
    cfg = load_config(out)
    assert cfg.tenant == "acme" and cfg.country == "DE"
    assert cfg.sources["customers"].country == "US"  # the US file (+1 phones) keeps its own
    assert cfg.sources["kunden_2024"].country is None  # the tenant's now


def test_latin1_and_bom_files_are_read(tmp_path):
    latin = write_csv(tmp_path / "latin.csv", ["Kundennummer", "Straße", "Nachname"],
                      [[f"K{i}", f"Schloßallee {i}", n] for i, n in enumerate(NACHNAMEN)], encoding="latin-1")
    s = read_sample(latin)
    # read as `cdp run` reads it (source_files): Windows-1252, latin-1's superset for letters
    assert s.encoding == "cp1252" and s.columns == ["Kundennummer", "Straße", "Nachname"]
    assert s.rows["Nachname"].tolist()[:3] == ["Müller", "Schmidt", "Schneider"]
    bom = write_csv(tmp_path / "bom.csv", ["CustomerID", "Prénom", "Email"],
                    [[f"{i}", "Zoé", f"z{i}@example.fr"] for i in range(5)], encoding="utf-8-sig")
    s = read_sample(bom)
    assert s.encoding == "utf-8-sig" and s.columns[0] == "CustomerID" and s.rows["Prénom"][0] == "Zoé"
    assert name_scores("Prénom")[0].get("given-name") == 1.0


def test_parquet_files_are_read(tmp_path):
    path = tmp_path / "members.parquet"
    pd.DataFrame({"member_id": [f"M{i}" for i in range(10)], "email": [f"m{i}@x.com" for i in range(10)],
                  "joined": pd.date_range("2024-01-01", periods=10)}).to_parquet(path)
    s = read_sample(path)
    assert s.format == "parquet" and s.rows["joined"][0] == "2024-01-01 00:00:00"


@pytest.mark.parametrize("content, says", [
    (b"", "is empty"),
    (b"   \n\n", "is empty"),
    (b"1,2024-01-01,a@b.com\n2,2024-01-02,c@d.com\n", "has no header row"),
    (b"\x00\x01\x02binary\x00", "not a text file"),
])
def test_unreadable_files_give_one_line_naming_the_file(tmp_path, capsys, content, says):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    rc = main(["init", str(bad), "--out", str(tmp_path / "t.yaml")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and says in err and str(bad) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t.yaml").exists()
    with pytest.raises(InitError):
        read_sample(bad)


def test_names_of_several_languages():
    for name, tag in [("FirstName", "given-name"), ("first_name", "given-name"), ("given", "given-name"),
                      ("Vorname", "given-name"), ("prénom", "given-name"), ("zip", "postal"),
                      ("postcode", "postal"), ("PLZ", "postal"), ("email_address", "email"), ("dob", "birthdate"),
                      ("date_of_birth", "birthdate"), ("Geburtsdatum", "birthdate"),
                      ("customer_email", "email"), ("mailing_address_city", "city")]:
        scores, meaningless = name_scores(name)
        assert not meaningless and max(scores, key=lambda t: scores[t] if t else 0) == tag, name
    assert name_scores("employer_city")[0]["city"] < 0.5  # someone else's city
    assert name_scores("col1")[1] and name_scores("field_7")[1]


def test_values_tag_meaningless_names_and_odd_headers_stay_valid_yaml(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    rows = [[f"{700000 + i * 13}", f"{GIVEN[i % 20].lower()}{i}@mail.com", f"(212) 555-{3000 + i:04d}",
             f"19{50 + i % 40}-0{1 + i % 9}-1{i % 10}", "yes" if i % 2 else "no", f"x{i % 3}"] for i in range(N)]
    write_csv(d / "export.csv", ["col1", "no", "a: b", "x", "on", "field_7"], rows)
    write_csv(d / "flags.csv", ["flag", "colour"], [["y" if i % 2 else "n", "red"] for i in range(N)])
    out = tmp_path / "cfg" / "t.yaml"
    assert main(["init", str(d / "export.csv"), str(d / "flags.csv"), "--out", str(out)]) == 0
    text = out.read_text()
    cfg = load_config(out)
    assert cfg.sources["export"].path == "../in/export.csv"
    # names YAML would misread (no, on: booleans; a: b) are quoted, and read back as written
    assert cfg.sources["export"].columns == {"col1": "pk", "no": "email", "a: b": "phone", "x": "birthdate"}
    assert '"no":' in text and '"a: b":' in text
    assert "# not tagged: on" in text and "field_7" in text
    # a file no column of which could be a key is left out, in a comment that says why
    assert "flags" not in cfg.sources and "../in/flags.csv is left out: no column of it could be its pk" in text
    assert "left out" in capsys.readouterr().out


def test_a_windows_export_without_meaningful_names_reads_and_tags(tmp_path, capsys):
    """cp1252, semicolons, German house numbers ('5/7'), a salutation column, names Feld1..:
    the config says the encoding and delimiter, tags by values (the city beside the postcode)
    and leaves the salutation untagged (the standardiser keeps no 'Herr'/'Frau' as a gender)."""
    rows = [[f"KD-{10000 + i}", "Herr" if i % 2 else "Frau", VORNAMEN[i % 20], NACHNAMEN[(i * 3) % 20],
             f"{['Haupt', 'Garten', 'Schiller'][i % 3]}straße {i + 1}/{i % 4 + 1}", f"{10115 + i * 101:05d}",
             ["Köln", "München", "Düsseldorf", "Nürnberg", "Würzburg", "Lüneburg"][i % 6],
             f"0{30 + i % 60} {2345000 + i * 17}", f"{(i % 27) + 1:02d}.{(i % 12) + 1:02d}.{1960 + i}"]
            for i in range(N)]
    path = write_csv(tmp_path / "export.csv", [f"Feld{i}" for i in range(1, 10)], rows, encoding="cp1252",
                     delimiter=";")
    out = tmp_path / "t.yaml"
    assert main(["init", str(path), "--out", str(out)]) == 0
    cfg = load_config(out)
    src = cfg.sources["export"]
    assert src.encoding == "cp1252" and src.delimiter == ";"
    assert src.columns == {"Feld1": "pk", "Feld3": "given-name", "Feld4": "surname", "Feld5": "address",
                           "Feld6": "postal", "Feld7": "city", "Feld8": "phone", "Feld9": "birthdate"}
    assert "unsure" in next(x for x in out.read_text().splitlines() if "Feld7:" in x)
    assert main(["check-config", str(out)]) == 0
    assert "1 customers" in capsys.readouterr().out


def test_a_file_without_a_header_is_named_even_when_its_first_line_has_words(tmp_path, capsys):
    rows = [[f"KD-{i}", VORNAMEN[i % 20], NACHNAMEN[i % 20], f"{(i % 27) + 1:02d}.01.1970", f"{10 + i},50", ""]
            for i in range(N)]
    path = tmp_path / "noheader.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter=";").writerows(rows)
    assert main(["init", str(path), "--out", str(tmp_path / "t.yaml")]) == 2
    assert "has no header row" in capsys.readouterr().err
    # a header of words over such rows is one
    write_csv(tmp_path / "ok.csv", ["id", "vorname", "nachname", "geburtsdatum", "umsatz", "notiz"], rows)
    assert read_sample(tmp_path / "ok.csv").columns[0] == "id"
