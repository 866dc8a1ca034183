"""The CLI's warning filters survive a library that puts its own filters in front (Feast does, on import)."""

import warnings

import pytest

from rebuy.timeutil import requiet

ODFV = "On demand feature view is an experimental feature. This API is stable"


def _emitted(quiet: bool, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    if quiet:
        monkeypatch.setenv("REBUY_QUIET", "1")
    else:
        monkeypatch.delenv("REBUY_QUIET", raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("once", RuntimeWarning)  # what importing feast does
        warnings.simplefilter("once", DeprecationWarning)
        requiet()
        warnings.warn(ODFV, RuntimeWarning, stacklevel=1)
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
        warnings.warn("something else", RuntimeWarning, stacklevel=1)
    return [str(w.message) for w in seen]


def test_requiet_under_the_cli_drops_only_the_known_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _emitted(True, monkeypatch) == ["something else"]


def test_requiet_outside_the_cli_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _emitted(False, monkeypatch) == [ODFV, "old API", "something else"]
