"""A `PIXHOOK_*` variable no setting reads is most likely a typo: say so at start."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping

from service.config.settings import declarations

log = logging.getLogger("pixhook.config")
PREFIX = "PIXHOOK_"


def unknown_variables(environ: Mapping[str, str]) -> dict[str, str | None]:
    """Each `PIXHOOK_*` variable that no setting reads, with the closest one that does."""
    known = [declared.variable for _, declared in declarations()]
    return {
        name: _closest(name, known)
        for name in sorted(environ)
        if name.startswith(PREFIX) and name not in known
    }


def _closest(name: str, known: list[str]) -> str | None:
    # Compared without the prefix they all share, which would make anything look close.
    stems = [variable.removeprefix(PREFIX) for variable in known]
    found = difflib.get_close_matches(name.removeprefix(PREFIX), stems, n=1)
    return PREFIX + found[0] if found else None


def warn_of_unknown_variables(environ: Mapping[str, str]) -> None:
    """One warning line per unknown variable: a misspelled one would otherwise silently keep
    its setting at the default."""
    for name, likely in unknown_variables(environ).items():
        hint = f"; did you mean {likely}?" if likely else ""
        log.warning("%s is set but no setting reads it%s", name, hint)
