"""The scenario report: plain text, HTML structure and escaping, amounts, the catalog table, and
the page as headless chromium renders it (skipped without chromium unless PERUN_REQUIRE_CHROMIUM=1)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from perun.scenario import record as r
from perun.scenario.report import (
    format_amount,
    format_gas,
    html_report,
    screenshot,
    summary_table,
    text_summary,
    write_report,
)

ETH = 10**18
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


def recording(name: str = "stale-close", *, fail: bool = True) -> r.Recording:
    """A dispute where bob closes with a stale state and alice's watcher answers."""
    rec = r.Recording(name, "Bob closes with a stale state", "Bob registers v1 after paying; alice refutes.",
                      f"scenarios/{name}.yaml", "embedded", parties={"alice": ALICE, "bob": BOB})
    rec.channels["ab"] = r.Channel("ab", "0x" + "cd" * 32, "alice", "bob", "ETH", (10 * ETH, 5 * ETH))
    rec.entries += [
        r.Step(1, 0.0, 12, 1, "open ab: alice 10 ETH, bob 5 ETH"),
        r.Message(2, 0.011, 12, "alice", "bob", "ProposeChannel", "deposits 10 ETH / 5 ETH, Δ 600 s"),
        r.Transaction(3, 0.052, 12, "alice", "create", 121_345, 2, 1_700_000_000, ("Initialising",), "0x01"),
        r.Transaction(4, 0.101, 12, "bob", "confirm", 61_022, 3, 1_700_000_012, ("Initialised",), "0x02"),
        r.Step(5, 0.120, 12, 1, "open ab: alice 10 ETH, bob 5 ETH", "ok"),
        r.Step(6, 0.121, 14, 2, "alice pays 1 ETH on ab"),
        r.Message(7, 0.140, 14, "alice", "bob", "Update", "ab v2: 9 ETH / 6 ETH <script>alert(1)</script>"),
        r.Message(8, 0.151, 14, "bob", "alice", "UpdateAck", "ab v2 countersigned", "dropped"),
        r.Message(9, 0.170, 14, "bob", "alice", "Update", "ab v3: 19 ETH / -4 ETH", "forged"),
        r.Message(10, 0.181, 14, "alice", "bob", "Error", "INVALID_SIGNATURE: not bob's signature"),
        r.Step(11, 0.190, 14, 2, "alice pays 1 ETH on ab", "ok"),
        r.Step(12, 0.200, 18, 3, "alice goes offline"),
        r.Note(13, 0.201, 18, "alice", "node killed"),
        r.Step(14, 0.210, 18, 3, "alice goes offline", "ok"),
        r.Step(15, 0.211, 20, 4, "bob closes ab with v1"),
        r.Transaction(16, 0.260, 20, "bob", "close", 41_046, 4, 1_700_000_024, ("CloseRegistered(version=1)",),
                      "0x03"),
        r.Note(17, 0.270, 20, None, "time +601 s"),
        r.Transaction(18, 0.300, 20, "alice", "close", 38_911, 5, 1_700_000_625,
                      ("CloseRegistered(version=2)", "Finalized(version=2)"), "0x04"),
        r.Step(19, 0.310, 20, 4, "bob closes ab with v1", "failed" if fail else "ok",
               "StaleVersion: v1 < v2" if fail else ""),
    ]
    rec.samples += [
        r.Sample(5, "after step 1", {"alice": 90 * ETH, "bob": 95 * ETH}, {"ab": {"alice": 10 * ETH, "bob": 5 * ETH}}),
        r.Sample(11, "after step 2", {"alice": 90 * ETH, "bob": 95 * ETH}, {"ab": {"alice": 9 * ETH, "bob": 6 * ETH}}),
        r.Sample(19, "after step 4", {"alice": 99 * ETH, "bob": 101 * ETH}, {"ab": {"alice": 9 * ETH, "bob": 6 * ETH}}),
    ]
    rec.verdicts += [
        r.Verdict(23, "payout of ab: alice", "9 ETH", "9 ETH", True),
        r.Verdict(24, "payout of ab: bob", "6 ETH", "6 ETH", True),
        r.Verdict(25, "wallet of bob", "102 ETH", "101 ETH", not fail),
    ]
    rec.duration = 0.321
    return rec


# ------------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(("wei", "text"), [
    (0, "0 ETH"),
    (1, "0.000000000000000001 ETH"),
    (10**9, "0.000000001 ETH"),
    (10**18, "1 ETH"),
    (9 * 10**18, "9 ETH"),
    (1_234_567_890_123_456_789, "1.234567890123456789 ETH"),
    (-15 * 10**17, "-1.5 ETH"),
])
def test_amounts_are_exact(wei: int, text: str) -> None:
    assert format_amount(wei) == text


def test_rounded_amounts_are_marked() -> None:
    assert format_amount(1_234_567_890_123_456_789, places=4) == "≈1.2346 ETH"
    assert format_amount(15 * 10**17, places=4) == "1.5 ETH"
    assert format_amount(1, places=4) == "≈0 ETH"
    assert format_amount(1_234_567, "TKN") == "1,234,567 TKN"
    assert format_gas(1_234_567) == "1,234,567"


# ------------------------------------------------------------------------------- text


def test_text_summary() -> None:
    rec = recording()
    text = text_summary(rec)
    lines = text.splitlines()
    assert lines[0] == rec.title
    assert "Verdict: FAIL  (1 of 3 assertions failed)" in lines
    assert "  line 23: payout of ab: alice — expected 9 ETH, found 9 ETH  ok" in lines
    assert "  line 24: payout of ab: bob — expected 6 ETH, found 6 ETH  ok" in lines
    assert "  line 25: wallet of bob — expected 102 ETH, found 101 ETH  FAIL" in lines
    assert any(line.endswith("UpdateAck ab v2 countersigned  [DROPPED]") and "bob -> alice" in line for line in lines)
    assert any("[FORGED]" in line for line in lines)
    assert any("chain" in line and "bob close  gas 41,046  [CloseRegistered(version=1)]" in line for line in lines)
    assert any("== step 4 failed: StaleVersion: v1 < v2" in line for line in lines)
    total = next(line for line in lines if line.strip().startswith("total"))
    assert total.split()[1] == format_gas(sum(tx.gas_used for tx in rec.transactions)) == "262,324"
    assert "  wallets  alice 99 ETH, bob 101 ETH" in lines
    assert "  ab       alice 9 ETH, bob 6 ETH" in lines
    timeline = lines[lines.index("Timeline") + 1: lines.index("Gas") - 1]
    assert len(timeline) == len(rec.entries)


def test_text_summary_of_a_passing_run_with_an_error() -> None:
    rec = recording(fail=False)
    assert "Verdict: PASS  (3 of 3 assertions hold)" in text_summary(rec)
    rec.error = "line 20: step 4 (close) failed: boom"
    text = text_summary(rec)
    assert "Verdict: FAIL  (3 of 3 assertions hold)\n  error: line 20: step 4 (close) failed: boom\n" in text


def test_summary_table() -> None:
    recs = [recording("stale-close"), recording("honest-close-with-a-long-name", fail=False)]
    lines = summary_table(recs).splitlines()
    assert lines[0].split() == ["scenario", "verdict", "transactions", "gas", "final", "balances"]
    assert lines[1].split()[:4] == ["stale-close", "FAIL", "4", "262,324"]
    assert lines[2].split()[:4] == ["honest-close-with-a-long-name", "PASS", "4", "262,324"]
    assert lines[1].endswith("alice 99 ETH, bob 101 ETH")
    assert lines[3].split() == ["total", "8", "524,648"]
    assert lines[-1] == "1 passed, 1 failed"
    # left-aligned columns start, right-aligned ones end, at the same offset in every row
    verdict, final = lines[0].index("verdict"), lines[0].index("final")
    assert [line[verdict:verdict + 4] for line in lines[1:3]] == ["FAIL", "PASS"]
    assert [line[final:final + 5] for line in lines[1:3]] == ["alice", "alice"]
    gas_end = lines[0].index("gas") + len("gas")
    assert [line[:gas_end].split()[-1] for line in lines[:4]] == ["gas", "262,324", "262,324", "524,648"]
    assert all(line[gas_end] == " " for line in lines[1:3])


# ------------------------------------------------------------------------------- HTML


class Dom(HTMLParser):
    """The elements of a page as (tag, attributes), and the text of each id'd section."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, tag: str, *classes: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and set(classes) <= set(a.get("class", "").split())]

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.elements if "id" in a}


def check_page(dom: Dom, rec: r.Recording) -> None:
    assert {"verdict", "assertions", "sequence", "balances", "gas"} <= dom.ids()
    assert len(dom.having("g", "msg")) == len(rec.messages)
    assert len(dom.having("g", "msg", "dropped")) == 1
    assert len(dom.having("g", "msg", "forged")) == 1
    assert len(dom.having("g", "tx")) == len(rec.transactions)
    assert len(dom.having("g", "note")) == sum(isinstance(e, r.Note) for e in rec.entries)
    assert len(dom.having("g", "step")) == sum(isinstance(e, r.Step) and e.outcome is None for e in rec.entries)
    assert len(dom.having("g", "step-end", "failed")) == 1
    rows = dom.having("tr", "verdict")
    assert [("pass" in a["class"].split(), "fail" in a["class"].split()) for a in rows] == \
        [(v.passed, not v.passed) for v in rec.verdicts]
    assert len(dom.having("g", "series")) == len(rec.parties)


def test_html_structure_and_escaping() -> None:
    rec = recording()
    page = html_report(rec)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert page.count('class="msg') == len(rec.messages)
    assert page.count('class="tx"') == len(rec.transactions)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    check_page(Dom(page), rec)
    assert '<section id="verdict" class="fail">' in page
    assert '<section id="verdict" class="pass">' in html_report(recording(fail=False))


def test_html_of_an_empty_run() -> None:
    rec = r.Recording("empty", "Nothing", "", "scenarios/empty.yaml", "embedded")
    rec.error = "line 3: step 1 (open) failed: <boom>"
    page = html_report(rec)
    assert {"verdict", "assertions", "sequence", "balances", "gas"} <= Dom(page).ids()
    assert "&lt;boom&gt;" in page
    assert "no transactions" in page and "no samples" in page


def test_html_of_a_token_run_with_strangers() -> None:
    rec = r.Recording("token", "Token", "", "scenarios/token.yaml", "http://127.0.0.1:8545",
                      parties={"alice": ALICE, "bob": BOB}, unit="TKN")
    rec.channels["ab"] = r.Channel("ab", "", "alice", "bob", "0x" + "99" * 20, (5, 5))
    stranger = "0x" + "ff" * 20
    rec.entries += [r.Step(1, 0.0, 3, 1, "bob closes"),  # never ends: the run stopped
                    r.Message(2, 0.1, 3, "bob", "carol", "Update", "v2", "delayed"),
                    r.Transaction(3, 0.2, 3, stranger, "finalize", 30_000, 9, 0, (), "0x05"),
                    r.Note(4, 0.3, 3, r.CHAIN, "block mined")]
    rec.samples.append(r.Sample(5, "after step 1", {"alice": 1_000, "bob": 7}, {"ab": {"alice": 5, "bob": 5}}))
    page = html_report(rec)
    dom = Dom(page)
    assert len(dom.having("g", "msg", "delayed")) == len(dom.having("g", "tx")) == len(dom.having("g", "note")) == 1
    assert dom.having("g", "step-end") == []
    assert "carol" in page and "0xffff…ffff finalize · 30,000 gas" in page
    assert ">1,000 TKN<" in page and "alice 5 TKN, bob 5 TKN" in page
    assert "Verdict: PASS  (no assertions)" in text_summary(rec)


def test_long_labels_are_clipped_with_the_full_text_in_a_title() -> None:
    rec = recording()
    long = "x" * 300
    rec.entries.append(r.Message(20, 0.4, 30, "alice", "bob", "Error", long))
    page = html_report(rec)
    assert f"<title>Error {long}</title>" in page
    assert "x" * 100 + "…" not in page and "x…" in page


def test_write_report(tmp_path: Path) -> None:
    rec = recording()
    page, text = write_report(rec, tmp_path / "out")
    assert page == tmp_path / "out" / "stale-close.html" and text == tmp_path / "out" / "stale-close.txt"
    assert page.read_text(encoding="utf-8") == html_report(rec)
    assert text.read_text(encoding="utf-8") == text_summary(rec)


# ------------------------------------------------------------------------------- in a browser


def test_page_in_chromium(chromium: str, tmp_path: Path) -> None:
    rec = recording()
    page, _ = write_report(rec, tmp_path)
    dumped = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    check_page(Dom(dumped), rec)

    png = tmp_path / "report.png"
    screenshot(page, png, width=900)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 900 and height > 1000
    assert len(data) > 10_000  # a blank page compresses to a few hundred bytes


def test_screenshot_without_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="chromium is not installed"):
        screenshot(tmp_path / "page.html", tmp_path / "page.png")


def test_a_tower_has_a_lifeline_of_its_own_marked_as_a_tower() -> None:
    tower = "0x" + "70" * 20
    rec = recording(fail=False)
    rec.towers["watchtower"] = tower
    rec.entries += [
        r.Message(20, 0.32, 30, "bob", "watchtower", "Monitor", "ab v2: 9 ETH / 6 ETH, reward 0.01 ETH"),
        r.Message(21, 0.33, 30, "watchtower", "bob", "MonitorAck", "ab v2 held"),
        r.Message(22, 0.34, 31, "watchtower", "bob", "Error", "STALE_VERSION: version 2 is not above 2"),
        r.Note(23, 0.35, 32, "watchtower", "offline"),
        r.Transaction(24, 0.36, 33, "watchtower", "refute", 76_540, 6, 1_700_000_030,
                      ("CloseRegistered(version=2)", "RewardRecorded(watchtower, 0.01 ETH)"), "0x06"),
    ]
    page = html_report(rec)
    dom = Dom(page)
    lanes = dom.having("g", "lane")
    assert len(lanes) == 4 and len(dom.having("g", "lane", "tower")) == 1  # alice, bob, the tower, the chain
    assert ">watchtower<" in page and "tower · 0x7070…7070" in page
    # Its messages and its transaction are drawn like a party's: an arrow from its lifeline to the chain.
    assert len(dom.having("g", "msg")) == len(rec.messages) and len(dom.having("g", "tx")) == len(rec.transactions)
    assert "tx 5 · block 6" in page
    lines = text_summary(rec).splitlines()
    assert "Lifelines: alice, bob, watchtower (tower), chain" in lines
    assert f"  tower watchtower {tower}: a watchtower, no party of any channel" in lines
    assert any("bob -> watchtower (tower)" in line and "Monitor ab v2" in line for line in lines)
    assert any("watchtower (tower) -> bob" in line and "STALE_VERSION" in line for line in lines)
    assert any("note watchtower (tower)" in line for line in lines)
    assert any("watchtower (tower) refute  gas 76,540" in line for line in lines)
