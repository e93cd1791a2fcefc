"""The special-category flags (GDPR Art. 9): which targeting values name a special category.

The terms live in ``special_categories.toml`` beside this module, versioned; each flag records
the version, the term and the value it matched, so that how a flag came about can be shown.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from schemas.ad import SPECIAL_CATEGORIES, SpecialCategoryFlag, Targeting

VOCABULARY_FILE = Path(__file__).with_name("special_categories.toml")


@dataclass(frozen=True)
class Vocabulary:
    version: str
    # (category, language, term, compiled whole-word pattern)
    terms: tuple[tuple[str, str, str, re.Pattern[str]], ...]


@cache
def vocabulary(path: Path = VOCABULARY_FILE) -> Vocabulary:
    """The vocabulary file, checked: every category known, every term a non-empty string."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    version = data.pop("version", None)
    if not isinstance(version, str) or not version:
        raise ValueError(f"{path}: no version")
    terms = []
    for category, languages in data.items():
        if category not in SPECIAL_CATEGORIES:
            raise ValueError(f"{path}: unknown category {category!r}")
        for language, words in languages.items():
            for term in words:
                if not isinstance(term, str) or not term.strip():
                    raise ValueError(f"{path}: [{category}] {language}: empty term")
                # Whole words only: "pride" must not flag "Pride and Prejudice"-free "prideful"
                # and "gay" must not match "Gaya".
                pattern = re.compile(rf"(?<!\w){re.escape(term.strip())}(?!\w)", re.IGNORECASE)
                terms.append((category, language, term.strip(), pattern))
    return Vocabulary(version, tuple(terms))


def flag_targeting(
    targeting: Targeting, vocab: Vocabulary | None = None
) -> list[SpecialCategoryFlag]:
    """Flags for every special category a targeting value names (one per category and value)."""
    vocab = vocab or vocabulary()
    fields: list[tuple[str, str]] = [("interests", v) for v in targeting.interests]
    fields += [("audiences", v) for v in targeting.audiences]
    for key, value in targeting.other.items():
        values = value if isinstance(value, list) else [value]
        fields += [(f"other.{key}", str(v)) for v in values if isinstance(v, str | int | float)]
    flags: dict[tuple[str, str, str], SpecialCategoryFlag] = {}
    for field, value in fields:
        for category, language, term, pattern in vocab.terms:
            key = (category, field, value)
            if key not in flags and pattern.search(value):
                flags[key] = SpecialCategoryFlag(
                    category=category,
                    term=term,
                    value=value,
                    field=field,
                    language=language,
                    vocabulary=vocab.version,
                )
    return list(flags.values())
