"""A fast path to E.164 for the common shapes of phone numbers, with phonenumbers as the referee.

`phonenumbers.parse` + `is_valid_number` cost ~25 µs a number, which dominates a million-row import.
Most inputs are plain digits (national, or international with `+`): for those we apply the same
metadata and the same steps (country code, IDD prefix, national prefix or carrier code stripping,
the general and per-type number patterns) with a few precompiled regexes (~2 µs). Anything unusual
(letters, extensions, IDD prefixes, prefix rewrites, no match) goes to phonenumbers itself, so the
fast path never accepts a number phonenumbers rejects (tests compare them in every region).
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
        self.pattern: str | None = getattr(desc, "national_number_pattern", None) or None
        lengths = getattr(desc, "possible_length", None) or ()
        self.lengths = frozenset(n for n in lengths if n > 0) or fallback_lengths


class _Region:
    __slots__ = ("by_length", "country_code", "general", "idd", "local_lengths", "max_length", "possible_lengths",
                 "prefix_for_parsing", "transforms")

    def __init__(self, region: str) -> None:
        meta = PhoneMetadata.metadata_for_region(region)
        general_lengths = frozenset(n for n in (meta.general_desc.possible_length or ()) if n > 0)
        self.country_code = str(meta.country_code)
        general = _Desc(meta.general_desc, general_lengths)
        types = [_Desc(getattr(meta, t), general_lengths) for t in _TYPES
                 if getattr(meta, t) is not None and getattr(meta, t).national_number_pattern]
        # A valid number matches the general pattern and one type's pattern, each for its length. One regex
        # per length says both (a lookahead for the general one, an alternation of the types): ~3x faster.
        self.by_length: dict[int, re.Pattern[str]] = {}
        if general.pattern:
            for n in general.lengths:
                alternatives = "|".join(f"(?:{t.pattern})" for t in types if n in t.lengths)
                if alternatives:
                    self.by_length[n] = re.compile(f"(?=(?:{general.pattern})\\Z)(?:{alternatives})")
        # What phonenumbers needs to strip a national prefix or carrier code (see _national).
        self.general = re.compile(general.pattern) if general.pattern else None
        self.possible_lengths = general_lengths
        self.max_length = max(general_lengths, default=0)
        self.local_lengths = frozenset(meta.general_desc.possible_length_local_only or ())
        self.prefix_for_parsing = re.compile(meta.national_prefix_for_parsing) \
            if meta.national_prefix_for_parsing else None
        self.transforms = bool(meta.national_prefix_transform_rule)
        self.idd = re.compile(meta.international_prefix) if meta.international_prefix else None

    def valid(self, nsn: str) -> bool:
        pattern = self.by_length.get(len(nsn))
        return pattern is not None and pattern.fullmatch(nsn) is not None

    def national(self, number: str) -> str | None:
        """The national significant number as phonenumbers.parse makes it: a national prefix or carrier code
        (national_prefix_for_parsing) is stripped when what remains is viable and of a possible length.
        None when phonenumbers would rewrite the number (a transform rule): then it must decide."""
        match = self.prefix_for_parsing.match(number) if self.prefix_for_parsing else None
        if match is None:
            return number
        if self.transforms and match.groups() and match.groups()[-1] is not None:
            return None
        stripped = number[match.end():]
        if self._viable(number) and not self._viable(stripped):
            return number
        length = len(stripped)
        possible = length not in self.local_lengths and (length in self.possible_lengths or length > self.max_length)
        return stripped if possible else number

    def dialled_abroad(self, number: str) -> bool:
        """Starts with the region's international (IDD) prefix, as phonenumbers reads it: "00 49 ..." in DE."""
        match = self.idd.match(number) if self.idd else None
        return match is not None and number[match.end():match.end() + 1] != "0"

    def _viable(self, number: str) -> bool:
        return self.general is not None and self.general.fullmatch(number) is not None


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
                main = _region(regions[0])  # whose prefixes phonenumbers strips after the country code
                nsn = main.national(digits[1 + size:]) if main is not None else None
                if nsn is None:
                    return None
                for name in regions:
                    meta = _region(name)
                    if meta is not None and meta.valid(nsn):
                        return f"+{code}{nsn}"
                return None
        return None
    meta = _region(region.upper()) if region else None
    if meta is None or meta.dialled_abroad(digits):
        return None
    nsn = meta.national(digits)
    if nsn is None or not meta.valid(nsn):
        return None
    return f"+{meta.country_code}{nsn}"
