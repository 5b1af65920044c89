"""The phone fast path agrees with phonenumbers on every number it accepts."""
from __future__ import annotations

import random

import phonenumbers
import pytest

from models.identities import InvalidIdentity, normalize_phone
from models.phones import fast_e164

REGIONS = ["CN", "US", "GB", "DE", "IN", "BR", "FR", "IT", "JP", "ID", "MX", "AU", "SG", "AE", "NG", "RU"]


def reference(raw: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) \
        if phonenumbers.is_valid_number(number) else None


def samples(n: int) -> list[tuple[str, str]]:
    rng = random.Random(7)
    out = []
    for _ in range(n):
        region = rng.choice(REGIONS)
        kind = rng.choice([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE])
        example = phonenumbers.example_number_for_type(region, kind)
        nsn = str(example.national_number)
        nsn = nsn[:-4] + f"{rng.randint(0, 9999):04d}" if rng.random() < 0.8 else nsn[:-3] + str(rng.randint(0, 99999))
        international = f"+{example.country_code}{nsn}"
        try:
            national = phonenumbers.format_number(phonenumbers.parse(international, None),
                                                  phonenumbers.PhoneNumberFormat.NATIONAL)
        except phonenumbers.NumberParseException:
            national = nsn
        out.append((rng.choice([international, f"+{example.country_code} {nsn[:3]} {nsn[3:]}", national, nsn]), region))
    return out


def test_fast_path_never_disagrees_with_phonenumbers() -> None:
    accepted = 0
    for raw, region in samples(5000):
        fast = fast_e164(raw, region)
        if fast is not None:
            accepted += 1
            assert fast == reference(raw, region), (raw, region)
    assert accepted > 3500  # it really is the common path


@pytest.mark.parametrize(("raw", "region", "e164"), [
    ("130 1111 2222", "CN", "+8613011112222"), ("+86 130-1111-2222", None, "+8613011112222"),
    ("(415) 555-2671", "US", "+14155552671"), ("020 7946 0958", "GB", "+442079460958"),
    ("+44 (0)20 7946 0958", None, "+442079460958"), ("0049 30 123456", "DE", "+4930123456"),
])
def test_normalize_phone_handles_national_international_and_idd_forms(raw: str, region: str | None, e164: str) -> None:
    assert normalize_phone(raw, region) == e164


def test_invalid_numbers_are_rejected_with_invalid_phone() -> None:
    for raw, region in (("12", "CN"), ("+999 123", None), ("hello", "US"), ("130 1111 2222", None)):
        with pytest.raises(InvalidIdentity) as caught:
            normalize_phone(raw, region)
        assert caught.value.code == "INVALID_PHONE"


def test_fast_path_agrees_with_phonenumbers_in_every_region() -> None:
    # The per-length patterns are assembled from each region's metadata: check them all, not only the usual ones.
    rng = random.Random(11)
    kinds = [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
             phonenumbers.PhoneNumberType.TOLL_FREE]
    accepted = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in kinds:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            nsn = str(example.national_number)
            for _ in range(6):
                digits = "".join(d if rng.random() < 0.8 else str(rng.randint(0, 9)) for d in nsn)
                for raw in (digits, f"0{digits}", f"+{example.country_code}{digits}"):
                    fast = fast_e164(raw, region)
                    if fast is not None:
                        accepted += 1
                        assert fast == reference(raw, region), (raw, region)
    assert accepted > 1000
