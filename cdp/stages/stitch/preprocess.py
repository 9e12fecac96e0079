"""Stitch, step 1: what the matcher sees.

Customer records of every source are unioned; junk values (configured, or carried by too many
different people) are listed in the blocklist and removed; names are lowercased and aliased
through a nickname table so 'Bob' meets 'Robert'. All of it runs as SQL inside the warehouse;
only the handful of values that look shared by several people come to Python, to count the
people behind their given names with spelling variants folded.
"""

import difflib

import pandas as pd

from cdp.stages.sources import standardize as std
from cdp.config import TenantConfig

# How people spell their own full name in a mailbox (letters only), from the given name as
# written and from its formal alias ('maggie fleming' writes margaret.fleming@...).
NAME_KEYS = {
    "name_key_full": "g || s",              # mary.poole, mary_poole47, marypoole
    "name_key_reversed": "s || g",          # poole.mary
    "name_key_alias_full": "a || s",
    "name_key_alias_reversed": "s || a",
}
# ... and with an initial. 'mpoole' fits Mary and Michael Poole of one household alike, so a
# record carries such a key only where it fits a single person (given name alias + surname) in
# its postal code; where two people share it, the mailbox is evidence for neither.
INITIAL_KEYS = {
    "name_key_initial_surname": "left(g, 1) || s",   # mpoole, m.poole
    "name_key_given_initial": "g || left(s, 1)",     # maryp
    "name_key_alias_initial_surname": "left(a, 1) || s",
    "name_key_alias_given_initial": "a || left(s, 1)",
}

MATCH_COLUMNS = ["given_name", "given_name_alias", "surname", "email", "email_user", "email_letters",
                 "mailbox_is_name", "phone", "birthdate", "address", "street_number", "street_name",
                 "address2", "postal", "city", "state", "gender", "loyalty_id", *NAME_KEYS, *INITIAL_KEYS]


def match_columns(identifiers: list[str] | tuple[str, ...] = ()) -> list[str]:
    """What the matcher sees per record: MATCH_COLUMNS and the tenant's other identifiers."""
    return [*MATCH_COLUMNS, *identifiers]

# Common English nicknames -> formal given name; lets 'Bob Smith' match 'Robert Smith'.
NICKNAMES = {
    "bob": "robert", "rob": "robert", "bobby": "robert", "robbie": "robert", "bill": "william",
    "will": "william", "billy": "william", "liam": "william", "jim": "james", "jimmy": "james",
    "jamie": "james", "mike": "michael", "mick": "michael", "dave": "david", "joe": "joseph",
    "joey": "joseph", "tom": "thomas", "tommy": "thomas", "chris": "christopher",
    "dan": "daniel", "danny": "daniel", "matt": "matthew", "tony": "anthony", "steve": "steven",
    "andy": "andrew", "drew": "andrew", "rick": "richard", "rich": "richard", "dick": "richard",
    "ed": "edward", "eddie": "edward", "ted": "edward", "ben": "benjamin", "sam": "samuel",
    "nick": "nicholas", "alex": "alexander", "greg": "gregory", "jon": "jonathan",
    "josh": "joshua", "ken": "kenneth", "larry": "lawrence", "ron": "ronald", "don": "donald",
    "tim": "timothy", "pat": "patricia", "patty": "patricia", "liz": "elizabeth",
    "beth": "elizabeth", "betty": "elizabeth", "lizzie": "elizabeth", "eliza": "elizabeth",
    "kate": "katherine", "katie": "katherine", "kathy": "katherine", "cathy": "catherine",
    "jen": "jennifer", "jenny": "jennifer", "sue": "susan", "susie": "susan", "meg": "margaret",
    "maggie": "margaret", "peggy": "margaret", "becky": "rebecca", "becca": "rebecca",
    "debbie": "deborah", "deb": "deborah", "barb": "barbara", "cindy": "cynthia",
    "mandy": "amanda", "jess": "jessica", "jessie": "jessica", "vicky": "victoria",
    "tori": "victoria", "abby": "abigail", "chuck": "charles", "charlie": "charles",
    "hank": "henry", "harry": "henry", "jack": "john", "johnny": "john", "frank": "francis",
    "fred": "frederick", "al": "albert", "gene": "eugene", "jeff": "jeffrey", "jerry": "gerald",
    "manny": "manuel", "nate": "nathan", "pete": "peter", "ray": "raymond", "walt": "walter",
    "stan": "stanley", "terry": "terrence", "val": "valerie", "ginny": "virginia",
    "mary": "mary", "molly": "mary", "polly": "mary", "sandy": "sandra", "stephie": "stephanie",
    "steph": "stephanie", "tina": "christina", "chrissy": "christina", "kim": "kimberly",
    "angie": "angela", "nancy": "ann", "annie": "ann", "anne": "ann", "sally": "sarah",
    "sara": "sarah", "allie": "alison", "ally": "alison", "dot": "dorothy", "dottie": "dorothy",
    "lou": "louis", "louie": "louis", "wes": "wesley", "zach": "zachary", "zack": "zachary",
    "ali": "alison", "kris": "kristen", "mel": "melissa", "missy": "melissa", "nicky": "nicole",
    "nikki": "nicole", "pam": "pamela", "tammy": "tamara", "trish": "patricia", "vince": "vincent",
}


# ---- preprocessing ------------------------------------------------------------------------------

RECORDS = "_stitch_records"        # temp table: standardised records of every customer source
NICKNAME_TABLE = "_stitch_nicknames"
MISSPELT_TABLE = "_stitch_misspelt"
BLOCKED_FIELDS = ("email", "phone", "address", "given_name", "surname")


def record_key_sql(unique_id: str, suffix: str = "") -> str:
    """SQL select items `source<suffix>, pk<suffix>` of a unique_id column ('source|pk', built by
    staging; a pk may itself hold '|', a source name cannot)."""
    source = f"split_part({unique_id}, '|', 1)"
    return f"{source} as source{suffix}, substr({unique_id}, length({source}) + 2) as pk{suffix}"


def customer_union_sql(cfg: TenantConfig) -> str:
    return " union all ".join(f'select * from domain."{s}"' for s in cfg.customer_sources)


STORED_MISSPELT = "stitch.misspelt_nicknames"


# the domain columns staging reads: a record whose values in them are unchanged stages the same
def staged_from_columns(cfg: TenantConfig) -> list[str]:
    return ["source", "pk", "given_name", "surname", "email", "phone", "birthdate", "address", "address2",
            "postal", "city", "state", "gender", "loyalty_id", *cfg.identifier_columns]


def stage_customer_records(con, cfg: TenantConfig, stored_misspelt: bool = False, only: str | None = None,
                           out: str = RECORDS) -> int:
    """The temp table `out` (RECORDS): every customer record with lowercased names, its nickname
    alias and a typed birthdate, in the domain tables' order (DuckDB preserves insertion order,
    so the same input gives the same table and the same model). Returns its row count.
    With stored_misspelt (an incremental run), the misspelt-nickname table of the last full
    run is used instead of finding it again: a record keeps the alias it was matched with.
    With only (a table with a unique_id column), just those records are staged."""
    register_nicknames(con)
    union = customer_union_sql(cfg)
    if stored_misspelt:
        con.execute(f"create or replace temp table {MISSPELT_TABLE} as select * from {STORED_MISSPELT}")
    else:
        find_misspelt_nicknames(con, f"select lower(given_name) as given_name from ({union})")
    where = f"where r.source || '|' || r.pk in (select unique_id from {only})" if only else ""
    con.execute(f"""
        create or replace temp table {out} as
        select r.source || '|' || r.pk as unique_id, r.source, r.pk,
               lower(r.given_name) as given_name,
               coalesce(n.formal, m.formal, lower(r.given_name)) as given_name_alias,
               lower(r.surname) as surname, r.email, r.phone,
               try_cast(r.birthdate as date) as birthdate, r.address, r.address2, r.postal,
               lower(r.city) as city, r.state, r.gender, r.loyalty_id{"".join(f", r.{c}" for c in cfg.identifier_columns)}
        from ({union}) r
        left join {NICKNAME_TABLE} n on n.nickname = lower(r.given_name)
        left join {MISSPELT_TABLE} m on m.name = lower(r.given_name)
        {where}""")
    return con.execute(f"select count(*) from {out}").fetchall()[0][0]


def find_misspelt_nicknames(con, given_names_sql: str) -> None:
    """MISSPELT_TABLE (name, formal): a given name we do not know, one typo away from exactly one
    known nickname or formal name that is more common in the data ('jtff' -> jeff, 'stpeh' ->
    steph), takes that name's alias: 'jtff' and 'jeffrey' are then a nickname match, not a
    conflict. A real name is common in its own right ('mary' is never read as 'marty')."""
    con.execute(f"""
        create or replace temp table {MISSPELT_TABLE} as
        with names as (select given_name as name, count(*) as n from ({given_names_sql})
                       where given_name is not null group by 1),
             known as (select nickname as name, formal from {NICKNAME_TABLE}
                       union select formal, formal from {NICKNAME_TABLE}),
             unknown as (select * from names where length(name) >= 3
                         and name not in (select name from known)),
             -- one edit leaves the first or the last letter in place (names of 3+ letters):
             -- two equi-joins instead of an edit distance for every pair of names
             pairs as (
                select u.name, u.n, k.name as known_name, k.formal
                from unknown u join known k on left(k.name, 1) = left(u.name, 1)
                union
                select u.name, u.n, k.name, k.formal
                from unknown u join known k on right(k.name, 1) = right(u.name, 1)),
             candidates as (
                select p.name, p.formal
                from pairs p
                join names kn on kn.name = p.known_name and kn.n > p.n
                where abs(length(p.name) - length(p.known_name)) <= 1
                  and damerau_levenshtein(p.name, p.known_name) = 1)
        select name, min(formal) as formal from candidates group by name
        having count(distinct formal) = 1""")


def register_nicknames(con) -> None:
    con.execute(f"create or replace temp table {NICKNAME_TABLE} (nickname varchar primary key, formal varchar)")
    con.executemany(f"insert into {NICKNAME_TABLE} values (?, ?)", sorted(NICKNAMES.items()))


def _blocklist_value(field: str, values: list[str], country: str) -> pd.Series:
    """A configured junk value as the sources standardise it (phones and streets in the tenant's
    country)."""
    s = pd.Series(values, dtype=object)
    if field == "email":
        return std.email(s)
    if field == "phone":
        return std.phone(s, country)
    if field == "address":
        return std.address(s, country)
    return std.name(s).str.lower()


BLOCKLIST_COLUMNS = ["field", "value", "reason", "records_touched"]
DETECTED_FIELDS = ("email", "phone", "address")


def build_blocklist(con, cfg: TenantConfig, records: str = RECORDS) -> pd.DataFrame:
    """Values never used as evidence: configured junk plus values shared by too many people.

    A value is detected automatically when it is carried by more than `max_people_per_value`
    different people, judged by given names with nicknames and typos folded together
    (households of 2-4 stay below the default of 5). Reads the staged `records`.
    """
    rows = configured_blocklist_rows(con, cfg, records)
    for field in DETECTED_FIELDS:
        rows += detected_blocklist_rows(con, cfg, field, f"select {field} as value, given_name_alias as given "
                                                         f"from {records}")
    return blocklist_frame(rows)


def blocklist_frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=BLOCKLIST_COLUMNS)
    return out.drop_duplicates(subset=["field", "value"], keep="first").reset_index(drop=True)


def configured_values(cfg: TenantConfig) -> dict[str, list[str]]:
    """field -> the configured junk values as the sources standardise them (fields with some)."""
    bl = cfg.stitch.blocklist
    out = {}
    for field, configured in (("email", bl.emails), ("phone", bl.phones), ("address", bl.addresses),
                              ("given_name", bl.names), ("surname", bl.names)):
        values = [v for v in _blocklist_value(field, configured, cfg.country).dropna().unique()]
        if values:
            out[field] = values
    return out


def configured_blocklist_rows(con, cfg: TenantConfig, records: str) -> list[dict]:
    """The configured junk values as the sources standardise them, with the records of
    `records` they touch."""
    rows = []
    for field, values in configured_values(cfg).items():
        touched = dict(con.execute(f"""select {field}, count(*) from {records}
                                       where {field} in (select unnest(?)) group by 1""", [values]).fetchall())
        rows += [{"field": field, "value": v, "reason": "configured", "records_touched": int(touched.get(v, 0))}
                 for v in values]
    return rows


def detected_blocklist_rows(con, cfg: TenantConfig, field: str, values_sql: str) -> list[dict]:
    """The values of `field` shared by more than max_people_per_value people, among the (value,
    given) of `values_sql`, in value order."""
    most = cfg.stitch.blocklist.max_people_per_value
    shared = people_per_value(con, values_sql, most)
    return [{"field": field, "value": value,
             "reason": f"shared by {'at least ' if at_least else ''}{people} different people "
                       f"(> max_people_per_value {most})",
             "records_touched": touched}
            for value, people, touched, at_least in shared.itertuples(index=False)]


# Past this many people a value is plainly shared (a store's phone, a placeholder email): stop
# counting the variants of hundreds of names and report "at least" this many.
COUNT_PEOPLE_UP_TO = 50


def people_per_value(con, values_sql: str, more_than: int) -> pd.DataFrame:
    """Values carried by more than `more_than` different people: (value, people, records,
    at_least) - at_least when counting stopped at COUNT_PEOPLE_UP_TO.

    `values_sql` selects (value, given) - a value and the nickname-aliased given name of a
    record carrying it. SQL keeps the values with more than `more_than` distinct given names;
    only those come to Python, where spelling variants of a name are counted once."""
    # a value with more than `more_than` names is on more than `more_than` records: a plain count
    # narrows a million values to a few before the distinct-name aggregates
    candidates = con.execute(f"""
        with carried as (select value, given from ({values_sql}) where value is not null and given is not null)
        select value, list(distinct given order by given) as names, count(*) as records
        from carried
        where value in (select value from carried group by value having count(*) > ?)
        group by value having count(distinct given) > ?
        order by value""", [more_than, more_than]).fetchall()
    cap = max(COUNT_PEOPLE_UP_TO, more_than + 1)
    rows = [(value, people, records, people >= cap) for value, names, records in candidates
            if (people := count_distinct_people(names, up_to=cap)) > more_than]
    return pd.DataFrame(rows, columns=["value", "people", "records", "at_least"])


def count_distinct_people(given_names, up_to: int | None = None) -> int:
    """Distinct people behind a set of given names, counting spelling variants once
    ('Kathy', 'Kathhy' and 'Katherine' -> 1), so a household of four with typos stays four.
    With up_to, counting stops there."""
    groups: list[difflib.SequenceMatcher] = []   # one matcher per group, its first name as b
    for name in sorted(set(given_names), key=lambda n: (-len(n), n)):
        for group in groups:
            group.set_seq1(name)
            # the cheap upper bounds rule out most pairs before the full ratio
            if group.real_quick_ratio() >= 0.8 and group.quick_ratio() >= 0.8 and group.ratio() >= 0.8:
                break
        else:
            groups.append(difflib.SequenceMatcher(None, b=name, autojunk=False))
            if up_to is not None and len(groups) >= up_to:
                break
    return len(groups)


def _blocked_sql() -> dict[str, str]:
    return {f: f"{f} in (select value from _stitch_blocklist where field = '{f}')" for f in BLOCKED_FIELDS}


def _letters_sql(source: str) -> str:
    """`source` with g, a, s: the letters of the given name, of its alias and of the surname."""
    return (f"(select *, regexp_replace(coalesce(given_name, ''), '[^a-z]', '', 'g') as g, "
            f"regexp_replace(coalesce(given_name_alias, given_name, ''), '[^a-z]', '', 'g') as a, "
            f"regexp_replace(coalesce(surname, ''), '[^a-z]', '', 'g') as s from {source})")


def _initial_key_sql(key: str) -> str:
    """SQL on a row with g, a, s and postal: the initial key as written (before the check that
    it fits a single person), null where the record cannot carry it."""
    return (f"case when g <> '' and s <> '' {'and a <> g' if '_alias_' in key else ''} "
            f"and postal is not null then {INITIAL_KEYS[key]} end")


def initial_key_uses_sql(source: str) -> str:
    """SQL (key, value, person, unique_id): every initial key `source`'s records carry, with the
    postal code, and the person (alias + surname) it would stand for. `source` has the columns
    of unified_preprocessed_raw (or of the keyed records): the keys follow from them exactly."""
    person = "coalesce(given_name_alias, given_name) || '|' || surname"
    return "\n union all ".join(
        f"select '{key}' as key, k || '|' || postal as value, {person} as person, unique_id "
        f"from (select *, {_initial_key_sql(key)} as k from {_letters_sql(source)}) where k is not null"
        for key in INITIAL_KEYS)


def ambiguous_keys_sql(uses_sql: str) -> str:
    """SQL (key, value): initial keys in a postal code that fit two or more people."""
    return f"select key, value from ({uses_sql}) group by key, value having min(person) <> max(person)"


KEYED = "_stitch_keyed"


def prepare_for_matching(con, blocklist: pd.DataFrame, table: str, identifiers: list[str] = (),
                         records: str = RECORDS, ambiguous: str | None = None) -> None:
    """Create `table` from the staged `records`: exactly what the matcher sees per record, with
    blocklisted values removed (a blocked given name takes its alias with it). The street line
    is also split into its leading number and the street name, for a number missing or mistyped.
    An initial key that fits two or more people (alias + surname) in one postal code is evidence
    for none of them: `ambiguous` (key, value) lists them, found from `records` themselves when
    not given (an incremental run passes those found over every record)."""
    con.register("_stitch_blocklist", blocklist[["field", "value"]])
    try:
        key_records(con, records, identifiers)
        if ambiguous is None:
            con.execute(f"create or replace temp table _stitch_ambiguous as "
                        f"{ambiguous_keys_sql(initial_key_uses_sql(KEYED))}")
            ambiguous = "_stitch_ambiguous"
        initial_keys = ",\n".join(
            f"case when {_initial_key_sql(key)} || '|' || postal in "
            f"(select value from {ambiguous} where key = '{key}') then null else {_initial_key_sql(key)} end as {key}"
            for key in INITIAL_KEYS)
        con.execute(f"""
            create or replace table {table} as
            select {', '.join(c for c in ("unique_id", "source", "pk", *match_columns(identifiers))
                              if c not in INITIAL_KEYS)},
                   {initial_keys}
            from {_letters_sql(KEYED)}""")
    finally:
        con.unregister("_stitch_blocklist")
        con.execute(f"drop table if exists {KEYED}")
        con.execute("drop table if exists _stitch_ambiguous")


def key_records(con, records: str, identifiers: list[str] = ()) -> None:
    """Temp table KEYED: `records` with the blocklist (_stitch_blocklist) applied, the mailbox
    split and the full-name keys; the initial keys are added by prepare_for_matching."""
    blocked = _blocked_sql()
    keep = {f: f"case when {blocked[f]} then null else {f} end" for f in BLOCKED_FIELDS}
    # an alias key only where the alias differs from the name as written
    name_keys = ",\n".join(
        f"case when g <> '' and s <> '' {'and a <> g' if '_alias_' in key else ''} then {sql} end as {key}"
        for key, sql in NAME_KEYS.items())
    ids = "".join(f", {c}" for c in identifiers)
    con.execute(f"""
        create or replace temp table {KEYED} as
        with kept as (
            select unique_id, source, pk,
                   {keep['given_name']} as given_name,
                   case when {blocked['given_name']} then null else given_name_alias end as given_name_alias,
                   {keep['surname']} as surname,
                   {keep['email']} as email,
                   {keep['phone']} as phone, birthdate, {keep['address']} as address, address2, postal,
                   city, state, gender, loyalty_id{ids}
            from {records})
        select unique_id, source, pk, given_name, given_name_alias, surname, email,
               split_part(email, '@', 1) as email_user,
               nullif(regexp_replace(split_part(email, '@', 1), '[^a-z]', '', 'g'), '') as email_letters,
               -- a mailbox of letters only that spells the record's own name ('mary.poole',
               -- 'mpoole'): namesakes write the same one at other providers
               g <> '' and s <> '' and not regexp_matches(split_part(email, '@', 1), '[0-9]')
                 and regexp_replace(split_part(email, '@', 1), '[^a-z]', '', 'g') in
                     ({", ".join(sql for sql in {**NAME_KEYS, **INITIAL_KEYS}.values())}) as mailbox_is_name,
               phone, birthdate, address,
               nullif(regexp_extract(address, '^([0-9]+[a-z]?)( |$)', 1), '') as street_number,
               nullif(trim(regexp_replace(address, '^[0-9]+[a-z]?( |$)', '')), '') as street_name,
               address2, postal, city, state, gender, loyalty_id{ids},
               {name_keys}
        from {_letters_sql('kept')}""")
