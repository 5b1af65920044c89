"""A fast path to E.164 for the common shapes of phone numbers, with phonenumbers as the referee.

`phonenumbers.parse` + `is_valid_number` cost ~25 µs a number, which dominates a million-row import.
Most inputs are plain digits (national, or international with `+`): for those we apply the same
metadata (country code, national prefix, the general and per-type number patterns) with a few
precompiled regexes (~2 µs). Anything unusual (letters, extensions, IDD prefixes, no match) goes
to phonenumbers itself, so the fast path never accepts a number phonenumbers rejects.
"""
from __future__ import annotations

import re
from functools import lru_cache

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

_SEPARATORS = str.maketrans("", "", " -().\u00a0\t/")
_DIGITS = re.compile(r"\+?\d{4,17}")
_TYPES = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "voip", "personal_number", "pager",
          "uan", "voicemail")


class _Desc:
    __slots__ = ("lengths", "pattern")

    def __init__(self, desc: object, fallback_lengths: frozenset[int]) -> None:
        pattern = getattr(desc, "national_number_pattern", None)
        self.pattern = re.compile(pattern) if pattern else None
        lengths = getattr(desc, "possible_length", None) or ()
        self.lengths = frozenset(n for n in lengths if n > 0) or fallback_lengths

    def matches(self, nsn: str) -> bool:
        return self.pattern is not None and len(nsn) in self.lengths and self.pattern.fullmatch(nsn) is not None


class _Region:
    __slots__ = ("country_code", "general", "prefix", "types")

    def __init__(self, region: str) -> None:
        meta = PhoneMetadata.metadata_for_region(region)
        general_lengths = frozenset(n for n in (meta.general_desc.possible_length or ()) if n > 0)
        self.country_code = str(meta.country_code)
        self.general = _Desc(meta.general_desc, general_lengths)
        self.types = [_Desc(getattr(meta, t), general_lengths) for t in _TYPES
                      if getattr(meta, t) is not None and getattr(meta, t).national_number_pattern]
        # Only a plain national prefix (e.g. "0") is handled here; rule-based ones go to phonenumbers.
        simple = meta.national_prefix and meta.national_prefix.isdigit() and meta.national_prefix_transform_rule is None
        self.prefix = meta.national_prefix if simple else None

    def valid(self, nsn: str) -> bool:
        return self.general.matches(nsn) and any(t.matches(nsn) for t in self.types)


@lru_cache(maxsize=None)
def _region(region: str) -> _Region | None:
    try:
        return _Region(region)
    except Exception:  # noqa: BLE001 - unknown region: let phonenumbers give the error
        return None


def fast_e164(raw: str, region: str | None) -> str | None:
    """E.164 of `raw` when it is a plainly valid number, else None (then ask phonenumbers)."""
    digits = raw.translate(_SEPARATORS)
    if not _DIGITS.fullmatch(digits):
        return None
    if digits[0] == "+":
        for size in (1, 2, 3):
            code = digits[1:1 + size]
            regions = COUNTRY_CODE_TO_REGION_CODE.get(int(code))
            if regions:
                nsn = digits[1 + size:]
                for name in regions:
                    meta = _region(name)
                    if meta is not None and meta.valid(nsn):
                        return f"+{code}{nsn}"
                return None
        return None
    meta = _region(region.upper()) if region else None
    if meta is None:
        return None
    if meta.prefix and digits.startswith(meta.prefix) and meta.valid(digits[len(meta.prefix):]):
        return f"+{meta.country_code}{digits[len(meta.prefix):]}"
    if meta.valid(digits):
        return f"+{meta.country_code}{digits}"
    return None
