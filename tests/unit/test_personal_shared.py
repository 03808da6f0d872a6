"""The embedded personal-data store shared by several processes (``ledger serve --processes N``)."""

from __future__ import annotations

from pathlib import Path

from ledger.adapters.sqlite.personal import PersonalDataStore
from ledger.application.personal import PersonalProfile

PROFILE = PersonalProfile(birth_month=5, consent=True)


def test_a_shared_store_sees_profiles_saved_and_erased_elsewhere(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.personal.db")
    mine, theirs = PersonalDataStore(path, shared=True), PersonalDataStore(path, shared=True)
    try:
        assert mine.load("p", "m1") is None  # a miss, remembered only until another connection commits
        assert mine.load("p", "m1") is None
        theirs.save("p", "m1", PROFILE)  # enrolled through the other process: saved after the enrolment
        assert mine.load("p", "m1") == PROFILE
        assert mine.load("p", "m1") == PROFILE  # from the cache
        theirs.erase("p", "m1")
        assert mine.load("p", "m1") is None
        mine.save("p", "m2", PROFILE)
        assert theirs.load("p", "m2") == PROFILE
    finally:
        mine.close()
        theirs.close()


def test_an_unshared_store_remembers_misses(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.personal.db")
    mine, theirs = PersonalDataStore(path), PersonalDataStore(path)
    try:
        assert mine.load("p", "m1") is None
        theirs.save("p", "m1", PROFILE)
        assert mine.load("p", "m1") is None  # one process owns the file: its cache is the truth
        assert theirs.load("p", "m1") == PROFILE
    finally:
        mine.close()
        theirs.close()
