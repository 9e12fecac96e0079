"""The demo's identifiers and mailboxes: person, household and source keys handed out once per
data set, and the set of emails already given to someone.

One `DemoKeys` serves a whole data set, so a data set written in batches (stream.py) never hands
out a key twice. Padded ids (T0000001, H0000001, P0000001, M0100001) are 7 digits unless the data
set's largest possible value needs more; then every id of that kind in the set has the wider,
same width (a 5M-person set has P00000001: up to two till records a person).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


SUBSCRIBER_KEY_BITS = 40


def id_width(largest: int) -> int:
    """Digits of a padded id whose largest possible number is `largest` (at least 7)."""
    return max(7, len(str(largest)))


class DemoKeys:
    """Running keys of one data set of `people` people: persons, households and the four
    sources' primary keys (pos P{n}, ecommerce 100000 + 7n + r, loyalty M{n + 100001}, email
    subscribers SK + 40 random bits, redrawn on a clash)."""

    def __init__(self, people: int):
        self.person_width = id_width(people)
        self.pos_width = id_width(2 * people)  # a walk-in entered twice
        self.loyalty_width = id_width(people + 100000)
        self.persons = self.households = self.pos = self.ecommerce = self.loyalty = 0
        self._subscriber_keys: set[str] = set()

    def person_id(self) -> str:
        self.persons += 1
        return f"T{self.persons:0{self.person_width}d}"

    def household_id(self) -> str:
        self.households += 1
        return f"H{self.households:0{self.person_width}d}"

    def pos_key(self) -> str:
        self.pos += 1
        return f"P{self.pos:0{self.pos_width}d}"

    def ecommerce_key(self, rng: random.Random) -> str:
        pk = str(100000 + self.ecommerce * 7 + rng.randint(0, 6))
        self.ecommerce += 1
        return pk

    def loyalty_key(self) -> str:
        self.loyalty += 1
        return f"M{self.loyalty + 100000:0{self.loyalty_width}d}"

    def subscriber_key(self, rng: random.Random) -> str:
        pk = f"SK{rng.getrandbits(SUBSCRIBER_KEY_BITS):010x}"
        while pk in self._subscriber_keys:
            pk = f"SK{rng.getrandbits(SUBSCRIBER_KEY_BITS):010x}"
        self._subscriber_keys.add(pk)
        return pk


class StreamedKeys(DemoKeys):
    """DemoKeys for a data set written in batches: a subscriber key is the n-th subscriber's
    number through a keyed 40-bit permutation (a Feistel network), so keys look random, never
    clash, and no set of every key handed out is kept."""

    def __init__(self, people: int, secret: int):
        super().__init__(people)
        self.secret = secret
        self.subscribers = 0

    def subscriber_key(self, rng: random.Random) -> str:
        if self.subscribers >= 1 << SUBSCRIBER_KEY_BITS:
            raise ValueError(f"more than 2**{SUBSCRIBER_KEY_BITS} email subscribers")
        pk = f"SK{scramble_40(self.subscribers, self.secret):010x}"
        self.subscribers += 1
        return pk


def scramble_40(n: int, secret: int) -> int:
    """A bijection of [0, 2**40) chosen by `secret`: four Feistel rounds over 20-bit halves."""
    left, right = n >> 20, n & 0xFFFFF
    for round_no in range(4):
        digest = hashlib.blake2b(f"{secret}:{round_no}:{right}".encode(), digest_size=4).digest()
        left, right = right, left ^ (int.from_bytes(digest, "big") & 0xFFFFF)
    return (left << 20) | right


class TakenEmails:
    """The emails already given to someone, in bounded memory: the current batch's addresses as
    strings, earlier batches' as a sorted array of 64-bit digests (8 bytes an address instead of
    ~110 for a str in a set). A digest clash with an earlier address only makes `_claim` pick
    another free address, so every address handed out stays unique; blake2b keeps it seeded."""

    def __init__(self):
        self._batch: set[str] = set()
        self._sealed = np.empty(0, dtype=np.uint64)

    @staticmethod
    def _digest(address: str) -> int:
        return int.from_bytes(hashlib.blake2b(address.encode(), digest_size=8).digest(), "big")

    def __contains__(self, address: str) -> bool:
        if address in self._batch:
            return True
        if not len(self._sealed):
            return False
        digest = np.uint64(self._digest(address))
        at = int(np.searchsorted(self._sealed, digest))
        return at < len(self._sealed) and self._sealed[at] == digest

    def add(self, address: str) -> None:
        self._batch.add(address)

    def seal(self) -> None:
        """End of a batch: its addresses join the digests (sorted, for the binary search)."""
        digests = np.fromiter((self._digest(a) for a in self._batch), dtype=np.uint64,
                              count=len(self._batch))
        self._sealed = np.union1d(self._sealed, digests)
        self._batch = set()
