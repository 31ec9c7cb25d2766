"""Brand names as the model reads them, matched against the brands the caller knows.

Names are compared normalised: accents removed, case folded, punctuation and runs of whitespace
made one space, and a trailing company form dropped ("Nike Inc." is "Nike", "Hermès" is
"hermes", "Dr. Martens" is "dr martens"). A name that matches no known brand is dropped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from service.providers.errors import PROVIDER_BAD_RESPONSE, ProviderError

# Company forms that name the same brand: dropped from the end of a name, once.
COMPANY_FORMS = frozenset(
    "inc incorporated corp corporation co company ltd limited llc plc gmbh ag sa srl spa bv"
    " kk oy ab".split()
)
_NOT_WORD = re.compile(r"[\W_]+")


def normalise_brand(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    words = _NOT_WORD.sub(" ", plain).split()
    if len(words) > 1 and words[-1] in COMPANY_FORMS:
        words = words[:-1]
    return " ".join(words)


class BrandIndex:
    """The caller's brands by normalised name; the first of two that normalise alike wins."""

    def __init__(self, brands: Iterable[str]) -> None:
        self._by_name: dict[str, str] = {}
        for brand in brands:
            self._by_name.setdefault(normalise_brand(brand), brand)

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def match(self, name: str) -> str | None:
        """The caller's spelling of the brand `name` is, or None."""
        return self._by_name.get(normalise_brand(name))


def matched_logos(value: Any, brands: BrandIndex) -> list[dict[str, Any]]:
    """The model's `logos`, each naming one of `brands`, with its confidence and box as
    fractions; a brand not among them is the model's invention, or one the caller did not ask
    about: dropped. Missing or mangled numbers read as 0."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProviderError("logos is not a list", code=PROVIDER_BAD_RESPONSE, retryable=False)
    logos = []
    for item in value:
        brand = brands.match(str(item.get("brand", ""))) if isinstance(item, dict) else None
        if brand is None or not isinstance(item, dict):
            continue
        box = item["box"] if isinstance(item.get("box"), dict) else {}
        logos.append(
            {
                "brand": brand,
                "confidence": _fraction(item.get("confidence")),
                "box": {side: _fraction(box.get(side)) for side in ("x", "y", "width", "height")},
            }
        )
    return logos


def _fraction(value: Any) -> float:
    try:
        return min(1.0, max(0.0, float(value)))
    except (TypeError, ValueError):
        return 0.0
