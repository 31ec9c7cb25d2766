"""Language tags (BCP 47) a caller may ask descriptions in: well formed, and naming a language.

A tag is `language[-Script][-REGION]` ("ko", "en-GB", "zh-Hans", "sr-Latn-RS"): the language an
ISO 639-1 code or one of the few three-letter codes below, the script four letters, the region
two letters or three digits. Variants and extensions are refused: a model writes no better for
them, and each would split the answer cache.
"""

from __future__ import annotations

import re

_TAG = re.compile(r"^([a-z]{2,3})(?:-([a-z]{4}))?(?:-([a-z]{2}|[0-9]{3}))?$", re.IGNORECASE)
# ISO 639-1, the two-letter codes.
_TWO_LETTER = frozenset(
    """aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy
    da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu
    hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb
    lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om
    or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw
    ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
    """.split()
)
# Languages shops sell in that ISO 639-1 has no code for.
_THREE_LETTER = frozenset("fil yue haw ceb hmn nan wuu hak".split())


def normalise_language(tag: str) -> str | None:
    """The tag in its canonical case ("zh-Hans", "pt-BR"), or None if it names no language."""
    match = _TAG.match(tag)
    if match is None:
        return None
    language, script, region = match.groups()
    language = language.lower()
    if language not in _TWO_LETTER and language not in _THREE_LETTER:
        return None
    parts = [language]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)
