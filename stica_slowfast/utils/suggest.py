"""Did-you-mean hints for error messages about unknown names (config keys, registry names, options)."""

import difflib
from typing import Iterable, Optional

__all__ = ["closest", "did_you_mean"]


def closest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> Optional[str]:
    """The choice most similar to ``word`` by ``difflib``'s ratio, or None when none reaches ``cutoff``.

    Args:
        word: the unknown name.
        choices: the valid names.
        cutoff: lowest similarity in [0, 1] worth suggesting; 0 always suggests one (when there is any).
    """
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return match[0] if match else None


def did_you_mean(suggestion: Optional[str], *, quote: bool = True) -> str:
    """``"; did you mean 'x'?"`` to append to an error message, or ``""`` without a suggestion.

    Args:
        suggestion: the name to suggest, e.g. from :func:`closest`.
        quote: write it as ``repr`` (names that are strings in the config); False for dotted config keys.
    """
    if suggestion is None:
        return ""
    return f"; did you mean {suggestion!r}?" if quote else f"; did you mean {suggestion}?"
