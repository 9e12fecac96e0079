"""Stitch, step 2a: the model's design, chosen from the tenant's columns and what its data supports.

A tenant brings some set of profile tags - names and birth dates only, names and addresses,
email-only sign-ups, with or without phones and identifiers. Nothing here assumes any of them.
Read off the preprocessed records (counts, never rows in Python):

* evidence: a match column is used when at least MIN_SHARE of the records carry it;
* blocking rules: every rule whose columns are present, from the strict (an identifier, an
  email) to the broad (one birth date, one postal code); a rule is kept for prediction only when
  the pairs of the rules kept so far and its own stay within `stitch.max_pairs_per_record` per
  record (and each rule's own pairs too; the sum may always reach MIN_PAIR_BUDGET) - a broad
  rule helps small data and is left out where it would compare too many pairs. The budget is on
  the sum: a rule on common values (one name, a name and a postal code) yields
  pairs that grow with the square of the records, so a budget per rule let the kept rules
  together compare ~35 pairs per record at 10M records against ~13 at 1M;
* the prior (lambda): estimated from the near-deterministic rules the tenant's columns allow;
* EM sessions: blocked on columns the data has, each with enough pairs to learn from, so that
  every comparison is estimated in some session that does not block on it;
* households: whether records that share a contact value under conflicting given names are
  mostly born years apart (members of one family, see `household_evidence`), which turns on the
  household protections (`stitch.households: auto`).

The design is saved with the model, so a run scores with exactly what it was trained with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cdp.config import TenantConfig

# a column carried by fewer records than this share is not evidence worth a comparison
MIN_SHARE = 0.01
# the blocking rules together may always yield this many candidate pairs (a second or two of
# scoring): the budget keeps scoring linear in large data, it does not take rules from small data
MIN_PAIR_BUDGET = 1_000_000
# an EM session needs this many candidate pairs to learn m from (fewer: skipped, with the count)
MIN_EM_PAIRS = 50
# ... and is left out above this many (EM iterates over every pair; the broadest rule suffices)
MAX_EM_PAIRS = 20_000_000
# households are judged from at least this many pairs that share a contact value under
# conflicting given names, both with a birth date; fewer: no evidence of households
MIN_HOUSEHOLD_PAIRS = 20
# ... and shown when more than this share of those pairs are born over a year apart
HOUSEHOLD_SHARE = 0.5

NAMES = ("given_name", "surname")
CONTACT_FIELDS = ("email", "phone", "address")



def given_names_conflict(l_given: str, r_given: str, l_alias: str, r_alias: str) -> str:
    """SQL: two given names that are different names - not equal, not the same formal name, not
    one typo apart, not similar (the given-name comparison's 'else' level)."""
    return (f"{l_given} <> {r_given} and coalesce({l_alias} <> {r_alias}, true) "
            f"and damerau_levenshtein({l_given}, {r_given}) > 1 "
            f"and jaro_winkler_similarity({l_given}, {r_given}) < 0.88")


@dataclass(frozen=True)
class Rule:
    """A blocking rule: its name (the columns), Splink SQL, and the pairs it yields here."""
    name: str
    sql: str
    pairs: int | None = None


@dataclass
class Design:
    records: int
    columns: dict[str, int]                      # match column -> records carrying it (used ones)
    identifiers: list[str]                        # identifier columns in use (loyalty_id, national_id...)
    blocking_rules: list[Rule]
    rules_left_out: list[dict]                    # rule name, pairs, why
    lambda_rules: list[Rule]
    em_sessions: list[Rule]
    em_left_out: list[dict]
    households: dict                              # on, setting, reason, figures
    deterministic_rules: list[list[str]]
    deterministic_left_out: list[list[str]] = field(default_factory=list)

    @property
    def tenant_identifiers(self) -> list[str]:
        """The identifier columns beyond loyalty_id (preprocess.match_columns' argument)."""
        return [c for c in self.identifiers if c != "loyalty_id"]

    def has(self, *columns: str) -> bool:
        return all(c in self.columns for c in columns)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Design":
        d = dict(d)
        for key in ("blocking_rules", "lambda_rules", "em_sessions"):
            d[key] = [Rule(**r) for r in d[key]]
        return cls(**d)

    def summary(self) -> dict:
        """What the asset's metadata shows: the choices and why."""
        return {
            "records": self.records,
            "evidence": self.columns,
            "blocking_rules": {r.name: r.pairs for r in self.blocking_rules},
            "blocking_rules_left_out": self.rules_left_out,
            "prior_rules": [r.name for r in self.lambda_rules],
            "em_sessions": {r.name: r.pairs for r in self.em_sessions},
            "em_sessions_left_out": self.em_left_out,
            "households": self.households,
            "deterministic_rules": [" + ".join(r) for r in self.deterministic_rules],
            "deterministic_rules_left_out": [" + ".join(r) for r in self.deterministic_left_out],
        }


# ---- reading the data ---------------------------------------------------------------------------

def carried(con, table: str, columns: list[str]) -> dict[str, int]:
    """Records carrying a value, per column (one scan)."""
    row = con.execute(f"select {', '.join(f'count({c})' for c in columns)} from {table}").fetchall()[0]
    return dict(zip(columns, (int(v) for v in row)))


def pairs_sharing(con, table: str, columns: tuple[str, ...]) -> int:
    """Candidate pairs of an equi-join blocking rule on these columns: sum of n(n-1)/2 over the
    groups of records equal (and not null) on all of them."""
    present = " and ".join(f"{c} is not null" for c in columns)
    keys = ", ".join(columns)
    return int(con.execute(f"""select coalesce(sum(n * (n - 1) / 2), 0)::bigint from
                               (select count(*) as n from {table} where {present} group by {keys})""").fetchall()[0][0])


def swapped_pairs(con, table: str) -> int:
    """Pairs whose given name and surname are each other's (l.given = r.surname, l.surname = r.given)."""
    return int(con.execute(f"""
        with n as (select given_name g, surname s, count(*) c from {table}
                   where given_name is not null and surname is not null and given_name <> surname group by 1, 2)
        select coalesce(sum(a.c * b.c), 0)::bigint / 2 from n a join n b on a.g = b.s and a.s = b.g""").fetchall()[0][0])


def household_evidence(con, table: str, has_birthdate: bool, contact: list[str]) -> dict:
    """Pairs of records that share an email, phone or street address (with postal code) under
    conflicting given names, both with a birth date, and how many of them are born more than a
    year apart. One person whose given name was changed or mistyped keeps the birth date (up to
    a typo); two members of one household do not. Values carried by more than 20 records are
    left out (the blocklist's business)."""
    if not has_birthdate or not contact:
        return {"pairs_with_conflicting_given_names": 0, "born_over_a_year_apart": 0}
    key_sql = {"email": "email", "phone": "phone", "address": "address || '|' || coalesce(postal, '')"}
    keyed = " union all ".join(
        f"select unique_id, given_name, given_name_alias, birthdate, '{c}:' || {key_sql[c]} as k "
        f"from {table} where {c} is not null and given_name is not null and birthdate is not null"
        for c in contact)
    conflict = given_names_conflict("l.given_name", "r.given_name", "l.given_name_alias", "r.given_name_alias")
    pairs, apart = con.execute(f"""
        with keyed as (select * from ({keyed}) qualify count(*) over (partition by k) <= 20),
        shared as (
            select distinct l.unique_id as a, r.unique_id as b, l.birthdate as bl, r.birthdate as br
            from keyed l join keyed r on l.k = r.k and l.unique_id < r.unique_id
            where {conflict})
        select count(*), count(*) filter (where abs(datediff('day', bl, br)) > 366) from shared""").fetchall()[0]
    return {"pairs_with_conflicting_given_names": int(pairs), "born_over_a_year_apart": int(apart)}


# ---- choosing -----------------------------------------------------------------------------------

def _candidate_blocking_rules(d: set[str], identifiers: list[str]) -> list[tuple[str, str | None, tuple]]:
    """(name, custom SQL or None for an equi-join, columns) of every rule the columns allow, strict
    first. The broad single-column rules come last: they are the ones the pair budget drops."""
    out: list[tuple[str, str | None, tuple]] = []

    def eq(*cols):
        if all(c in d for c in cols):
            out.append((" + ".join(cols), None, cols))

    for c in (*identifiers, "email", "phone"):
        eq(c)
    eq("given_name", "surname")
    if {"given_name", "surname"} <= d:
        out.append(("given_name + surname swapped",
                    "l.given_name = r.surname and l.surname = r.given_name", ("given_name", "surname")))
    eq("surname", "birthdate")
    eq("given_name_alias", "birthdate")
    eq("surname", "postal")
    eq("given_name_alias", "postal")
    eq("address", "postal")
    eq("address", "city")
    eq("street_name", "postal")
    eq("birthdate", "postal")
    eq("birthdate", "city")
    for c in ("birthdate", "postal", "surname", "address", "city"):
        eq(c)
    return out


def _name_in_email_rules() -> list[Rule]:
    """Pairs in one postal code whose mailbox spells the other's name, for records without a
    full name: an equi-join on the spelled key and the postal code (both orientations: dedupe
    compares each pair once). Without the postal code a common name ('mary.poole') pairs every
    sign-up with every namesake in the country: at a million records that costs precision."""
    from cdp.stages.stitch.preprocess import INITIAL_KEYS, NAME_KEYS

    rules = []
    for key in (*NAME_KEYS, *INITIAL_KEYS):
        for a, b in (("l", "r"), ("r", "l")):
            rules.append(Rule(f"mailbox spells {key} ({a})",
                              f"{a}.email_letters = {b}.{key} and {a}.postal = {b}.postal "
                              f"and ({a}.given_name is null or {a}.surname is null)"))
    return rules


def _sql_of(cols: tuple) -> str:
    return " and ".join(f"l.{c} = r.{c}" for c in cols)


def choose_design(con, table: str, cfg: TenantConfig) -> Design:
    """The model's design for the records of `table` (the preprocessed records)."""
    from cdp.stages.stitch.preprocess import match_columns

    st = cfg.stitch
    identifiers = ["loyalty_id", *cfg.identifier_columns]
    candidates = [c for c in match_columns(cfg.identifier_columns)
                  if c in ("given_name", "given_name_alias", "surname", "email", "phone", "birthdate",
                           "address", "street_name", "address2", "postal", "city", "state", "gender", *identifiers)]
    records = int(con.execute(f"select count(*) from {table}").fetchall()[0][0])
    counts = carried(con, table, candidates)
    present = {c: n for c, n in counts.items() if records and n >= max(2, MIN_SHARE * records)}
    used_ids = [c for c in identifiers if c in present]
    names = set(present)

    budget = st.max_pairs_per_record * max(records, 1)
    total_budget = max(budget, MIN_PAIR_BUDGET)
    blocking, left_out, kept_pairs = [], [], 0
    for name, sql, cols in _candidate_blocking_rules(names, used_ids):
        pairs = swapped_pairs(con, table) if sql else pairs_sharing(con, table, cols)
        if pairs == 0:
            left_out.append({"rule": name, "pairs": 0, "why": "no two records share it"})
        elif pairs > budget:
            left_out.append({"rule": name, "pairs": pairs,
                             "why": f"over max_pairs_per_record ({st.max_pairs_per_record:g} x {records:,} records)"})
        elif kept_pairs + pairs > total_budget:
            left_out.append({"rule": name, "pairs": pairs,
                             "why": f"the rules kept before it yield {kept_pairs:,} pairs: together over "
                                    f"max_pairs_per_record ({st.max_pairs_per_record:g} x {records:,} records)"})
        else:
            blocking.append(Rule(name, sql or _sql_of(cols), pairs))
            kept_pairs += pairs
    if {"email", "given_name", "surname", "postal"} <= names:
        blocking += _name_in_email_rules()

    lambda_rules = _lambda_rules(con, table, names, used_ids)
    em, em_out = _em_sessions(con, table, names)
    households = _households(con, table, cfg, names)
    rules, rules_out = [], []
    for rule in st.deterministic_rules:
        (rules if all(c in names for c in rule) else rules_out).append(rule)
    return Design(records=records, columns=present, identifiers=used_ids, blocking_rules=blocking,
                  rules_left_out=left_out, lambda_rules=lambda_rules, em_sessions=em, em_left_out=em_out,
                  households=households, deterministic_rules=rules, deterministic_left_out=rules_out)


def _lambda_rules(con, table: str, names: set[str], identifiers: list[str]) -> list[Rule]:
    """Rules whose pairs are nearly all true matches, for the prior: an identifier; an email or
    phone with a name; the full name with the birth date (either way round)."""
    cands: list[tuple] = [(c,) for c in identifiers]
    cands += [("email", "given_name"), ("phone", "given_name"), ("given_name", "surname", "birthdate")]
    if "birthdate" not in names:
        cands += [("given_name", "surname", "postal")]
    rules = [Rule(" + ".join(c), _sql_of(c)) for c in cands if all(x in names for x in c)]
    if {"given_name", "surname", "birthdate"} <= names:
        rules.append(Rule("given_name + surname swapped + birthdate",
                          "l.given_name = r.surname and l.surname = r.given_name and l.birthdate = r.birthdate"))
    return rules


EM_CANDIDATES = (("given_name_alias", "surname"), ("birthdate",), ("postal",), ("email", "surname"),
                 ("email",), ("phone",), ("address",), ("surname",))
MAX_EM_SESSIONS = 4


def _em_sessions(con, table: str, names: set[str]) -> tuple[list[Rule], list[dict]]:
    """EM sessions: blocked on columns the data has, with enough pairs and not too many; at most
    MAX_EM_SESSIONS, preferring those that leave the most comparisons free to learn."""
    chosen, left_out = [], []
    for cols in EM_CANDIDATES:
        if not all(c in names for c in cols):
            continue
        name = " + ".join(cols)
        if len(chosen) >= MAX_EM_SESSIONS:
            left_out.append({"session": name, "why": f"{MAX_EM_SESSIONS} sessions already"})
            continue
        pairs = pairs_sharing(con, table, cols)
        if pairs < MIN_EM_PAIRS:
            left_out.append({"session": name, "pairs": pairs, "why": f"fewer than {MIN_EM_PAIRS} pairs to learn from"})
        elif pairs > MAX_EM_PAIRS:
            left_out.append({"session": name, "pairs": pairs, "why": f"more than {MAX_EM_PAIRS:,} pairs"})
        else:
            chosen.append(Rule(name, _sql_of(cols), pairs))
    return chosen, left_out


def _households(con, table: str, cfg: TenantConfig, names: set[str]) -> dict:
    setting = cfg.stitch.households
    if setting is not True and setting is not False:
        contact = [c for c in CONTACT_FIELDS if c in names]
        figures = household_evidence(con, table, "birthdate" in names and "given_name" in names, contact)
        pairs, apart = figures["pairs_with_conflicting_given_names"], figures["born_over_a_year_apart"]
        if pairs < MIN_HOUSEHOLD_PAIRS:
            on, why = False, (f"no evidence of households: {pairs} pairs share a contact value under "
                              f"conflicting given names with birth dates (fewer than {MIN_HOUSEHOLD_PAIRS})")
        else:
            on = apart / pairs > HOUSEHOLD_SHARE
            why = (f"{apart} of {pairs} pairs that share a contact value under conflicting given names "
                   f"are born over a year apart ({apart / pairs:.0%}): "
                   + ("family members, not one person renamed" if on else "mostly one person with a changed name"))
        return {"on": on, "setting": "auto", "why": why, **figures}
    return {"on": bool(setting), "setting": setting, "why": "set in stitch.households"}
