"""``ledger export-audit`` and ``ledger verify-bundle`` on an embedded store with a realistic history.

The reference program's rules on a test clock: three members, purchases, a redemption, a partial refund, an
adjustment, and the clock moved past the lots' expiry. The bundle verifies; one byte of an event payload
altered is caught by the digests, and with the manifest's digest recomputed by the one who altered it, by the
chain itself, named with the member and the position; an altered balance or journal is caught by the
recomputation; an altered manifest fails the signature.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, build, reference_document
from ledger.domain import commands as cmd
from ledger.entrypoints import cli
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "sprout"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'ledger.db'}"
    app = build(Settings(store_url=url, reference_program=False), ManualClock(START)).app
    try:
        app.create_program(P, "Little Sprout", reference_document(), "test", START, "create")
        for m in ("alice", "bob", "carol"):
            app.enroll(P, m, [("card_number", f"C-{m}")], None, f"enroll-{m}")

        def sale(member: str, order: str, fen: int, key: str) -> None:
            line = OrderLine("l1", "SKU-TOY", "toys", 1, fen)
            app.execute(cmd.Envelope(P, cmd.RecordPurchase(member, order, (line,), fen), key))

        sale("alice", "A1", 300_00, "s1")
        sale("bob", "B1", 200_00, "s2")
        app.execute(cmd.Envelope(P, cmd.AdjustPoints("carol", 500, "GOODWILL", "opening", "op1"), "a1"))
        app.advance_clock(P, START + timedelta(days=8), "t1")
        app.execute(cmd.Envelope(P, cmd.HoldPoints("alice", "H1", "AH1", 100, 100_000_00), "h1"))
        app.execute(cmd.Envelope(P, cmd.CommitHold("alice", "H1", None), "h1c"))
        app.execute(
            cmd.Envelope(P, cmd.RefundPurchase("bob", "B1", "R1", (cmd.RefundLine("l1", 50_00),)), "r1")
        )
        # a household transfer: folded, booked (transferred_out / transferred_in) and verified like the rest
        app.execute(cmd.Envelope(P, cmd.CreateHousehold("alice"), "hh1"))
        app.execute(cmd.Envelope(P, cmd.JoinHousehold("carol", "alice"), "hh2"))
        app.execute(cmd.Envelope(P, cmd.TransferPoints("carol", "alice", "T1", 200), "hh3"))
        app.advance_clock(P, datetime(2027, 5, 2, 2, 0, tzinfo=UTC), "t2")  # past every lot's expiry
        sale("bob", "B2", 80_00, "s3")
    finally:
        app.close()
    return url


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def ledger(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def bundle(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "bundle"
    code, text = ledger(
        capsys, "--store", store, "export-audit", "--program", P, "--from", "2027-04-01", str(out)
    )
    assert code == 0, text
    return out


def rewrite_digest(root: Path, name: str) -> None:
    """What someone who alters a file and wants the digests to agree does to the manifest."""
    manifest = json.loads((root / "manifest.json").read_text())
    data = (root / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def member_file(root: Path, member: str) -> str:
    manifest = json.loads((root / "manifest.json").read_text())
    return str(next(m["file"] for m in manifest["members"] if m["member_id"] == member))


def test_the_bundle_verifies_alone_and_holds_the_period(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["counts"]["members"] == 3 and manifest["policy_versions_referenced"] == [1]
    assert set(manifest["files"]) == {"program.jsonl", "balances.json", "liability.json", "journal.csv",
                                      "policies/version-1.json", *(m["file"] for m in manifest["members"])}  # fmt: skip
    liability = json.loads((bundle / "liability.json").read_text())
    # From 1 April 2027: the lots of March 2026 expire at its first instant (the end of March), so in the period;
    # bob's new sale is in it too.
    totals = liability["journal_totals"]
    assert totals["issued"] == {"points": 80, "amount_fen": 80}
    assert totals["expired"] == {"points": 200 + 150 + 500, "amount_fen": 850}
    assert liability["opening"]["total"] == 850 and liability["closing"]["total"] == 850 + 80 - 850
    # Run as an auditor would: a fresh process, no store given.
    done = subprocess.run([sys.executable, "-m", "ledger.entrypoints.cli", "verify-bundle", str(bundle)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bundle verified" in done.stdout and "hash chains intact: the program and 3 members" in done.stdout


def test_a_whole_history_bundle_books_the_refund_and_the_expiry(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all"
    code, text = ledger(capsys, "--store", store, "export-audit", "--program", P, "--member", "bob",
                        "--member", "alice", str(out))  # fmt: skip
    assert code == 0, text
    totals = json.loads((out / "liability.json").read_text())["journal_totals"]
    assert totals["issued"]["points"] == 300 + 200 + 80 and totals["redeemed"]["points"] == 100
    # alice's own 200 left, bob's 150, and the 200 alice received from carol, expiring with carol's lot
    assert totals["clawed_back"]["points"] == 50 and totals["expired"]["points"] == 200 + 150 + 200
    # carol, who gave them, is not in this bundle
    assert totals["transferred_in"]["points"] == 200 and totals["transferred_out"]["points"] == 0
    assert ledger(capsys, "verify-bundle", str(out))[0] == 0


def test_one_altered_payload_byte_is_caught_by_the_digest(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = member_file(bundle, "bob")
    path = bundle / name
    path.write_text(path.read_text().replace('\\"points\\":200', '\\"points\\":900', 1))
    code, text = ledger(capsys, "verify-bundle", str(bundle))
    assert code == 1
    assert f"FAIL: file {name}: SHA-256 differs" in text


def test_with_the_digest_recomputed_the_chain_names_the_member_and_position(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = member_file(bundle, "bob")
    path = bundle / name
    lines = path.read_text().splitlines(keepends=True)
    purchase = json.loads(lines[1])
    assert purchase["type"] == "PurchaseRecorded" and '"points":200' in purchase["payload"]
    lines[1] = lines[1].replace('\\"points\\":200', '\\"points\\":900', 1)
    path.write_text("".join(lines))
    rewrite_digest(bundle, name)
    code, text = ledger(capsys, "verify-bundle", str(bundle))
    assert code == 1
    assert f"FAIL: chain broken: member bob version 2 (position {purchase['position']})" in text
    assert "hash mismatch" in text and "member alice" not in text


def test_an_altered_balance_or_journal_is_caught_by_the_recomputation(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    balances = json.loads((bundle / "balances.json").read_text())
    balances["carol"]["active"] += 1
    (bundle / "balances.json").write_text(json.dumps(balances))
    rewrite_digest(bundle, "balances.json")
    code, text = ledger(capsys, "verify-bundle", str(bundle))
    assert code == 1 and "FAIL: balance of member carol differs from what the events give" in text
    journal = (other / "journal.csv").read_text()
    (other / "journal.csv").write_text(journal.replace(",80,80,", ",79,79,", 1))
    rewrite_digest(other, "journal.csv")
    code, text = ledger(capsys, "verify-bundle", str(other))
    assert code == 1 and "FAIL: journal.csv differs from what the events give" in text


def test_a_signed_manifest_altered_fails_the_signature(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, public = tmp_path / "signing.pem", tmp_path / "signing.pub.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True, capture_output=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(public)], check=True, capture_output=True
    )
    out = tmp_path / "signed"
    code, text = ledger(
        capsys, "--store", store, "export-audit", "--program", P, "--sign-key", str(key), str(out)
    )
    assert code == 0, text
    code, text = ledger(capsys, "verify-bundle", "--public-key", str(public), str(out))
    assert code == 0, text
    assert "ok: the manifest's signature is valid" in text
    manifest = (out / "manifest.json").read_text()
    (out / "manifest.json").write_text(manifest.replace('"members": 3', '"members": 2', 1))
    code, text = ledger(capsys, "verify-bundle", "--public-key", str(public), str(out))
    assert code == 1 and "FAIL: signature invalid" in text
    code, text = ledger(capsys, "verify-bundle", str(out))  # without the key the count still gives it away
    assert code == 1


def test_a_manifest_altered_into_nonsense_is_a_finding(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (bundle / "manifest.json").write_text('{"format": "loyalty-ledger-audit-bundle", "format_version": 1}')
    code, text = ledger(capsys, "verify-bundle", str(bundle))
    assert code == 1 and "FAIL: the bundle cannot be read: KeyError" in text
    (bundle / "manifest.json").unlink()
    code, text = ledger(capsys, "verify-bundle", str(bundle))
    assert code == 1 and "FAIL: no manifest" in text


def test_the_read_models_rebuilt_after_a_household_transfer_verify(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = ledger(capsys, "--store", store, "rebuild-projections", "--program", P)
    assert code == 0, text
    for member in ("alice", "carol"):
        code, text = ledger(capsys, "--store", store, "verify", "--program", P, "--member", member)
        assert code == 0, text
