"""Key ring: sealing round trips, binding, rotation, tampering, parsing, keyed hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from murmur_cache.sealing import KeyRing, SealError

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(32, 64))
SECRET = b"s" * 32
BOUND = b"murmur:post:abc"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing({1: KEY_1}, SECRET)


@pytest.mark.parametrize("plaintext", [b"", b"x", b"hello timeline", bytes(100_000)])
def test_round_trip(ring: KeyRing, plaintext: bytes) -> None:
    sealed = ring.seal(plaintext, bound_to=BOUND)
    assert len(sealed) == 2 + 12 + len(plaintext) + 16
    assert ring.open(sealed, bound_to=BOUND) == plaintext


def test_plaintext_does_not_appear_in_the_sealed_value(ring: KeyRing) -> None:
    plaintext = b"post ids 0190f3a1-7c2e, 0190f3a1-7c2f"
    sealed = ring.seal(plaintext, bound_to=BOUND)
    assert plaintext[:8] not in sealed


def test_every_byte_value_survives(ring: KeyRing) -> None:
    plaintext = bytes(range(256)) * 2
    assert ring.open(ring.seal(plaintext, bound_to=BOUND), bound_to=BOUND) == plaintext


def test_format_is_version_nonce_ciphertext_tag(ring: KeyRing) -> None:
    sealed = ring.seal(b"abc", bound_to=BOUND)
    assert sealed[:2] == b"\x00\x01"
    assert len(sealed) == 2 + 12 + 3 + 16


def test_nonces_differ_between_seals(ring: KeyRing) -> None:
    first = ring.seal(b"same", bound_to=BOUND)
    second = ring.seal(b"same", bound_to=BOUND)
    assert first[2:14] != second[2:14]
    assert first != second


def test_rotation_opens_old_values_and_seals_with_the_newest() -> None:
    old_ring = KeyRing({1: KEY_1}, SECRET)
    old_value = old_ring.seal(b"before rotation", bound_to=BOUND)

    rotated = KeyRing({1: KEY_1, 2: KEY_2}, SECRET)
    assert rotated.current_version == 2
    assert rotated.open(old_value, bound_to=BOUND) == b"before rotation"
    new_value = rotated.seal(b"after rotation", bound_to=BOUND)
    assert new_value[:2] == b"\x00\x02"

    retired = KeyRing({2: KEY_2}, SECRET)
    assert retired.open(new_value, bound_to=BOUND) == b"after rotation"
    with pytest.raises(SealError, match="version 1"):
        retired.open(old_value, bound_to=BOUND)


def test_current_version_is_the_highest_whatever_the_order() -> None:
    assert KeyRing({7: KEY_1, 3: KEY_2}, SECRET).current_version == 7


def test_same_version_with_another_key_cannot_open(ring: KeyRing) -> None:
    sealed = ring.seal(b"data", bound_to=BOUND)
    with pytest.raises(SealError):
        KeyRing({1: KEY_2}, SECRET).open(sealed, bound_to=BOUND)


def test_tampering_with_any_byte_is_detected(ring: KeyRing) -> None:
    sealed = ring.seal(b"some post ids", bound_to=BOUND)
    for index in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[index] ^= 0x01
        with pytest.raises(SealError):
            ring.open(bytes(tampered), bound_to=BOUND)


def test_value_copied_under_another_key_fails(ring: KeyRing) -> None:
    sealed = ring.seal(b"alice's feed", bound_to=b"feed:alice")
    with pytest.raises(SealError, match="bound to another key"):
        ring.open(sealed, bound_to=b"feed:bob")


@pytest.mark.parametrize("length", [0, 1, 2, 14, 29])
def test_truncated_values_fail(ring: KeyRing, length: int) -> None:
    sealed = ring.seal(b"", bound_to=BOUND)
    assert len(sealed) == 30
    with pytest.raises(SealError):
        ring.open(sealed[:length], bound_to=BOUND)


def test_truncated_ciphertext_fails(ring: KeyRing) -> None:
    sealed = ring.seal(b"a longer body", bound_to=BOUND)
    with pytest.raises(SealError):
        ring.open(sealed[:-1], bound_to=BOUND)


def test_seal_many_and_open_many_round_trip(ring: KeyRing) -> None:
    items = [(f"entry {i}".encode(), f"post:{i}".encode()) for i in range(20)]
    sealed = ring.seal_many(items)
    assert len(sealed) == 20
    opened = ring.open_many([(s, bound) for s, (_, bound) in zip(sealed, items, strict=True)])
    assert opened == [plaintext for plaintext, _ in items]


def test_open_many_misses_only_the_bad_items(ring: KeyRing) -> None:
    good_a, good_b, swapped = ring.seal_many([(b"a", b"k:a"), (b"b", b"k:b"), (b"c", b"k:c")])
    tampered = bytearray(good_b)
    tampered[-1] ^= 0xFF
    foreign = KeyRing({9: KEY_2}, SECRET).seal(b"d", bound_to=b"k:d")

    opened = ring.open_many(
        [
            (good_a, b"k:a"),
            (bytes(tampered), b"k:b"),
            (swapped, b"k:elsewhere"),
            (b"", b"k:empty"),
            (foreign, b"k:d"),
            (good_b, b"k:b"),
        ]
    )
    assert opened == [b"a", None, None, None, None, b"b"]


def test_open_many_of_nothing(ring: KeyRing) -> None:
    assert ring.open_many([]) == []
    assert ring.seal_many([]) == []


def test_parse_builds_a_working_ring() -> None:
    parsed = KeyRing.parse(f" 1:{b64(KEY_1)} , 2:{b64(KEY_2)} ", b64(SECRET))
    assert parsed.current_version == 2
    old_value = KeyRing({1: KEY_1}, SECRET).seal(b"x", bound_to=BOUND)
    assert parsed.open(old_value, bound_to=BOUND) == b"x"
    assert parsed.hashed("feed", "u1") == KeyRing({1: KEY_1}, SECRET).hashed("feed", "u1")


SECRET_LOOKING_KEY = "c2VjcmV0LWtleS1tYXRlcmlhbC1kby1ub3QtbG9n"  # 30 bytes: wrong length


@pytest.mark.parametrize(
    ("keys_setting", "hash_setting", "message"),
    [
        ("", b64(SECRET), "no sealing keys"),
        ("   ", b64(SECRET), "no sealing keys"),
        (f"1:{SECRET_LOOKING_KEY}!!", b64(SECRET), "not valid base64"),
        (f"1:{SECRET_LOOKING_KEY}", b64(SECRET), "must be 32 bytes"),
        (f"{SECRET_LOOKING_KEY}", b64(SECRET), "entry 1 is not"),
        (f"1:{b64(KEY_1)},x{SECRET_LOOKING_KEY}:{b64(KEY_2)}", b64(SECRET), "not an integer"),
        (f"1:{b64(KEY_1)},1:{SECRET_LOOKING_KEY}", b64(SECRET), "more than once"),
        (f"0:{SECRET_LOOKING_KEY}", b64(SECRET), r"1\.\.65535"),
        (f"65536:{SECRET_LOOKING_KEY}", b64(SECRET), r"1\.\.65535"),
        (f"1:{b64(KEY_1)},", b64(SECRET), "entry 2 is not"),
        (f"1:{b64(KEY_1)}", f"{SECRET_LOOKING_KEY}!", "hash secret is not valid base64"),
        (f"1:{b64(KEY_1)}", SECRET_LOOKING_KEY, "at least 32 bytes"),
        (f"1:{b64(KEY_1)}", "", "at least 32 bytes"),
    ],
)
def test_parse_errors_never_quote_key_material(
    keys_setting: str, hash_setting: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        KeyRing.parse(keys_setting, hash_setting)
    text = str(caught.value)
    for secret in (SECRET_LOOKING_KEY, b64(KEY_1), b64(KEY_2)):
        assert secret not in text
    # The decoder's own exception would carry its message into tracebacks.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


@pytest.mark.parametrize(
    ("keys", "secret", "message"),
    [
        ({}, SECRET, "at least one"),
        ({1: KEY_1[:31]}, SECRET, "must be 32 bytes, got 31"),
        ({1: KEY_1 + b"\x00"}, SECRET, "must be 32 bytes, got 33"),
        ({0: KEY_1}, SECRET, "got 0"),
        ({70_000: KEY_1}, SECRET, "got 70000"),
        ({1: KEY_1}, SECRET[:31], "hash secret must be at least 32 bytes"),
    ],
)
def test_constructor_validates(keys: dict[int, bytes], secret: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeyRing(keys, secret)


def test_repr_shows_versions_not_keys() -> None:
    text = repr(KeyRing({1: KEY_1, 2: KEY_2}, SECRET))
    assert text == "KeyRing(versions=[1, 2])"


def test_generate_setting_parses() -> None:
    setting = KeyRing.generate_setting(3)
    assert setting.startswith("3:")
    assert setting != KeyRing.generate_setting(3)
    ring = KeyRing.parse(f"{KeyRing.generate_setting()},{setting}", b64(SECRET))
    assert ring.current_version == 3
    assert ring.open(ring.seal(b"ok", bound_to=BOUND), bound_to=BOUND) == b"ok"
    with pytest.raises(ValueError, match=r"1\.\.65535"):
        KeyRing.generate_setting(0)


def test_hashed_is_deterministic_and_keyed(ring: KeyRing) -> None:
    digest = ring.hashed("feed", "user-42")
    assert digest == ring.hashed("feed", "user-42")
    assert len(digest) == 22
    assert set(digest) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert digest != ring.hashed("post", "user-42")
    assert digest != ring.hashed("feed", "user-43")
    assert digest != KeyRing({1: KEY_1}, b"t" * 32).hashed("feed", "user-42")
    # Rotating sealing keys must not move every Redis key.
    assert digest == KeyRing({2: KEY_2}, SECRET).hashed("feed", "user-42")


def test_hashed_matches_the_documented_construction(ring: KeyRing) -> None:
    mac = hmac.new(SECRET, b"feed\x00user-42", hashlib.sha256).digest()
    expected = base64.urlsafe_b64encode(mac).decode().rstrip("=")[:22]
    assert ring.hashed("feed", "user-42") == expected


@pytest.mark.parametrize("value", ["user-42", "alice@example.org", "x" * 200, "0190f3a1-7c2e"])
def test_hashed_never_contains_the_value(ring: KeyRing, value: str) -> None:
    digest = ring.hashed("feed", value)
    assert len(digest) == 22
    assert value[:6] not in digest


def test_hashed_separator_is_unambiguous(ring: KeyRing) -> None:
    with pytest.raises(ValueError, match="NUL"):
        ring.hashed("a\x00b", "c")
    assert ring.hashed("a", "b\x00c") != ring.hashed("ab", "c")
