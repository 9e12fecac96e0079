"""Writing the tenant config (render_config, init_config): YAML with relative paths; what is
unsure carries a comment, untagged columns are listed in a comment. The result passes
load_config."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from cdp.config import load_config
from cdp.countries import fold
from cdp.onboarding.files import FileGuess, guess_files
from cdp.onboarding.reading import InitError
from cdp.onboarding.values import Choice


def _key(text: str) -> str:
    """A YAML mapping key that reads back as this string (quoted when it would not)."""
    plain = f"{text}: x"
    try:
        if text and yaml.safe_load(plain) == {text: "x"} and not text.startswith(("#", "&", "*", "!", "'", '"')):
            return text
    except yaml.YAMLError:
        pass
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scalar(text: str) -> str:
    """A YAML value that reads back as this string."""
    try:
        if yaml.safe_load(f"k: {text}") == {"k": text}:
            return text
    except yaml.YAMLError:
        pass
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alts(choice: Choice) -> str:
    return ", ".join(f"{t} ({s:.2f}, {'its name' if why.startswith('name') else why})"
                     for t, s, why in choice.alternatives)


def render_config(guesses: list[FileGuess], tenant: str, country: str, country_why: str, out: Path) -> str:
    lines = [
        f"# Written by `cdp init` from {len(guesses)} file{'s' if len(guesses) != 1 else ''}: a starting point to check.",
        "# Every line marked `# unsure` is a guess with its alternatives; untagged columns are listed",
        "# above each source's columns. Then: cdp check-config THIS_FILE && cdp run --config THIS_FILE",
        f"tenant: {tenant}",
        "warehouse: warehouse.duckdb",
        f"country: {country:<24}# {country_why}",
        "",
        "sources:",
    ]
    for g in guesses:
        s = g.sample
        rel = Path(os.path.relpath(s.path.resolve(), out.resolve().parent)).as_posix()
        if g.skipped:
            lines += _wrap(f"{rel} is left out: {g.skipped}; tag one and add it as a source", "  # ")
            lines.append("")
            continue
        lines.append(f"  {g.source}:")
        kind_alts = sorted(((f, k) for k, f in g.kind_scores.items() if k != g.kind), reverse=True)
        kind_note = ""
        if kind_alts and kind_alts[0][0] > g.kind_scores[g.kind] - 1.0 and kind_alts[0][0] > -50:
            kind_note = f"  # unsure: or kind {kind_alts[0][1]}"
        lines.append(f"    path: {_scalar(rel)}")
        lines.append(f"    kind: {g.kind}{kind_note}")
        if g.kind == "transactions":
            note = "" if g.customer_source_sure else "  # unsure: no column holds its keys; check"
            lines.append(f"    customer_source: {g.customer_source}{note}")
        if g.country and g.country != country:
            lines.append(f"    country: {g.country:<22}# from {g.country_why}")
        if s.format == "csv" and s.encoding not in ("utf-8", "utf-8-sig"):
            lines.append(f"    encoding: {s.encoding:<21}# detected from its bytes")
        if s.format == "csv" and s.delimiter != ",":
            delim = r'"\t"' if s.delimiter == "\t" else _scalar(s.delimiter)
            lines.append(f"    delimiter: {delim}")
        untagged = [c for c, ch in g.columns.items() if ch.tag is None]
        if untagged:
            text = ", ".join(c + (f" (maybe {ch.alternatives[0][0]})" if ch.alternatives else "")
                             for c in untagged if (ch := g.columns[c]))
            lines += _wrap(f"not tagged: {text}", "    # ")
        lines.append("    columns:")
        width = max((len(_key(c)) for c, ch in g.columns.items() if ch.tag), default=0) + 2
        for col, ch in g.columns.items():
            if ch.tag is None:
                continue
            entry = f"      {(_key(col) + ':'):<{width}} {ch.tag}"
            prof = g.profiles[col]
            if ch.unsure:
                why = (f"from its {ch.why}" if ch.why in ("name", "values", "name and values") else ch.why) \
                    or "weak evidence"
                alts = _alts(ch)
                entry = f"{entry:<44}# unsure: {ch.tag} {why} ({ch.score:.2f})" + (
                    f"; or {alts}" if alts else "; no other tag fits")
            if ch.tag in ("pk", "order-id", "product-id") and g.kind == KEY_KIND[ch.tag] and not prof.unique:
                bad = prof.rows - prof.distinct
                entry = f"{entry:<44}# " if "#" not in entry else f"{entry}; "
                entry += f"{bad} blank or repeated keys in the sample: those rows go to domain.quarantine"
            lines.append(entry)
        lines.append("")
    return "\n".join(lines)


KEY_KIND = {"pk": "customers", "order-id": "transactions", "product-id": "products"}


def _wrap(text: str, prefix: str, width: int = 100) -> list[str]:
    out, line = [], ""
    for word in text.split(" "):
        if line and len(prefix) + len(line) + 1 + len(word) > width:
            out.append(prefix + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return out + ([prefix + line] if line else [])


def tenant_name(name: str | None, out: Path) -> str:
    base = name or out.resolve().parent.name or "tenant"
    ident = re.sub(r"[^a-z0-9_]+", "_", fold(base).replace(" ", "_")).strip("_")
    if not ident or not ident[0].isalpha():
        ident = f"t_{ident}" if ident else "tenant"
    return ident[:63]


def init_config(paths: list[str | os.PathLike], out: str | os.PathLike = "tenant.yaml", tenant: str | None = None,
                country: str | None = None, force: bool = False) -> tuple[Path, list[FileGuess]]:
    """Write a starting tenant config for the data files; returns (its path, the guesses)."""
    out = Path(out)
    if out.exists() and not force:
        raise InitError(f"{out}: already exists; use --force to overwrite it")
    if country:
        from cdp.config import iso_country
        try:
            country = iso_country(country)
        except ValueError as exc:
            raise InitError(f"--country: {exc}") from None
    if not paths:
        raise InitError("no data files given")
    guesses, tenant_country, why = guess_files(paths, country)
    text = render_config(guesses, tenant_name(tenant, out), tenant_country, why, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_config(tmp)
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(out)
    return out, guesses


def summary(guesses: list[FileGuess]) -> list[str]:
    """One line per source for the terminal."""
    out = []
    for g in guesses:
        if g.skipped:
            out.append(f"  {g.source:<24} left out: {g.skipped}")
            continue
        tagged = sum(1 for c in g.columns.values() if c.tag)
        unsure = sum(1 for c in g.columns.values() if c.unsure)
        out.append(f"  {g.source:<24} {g.kind:<18} {tagged}/{len(g.columns)} columns tagged"
                   + (f", {unsure} unsure" if unsure else ""))
    return out


def as_mapping(guesses: list[FileGuess]) -> dict[str, dict]:
    """file name -> {kind, columns: {column: tag or None}} (for benchmarks and tests)."""
    return {g.sample.path.name: {
        "kind": g.kind, "source": g.source, "customer_source": g.customer_source, "country": g.country,
        "columns": {c: ch.tag for c, ch in g.columns.items()},
        "unsure": {c for c, ch in g.columns.items() if ch.unsure},
        "hinted": {c for c, ch in g.columns.items() if ch.tag is None and ch.alternatives}}
        for g in guesses}
