"""Stitch, step 1: what the matcher sees.

Customer records of every source are unioned; junk values (configured, or carried by too many
different people) are listed in the blocklist and removed; names are lowercased and aliased
through a nickname table so 'Bob' meets 'Robert'.
"""

import difflib

import pandas as pd

from .. import standardize as std
from ..config import TenantConfig

MATCH_COLUMNS = ["given_name", "given_name_alias", "surname", "email", "email_user", "phone", "birthdate",
                 "address", "postal", "city", "state", "loyalty_id"]

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

def load_customer_records(con, cfg: TenantConfig) -> pd.DataFrame:
    union = " union all ".join(f'select * from domain."{s}"' for s in cfg.customer_sources)
    return con.execute(f"select * from ({union}) order by source, pk").df()


def _blocklist_value(field: str, values: list[str]) -> pd.Series:
    s = pd.Series(values, dtype=object)
    if field == "email":
        return std.email(s)
    if field == "phone":
        return std.phone(s)
    if field == "address":
        return std.address(s)
    return std.name(s).str.lower()


def build_blocklist(records: pd.DataFrame, cfg: TenantConfig) -> pd.DataFrame:
    """Values never used as evidence: configured junk plus values shared by too many people.

    A value is detected automatically when it is carried by more than `max_people_per_value`
    different people, judged by given names with nicknames and typos folded together
    (households of 2-4 stay below the default of 5).
    """
    bl = cfg.stitch.blocklist
    rows = []
    given = records["given_name"].str.lower()
    for field, configured in (("email", bl.emails), ("phone", bl.phones), ("address", bl.addresses),
                              ("given_name", bl.names), ("surname", bl.names)):
        column = records[field].str.lower() if field in ("given_name", "surname") else records[field]
        for value in _blocklist_value(field, configured).dropna().unique():
            rows.append({"field": field, "value": value, "reason": "configured",
                         "records_touched": int((column == value).sum())})
    aliases = nickname_alias(given)
    for field in ("email", "phone", "address"):
        shared = people_per_value(records[field], aliases, bl.max_people_per_value)
        touched = records[field].value_counts()
        for value, people in shared.items():
            rows.append({"field": field, "value": value,
                         "reason": f"shared by {people} different people "
                                   f"(> max_people_per_value {bl.max_people_per_value})",
                         "records_touched": int(touched[value])})
    out = pd.DataFrame(rows, columns=["field", "value", "reason", "records_touched"])
    return out.drop_duplicates(subset=["field", "value"], keep="first").reset_index(drop=True)


def nickname_alias(given_lower: pd.Series) -> pd.Series:
    """Lowercased given names mapped to their formal name ('bob' -> 'robert')."""
    return given_lower.map(lambda g: NICKNAMES.get(g, g) if isinstance(g, str) else None)


def people_per_value(values: pd.Series, given_aliases: pd.Series, more_than: int) -> pd.Series:
    """Values carried by more than `more_than` different people -> how many people, judged by
    the (nickname-aliased) given names on the records that carry them."""
    named = pd.DataFrame({"value": values, "given": given_aliases}).dropna()
    spread = named.groupby("value")["given"].nunique()
    candidates = named[named["value"].isin(spread.index[spread > more_than])]
    people = candidates.groupby("value")["given"].unique().map(
        lambda names: count_distinct_people(pd.Series(names))).astype(int)
    return people[people > more_than]


def count_distinct_people(given_names: pd.Series) -> int:
    """Distinct people behind a set of given names, counting spelling variants once
    ('Kathy', 'Kathhy' and 'Katherine' -> 1), so a household of four with typos stays four."""
    groups: list[str] = []
    for name in sorted(set(given_names), key=lambda n: (-len(n), n)):
        if not any(difflib.SequenceMatcher(None, name, g).ratio() >= 0.8 for g in groups):
            groups.append(name)
    return len(groups)


def preprocess_for_matching(records: pd.DataFrame, blocklist: pd.DataFrame) -> pd.DataFrame:
    """Exactly what the matcher sees per record: lowercased names, nickname aliases, and
    blocklisted values removed."""
    m = pd.DataFrame({
        "unique_id": records["source"] + "|" + records["pk"],
        "source": records["source"],
        "pk": records["pk"],
        "given_name": records["given_name"].str.lower(),
        "surname": records["surname"].str.lower(),
        "email": records["email"],
        "phone": records["phone"],
        "birthdate": pd.to_datetime(records["birthdate"]),
        "address": records["address"],
        "postal": records["postal"],
        "city": records["city"].str.lower(),
        "state": records["state"],
        "loyalty_id": records["loyalty_id"],
    })
    m["given_name_alias"] = nickname_alias(m["given_name"])
    for field, values in blocklist.groupby("field")["value"]:
        m.loc[m[field].isin(set(values)), field] = None
        if field == "given_name":
            m.loc[m["given_name"].isna(), "given_name_alias"] = None
    m["email_user"] = m["email"].str.split("@").str[0]
    return m[["unique_id", "source", "pk", *MATCH_COLUMNS]]


