"""From columns to files: each file's kind, tags, country and references to the other files
(guess_files, decide)."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers

from cdp.config import REQUIRED_TAGS, TAGS_BY_KIND, SourceKind
from cdp.countries import DEFAULT_COUNTRY, country_code, fold, subdivision_codes
from cdp.onboarding.names import HEADER_LANGUAGE, name_key, name_scores
from cdp.onboarding.reading import InitError, Sample, read_sample
from cdp.onboarding.values import (COUNTRY_CANDIDATES, MIN_VALUES, POSTAL_PATTERNS, SURE_AT, TAG_AT, VALUE_SAMPLE, Choice,
                                   Profile, as_numbers, combine, id_like, profile_column, share_fitting)
from cdp.stages.sources.standardize import parse_datetimes


KINDS = [k.value for k in SourceKind]


@dataclass
class FileGuess:
    sample: Sample
    source: str
    country: str | None = None
    country_why: str = ""
    profiles: dict[str, Profile] = field(default_factory=dict)
    names: dict[str, tuple[dict, bool]] = field(default_factory=dict)
    refs: dict[str, tuple[int, str, float]] = field(default_factory=dict)  # col -> (file, col, share)
    kind: str = "customers"
    kind_scores: dict[str, float] = field(default_factory=dict)
    columns: dict[str, Choice] = field(default_factory=dict)
    customer_source: str | None = None
    customer_source_sure: bool = True
    skipped: str = ""               # why the file is not a source of the config (a comment instead)
    notes: list[str] = field(default_factory=list)


def source_name(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "_", fold(path.stem).replace(" ", "_")).strip("_") or "source"
    if not base[0].isalpha():
        base = f"s_{base}"
    base = base[:60]
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def guess_country(sample: Sample, names: dict[str, tuple[dict, bool]]) -> tuple[str | None, str]:
    """The country of a file's records, from its data: (ISO code or None, why)."""
    votes: Counter = Counter()
    why: dict[str, tuple[float, str]] = {}

    def vote(code: str | None, weight: float, reason: str) -> None:
        if code:
            votes[code] += weight
            if weight > why.get(code, (0.0, ""))[0]:  # the strongest evidence is the one said
                why[code] = (weight, reason)

    df = sample.rows
    for col in sample.columns:
        vals = [v for v in df[col].head(2000).tolist() if v]
        if len(vals) < MIN_VALUES:
            continue
        tags = names[col][0]
        if ("country" in tags or len(set(vals)) <= 30) and "state" not in tags:
            codes = [country_code(v) for v in vals]
            if sum(c is not None for c in codes) >= 0.8 * len(vals) and ("country" in tags or len(set(vals)) > 1):
                top, n = Counter(c for c in codes if c).most_common(1)[0]
                vote(top, 4 * n / len(vals), f"its column {col}")
        plus = [v for v in vals[:500] if v.startswith("+")]
        if len(plus) >= 0.3 * len(vals[:500]):
            regions = Counter()
            for v in plus:
                try:
                    regions[phonenumbers.region_code_for_number(phonenumbers.parse(v, None))] += 1
                except phonenumbers.NumberParseException:
                    pass
            if regions:
                top, n = regions.most_common(1)[0]
                vote(top, 3 * n / len(plus), f"the phone numbers in {col}")
        unnamed = names[col][1]
        if "state" in tags or (unnamed and len(set(vals)) <= 200 and max(map(len, vals[:1000])) <= 30
                               and not all(v.isdigit() for v in vals[:1000])):  # AT's are digits
            folded = [fold(v) for v in vals[:1000]]
            shares = {c: sum(f in subdivision_codes(c) for f in folded) / len(folded) for c in COUNTRY_CANDIDATES}
            best = max(shares.values())
            for c, sh in shares.items():
                if sh >= (0.8 if "state" in tags else 0.9) and sh >= best - 0.02:
                    vote(c, 2.5 * sh * (1.0 if c == max(shares, key=shares.get) else 0.8), f"the states in {col}")
        if "postal" in tags or unnamed:
            for c in COUNTRY_CANDIDATES if "postal" in tags else ("GB", "CA", "NL", "IE"):
                sh = share_fitting(vals[:1000], lambda v, p=POSTAL_PATTERNS.get(c, "x^"): re.fullmatch(p, v) is not None)
                if sh >= 0.9:
                    vote(c, 1.0 if c in ("GB", "CA", "NL", "IE") else 0.3, f"the postcodes in {col}")
    words = {name_key(c) for c in sample.columns}
    for code, vocab in HEADER_LANGUAGE.items():
        hits = len(words & vocab)
        if hits >= 2:
            vote(code, 1.5 * hits, "the language of its column names")
    if not votes:
        return None, ""
    top = max(votes, key=lambda c: (votes[c], c == DEFAULT_COUNTRY))
    return top, why[top][1]


def _pk_candidates(g: FileGuess) -> dict[str, set[str]]:
    return {c: set(g.sample.rows[c].dropna()) for c, p in g.profiles.items()
            if p.keyish and p.scores.get("pk", 0) > 0}


def find_references(guesses: list[FileGuess]) -> None:
    """A column whose values are (mostly) another file's unique key refers to that file."""
    keys = [(_pk_candidates(g)) for g in guesses]
    for i, g in enumerate(guesses):
        for col, prof in g.profiles.items():
            vals = set(v for v in g.sample.rows[col].dropna())
            if len(vals) < MIN_VALUES or not all(id_like(v) for v in list(vals)[:200]):
                continue
            if all(re.fullmatch(r"\d{1,2}", v) for v in list(vals)[:200]):
                continue  # 1, 2, 3: any small numbers are in any list of numbers
            found = []
            for j, cand in enumerate(keys):
                if j == i:
                    continue
                for kcol, kvals in cand.items():
                    share = len(vals & kvals) / len(vals)
                    if share >= 0.2:
                        found.append((share, j, kcol))
            if not found:
                continue
            share, j, kcol = max(found)
            if share >= 0.6:
                g.refs[col] = (j, kcol, share)
            elif sum(f[0] for f in found) >= 0.9:  # order lines of two order files: keys of both
                g.refs[col] = (j, kcol, min(1.0, sum(f[0] for f in found)))


def choose_tags(g: FileGuess, kind: str, guesses: list[FileGuess], kinds: list[str] | None) -> tuple[dict, float]:
    """The best tag per column for one kind, each tag once; and how well the kind fits."""
    allowed = set(TAGS_BY_KIND[SourceKind(kind)])
    if kind == "customers":
        allowed |= {"other-id"}
    cands: dict[str, list[tuple[float, str, str]]] = {}
    for col, prof in g.profiles.items():
        name, meaningless = g.names[col]
        scored = []
        for tag in allowed:
            score, why = combine(tag, name, meaningless, prof)
            ref = g.refs.get(col)
            if ref and kinds is not None:
                target_kind = kinds[ref[0]]
                target = guesses[ref[0]].source
                # a key of another file: which tag it is depends on what that file is
                linked = {("transactions", "customers"): "customer-pk",
                          ("transaction_items", "transactions"): "order-id",
                          ("transaction_items", "products"): "product-id",
                          ("transactions", "products"): None}.get((kind, target_kind))
                if linked == tag:
                    score, why = max(score, 0.7 + 0.3 * ref[2]), f"values are keys of {target}.{ref[1]}"
                elif kind == "customers" and tag == "pk" and target_kind == "customers":
                    score *= 0.8  # a customers file keyed by another's ids is odd, not wrong
            if score > 0:
                scored.append((round(score, 3), tag, why))
        scored.sort(reverse=True)
        cands[col] = scored
    # greedy: the strongest (column, tag) pairs first, each column and each tag once
    pairs = sorted(((s, col, tag, why) for col, lst in cands.items() for s, tag, why in lst),
                   key=lambda p: (-p[0], list(g.profiles).index(p[1])))
    chosen: dict[str, Choice] = {}
    used: set[str] = set()
    for s, col, tag, why in pairs:
        if col in chosen or tag in used or s < TAG_AT:
            continue
        chosen[col] = Choice(tag, s, why=why)
        used.add(tag)
    _order_pairs(g, chosen)
    if "city" in allowed and "city" not in used:
        _city_beside_state(g, chosen)
        used |= {"city"} & {c.tag for c in chosen.values()}
    for tag in REQUIRED_TAGS[SourceKind(kind)]:
        if tag in used:
            continue  # a required tag untaken: the best free column for it, however weak
        free = [(s, col, why) for col, lst in cands.items() if col not in chosen
                for s, t, why in lst if t == tag]
        if not free and tag == "pk":  # no id: the free column nearest to unique, if one is
            free = [(0.3, col, "values: nearly unique") for col, p in g.profiles.items()
                    if col not in chosen and p.filled >= 0.9 and p.distinct >= 0.9 * p.rows]
        if free:
            s, col, why = max(free)
            chosen[col] = Choice(tag, min(s, SURE_AT - 0.01), why=why or "required")
            used.add(tag)
    for col, lst in cands.items():
        c = chosen.get(col)
        alts = [(t, s, why) for s, t, why in lst if (c is None or t != c.tag) and s >= 0.35][:2]
        name = g.names[col][0]
        said = max((t for t in name if t in allowed), key=lambda t: name[t], default=None)
        if c is not None and c.why == "values" and said and said != c.tag and name[said] >= 0.6:
            c.name_disagrees = True  # a misleading name, or misleading values: the user decides
            if said not in [a[0] for a in alts]:
                alts.append((said, next(s for s, t, _ in lst if t == said), "name"))
        if c is None:
            chosen[col] = Choice(None, 0.0, alts)
        else:
            c.alternatives = alts
    chosen = {col: chosen[col] for col in g.profiles}   # in the file's order
    fit = sum(c.score for c in chosen.values() if c.tag)
    missing = [t for t in REQUIRED_TAGS[SourceKind(kind)] if t not in used]
    fit += sum(1.0 for t in REQUIRED_TAGS[SourceKind(kind)] if t in used) - 3.0 * len(missing)
    return chosen, fit - (100 if missing else 0)


# two tags the values alone tell apart only row by row: the first is the smaller on each row
ORDERED_PAIRS = (("create-datetime", "update-datetime"), ("item-unit-price", "item-revenue"),
                 ("product-category", "product-brand"))  # a catalogue has fewer categories than brands


def _city_beside_state(g: FileGuess, chosen: dict[str, Choice]) -> None:
    """Place names are not told from other words by their values alone (no list of every town),
    but nearly every address layout puts the city beside the state or the postcode (city, state
    zip; PLZ Ort; suburb, state, postcode): an untagged column of place-like words there, whose
    name says nothing else, is taken as the city, unsure."""
    order = list(g.profiles)
    beside = {order[i + d] for i, col in enumerate(order) if col in chosen and chosen[col].tag in ("state", "postal")
              for d in (-1, 1) if 0 <= i + d < len(order)}
    free = [(g.profiles[c].scores.get("city", 0.0), -order.index(c), c) for c in beside
            if c not in chosen and g.profiles[c].scores.get("city", 0.0) > 0 and not g.names[c][0]]
    if free:
        col = max(free)[2]
        chosen[col] = Choice("city", SURE_AT - 0.1, why="from place names beside its state or postcode")


def _order_pairs(g: FileGuess, chosen: dict[str, Choice]) -> None:
    """Columns that got such a pair of tags from their values alone swap them when the rows say
    so (created before updated; a line's total at least its unit price)."""
    by_tag = {c.tag: col for col, c in chosen.items() if c.tag}
    for first, second in ORDERED_PAIRS:
        a, b = by_tag.get(first), by_tag.get(second)
        if not a or not b or chosen[a].why != "values" or chosen[b].why != "values":
            continue
        rows = g.sample.rows[[a, b]].dropna().head(VALUE_SAMPLE)
        if first == "product-category":
            if g.profiles[a].distinct > g.profiles[b].distinct:
                chosen[a].tag, chosen[b].tag = second, first
            continue
        if first.endswith("datetime"):
            x, y = (parse_datetimes(rows[c])[0] for c in (a, b))
        else:
            x, y = (as_numbers(rows[c].tolist()).set_axis(rows.index) for c in (a, b))
        if (x > y).sum() > (x < y).sum():
            chosen[a].tag, chosen[b].tag = second, first


KIND_WORDS = {
    "transaction_items": {"items", "item", "lines", "line", "order_items", "orderitems", "line_items", "details",
                          "positions", "basket", "positionen", "lignes", "order_lines", "orderlines"},
    "transactions": {"orders", "order", "transactions", "transaction", "sales", "receipts", "receipt",
                     "purchases", "invoices", "bestellungen", "txns", "payments", "tickets", "commandes",
                     "pedidos", "ordini", "bookings"},
    "products": {"products", "product", "catalog", "catalogue", "skus", "articles", "artikel", "inventory",
                 "produkte", "produits", "productos", "prodotti", "items_master"},
    "customers": {"customers", "customer", "clients", "members", "subscribers", "contacts", "people", "persons",
                  "kunden", "users", "accounts", "crm", "patients", "leads", "census", "profiles", "loyalty"},
}


def _kind_hint(stem: str) -> str | None:
    words = set(re.split(r"[^a-z]+", fold(stem).replace(" ", "_")))
    words |= {"_".join(p) for p in zip(list(words), list(words)[1:])}
    for kind in ("transaction_items", "transactions", "products", "customers"):
        if words & KIND_WORDS[kind] or fold(stem).replace(" ", "_") in KIND_WORDS[kind]:
            return kind
    return None


def decide(guesses: list[FileGuess]) -> None:
    """Kinds and tags of every file: first without the references between files, then with
    them (an orders file is one whose customer column holds a customers file's keys)."""
    kinds: list[str] | None = None
    for _round in range(2):
        new_kinds = []
        for g in guesses:
            hint = _kind_hint(g.sample.path.stem)
            results = {}
            for kind in KINDS:
                tags, fit = choose_tags(g, kind, guesses, kinds)
                results[kind] = (tags, fit + (1.5 if hint == kind else 0.0))
            g.kind_scores = {k: round(f, 2) for k, (_, f) in results.items()}
            g.kind = max(KINDS, key=lambda k: results[k][1])
            g.columns = results[g.kind][0]
            new_kinds.append(g.kind)
        if kinds == new_kinds:
            break
        kinds = new_kinds
    if not any(g.kind == "customers" for g in guesses):  # a tenant needs one: the most customer-like
        g = max(guesses, key=lambda g: g.kind_scores["customers"])
        g.kind = "customers"
        g.columns = choose_tags(g, "customers", guesses, kinds)[0]
    kinds = [g.kind for g in guesses]
    for g in guesses:
        g.columns = choose_tags(g, g.kind, guesses, kinds)[0]
        tags = {c.tag for c in g.columns.values()}
        missing = [t for t in REQUIRED_TAGS[SourceKind(g.kind)] if t not in tags]
        if missing:
            g.skipped = f"no column of it could be its {', '.join(missing)} (required for kind {g.kind})"
    customers = [g.source for g in guesses if g.kind == "customers" and not g.skipped]
    if not customers:
        raise InitError("none of the files can be a customers source (one with a column unique per row, its "
                        "pk): " + "; ".join(f"{g.sample.path}: {g.skipped or 'kind ' + g.kind}" for g in guesses))
    for g in guesses:
        if g.kind != "transactions" or g.skipped:
            continue
        col = next((c for c, ch in g.columns.items() if ch.tag == "customer-pk"), None)
        ref = g.refs.get(col) if col else None
        if ref and guesses[ref[0]].source in customers:
            g.customer_source = guesses[ref[0]].source
        else:  # no column holds a customers file's keys: the first customers source, unsure
            g.customer_source = customers[0]
            g.customer_source_sure = False


def guess_files(paths: list[str | os.PathLike], country: str | None = None) -> tuple[list[FileGuess], str, str]:
    """Read and guess every file. Returns (guesses, tenant country, why)."""
    taken: set[str] = set()
    guesses = []
    for p in paths:
        sample = read_sample(p)
        g = FileGuess(sample, source_name(sample.path, taken))
        g.names = {c: name_scores(c) for c in sample.columns}
        g.country, g.country_why = guess_country(sample, g.names)
        guesses.append(g)
    if country:
        tenant_country, why = country.upper(), "--country"
    else:
        votes = Counter(g.country for g in guesses if g.country)
        if votes:
            tenant_country = max(votes, key=lambda c: (votes[c], -next(i for i, g in enumerate(guesses)
                                                                          if g.country == c)))
            why = next(g.country_why for g in guesses if g.country == tenant_country)
            why = f"from {why} in {next(g.sample.path.name for g in guesses if g.country == tenant_country)}"
        else:
            tenant_country, why = DEFAULT_COUNTRY, "nothing in the data says; the default"
    for g in guesses:
        read_as = g.country or tenant_country
        g.profiles = {c: profile_column(c, g.sample.rows[c], read_as) for c in g.sample.columns}
    find_references(guesses)
    decide(guesses)
    return guesses, tenant_country, why
