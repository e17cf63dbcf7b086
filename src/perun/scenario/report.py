"""Reports of scenario runs (perun.scenario.record): a self-contained HTML page (verdict, assertions,
sequence diagram, balance chart, gas table), a plain-text summary of one run, a one-line-per-run
table for a catalog, and a PNG screenshot of a page through headless chromium.

Amounts are exact integers; they are shown as exact decimals (no floats) except in the balance
section of the page, which rounds ether to 4 decimals and marks a rounded value with "≈".
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

from perun.core.amounts import WEI_PER_ETHER, ether
from perun.scenario.record import CHAIN, Entry, Message, Note, Recording, Sample, Step, Transaction, Verdict

# ------------------------------------------------------------------------------- formatting


def format_amount(value: int, unit: str = "ETH", places: int | None = None) -> str:
    """`9 ETH`, `0.000000001 ETH` (exact) or, with `places`, rounded half up and marked `≈`;
    other units as raw integers: `1,000 TKN`."""
    if unit != "ETH":
        return f"{value:,} {unit}"
    if places is None:
        return f"{ether(value)} ETH"
    step = WEI_PER_ETHER // 10**places
    rounded = (abs(value) + step // 2) // step * step * (-1 if value < 0 else 1)
    return f"{'' if rounded == value else '≈'}{ether(rounded)} ETH"


def format_gas(gas: int) -> str:
    """Gas with thousands separators: `41,046`."""
    return f"{gas:,}"


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"


def _short_address(address: str) -> str:
    return address if len(address) <= 14 else f"{address[:6]}…{address[-4:]}"


def _step_outcome(step: Step) -> str:
    if step.outcome == "expected-error":
        return f"failed as expected: {step.detail}" if step.detail else "failed as expected"
    return f"{step.outcome}: {step.detail}" if step.detail else str(step.outcome)


def _channel_unit(rec: Recording, channel: str) -> str:
    spec = rec.channels.get(channel)
    return "ETH" if spec is not None and spec.token == "ETH" else rec.unit


def _balances_text(balances: dict[str, int], unit: str, places: int | None = None) -> str:
    return ", ".join(f"{name} {format_amount(value, unit, places)}" for name, value in balances.items())


def _ordered(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: e.seq)


def _verdict_line(rec: Recording) -> str:
    failed, total = sum(not v.passed for v in rec.verdicts), len(rec.verdicts)
    if not total:
        count = "no assertions"
    elif failed:
        count = f"{failed} of {total} assertions failed"
    else:
        count = f"{total} of {total} assertions hold"
    return f"{'PASS' if rec.passed else 'FAIL'}  ({count})"


# ------------------------------------------------------------------------------- plain text


def _text_table(rows: Sequence[Sequence[str]], align: str, indent: str = "") -> list[str]:
    """Rows padded into columns; `align` holds one `l` or `r` per column."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(align))]
    return [indent + "  ".join(cell.rjust(w) if a == "r" else cell.ljust(w)
                               for cell, w, a in zip(row, widths, align)).rstrip() for row in rows]


def _timeline_text(entry: Entry, towers: dict[str, str] | None = None) -> tuple[str, str]:
    """The lane column and the rest of one timeline line; a tower's name is marked `(tower)`."""
    def who(name: str) -> str:
        return f"{name} (tower)" if towers and name in towers else name

    if isinstance(entry, Step):
        if entry.outcome is None:
            return f"== step {entry.index} (line {entry.line}): {entry.text}", ""
        return f"== step {entry.index} {_step_outcome(entry)}", ""
    if isinstance(entry, Message):
        fate = "" if entry.fate == "delivered" else f"  [{entry.fate.upper()}]"
        return f"{who(entry.sender)} -> {who(entry.receiver)}", f"{entry.type} {entry.summary}{fate}"
    if isinstance(entry, Transaction):
        events = f"  [{', '.join(entry.events)}]" if entry.events else ""
        return CHAIN, f"{who(entry.sender)} {entry.function}  gas {format_gas(entry.gas_used)}{events}"
    return f"note {who(entry.party) if entry.party else 'all'}", entry.text


def text_summary(rec: Recording) -> str:
    """The run as plain text: verdict, timeline, gas, final balances and assertions."""
    lines = [rec.title, f"{rec.name} · {rec.file} · chain {rec.chain} · {rec.duration:.2f}s"]
    if rec.description:
        lines.append(rec.description.strip())
    lifelines = [*rec.parties, *(f"{name} (tower)" for name in rec.towers), CHAIN]
    lines.append(f"Lifelines: {', '.join(lifelines)}")
    lines += [f"  tower {name} {address}: a watchtower, no party of any channel" for name, address in rec.towers.items()]
    lines += ["", f"Verdict: {_verdict_line(rec)}"]
    if rec.error:
        lines.append(f"  error: {rec.error}")

    lines += ["", "Timeline"]
    cells = [(f"{e.t:.3f}s", *_timeline_text(e, rec.towers)) for e in _ordered(rec.entries)]
    lane_width = max((len(lane) for _, lane, rest in cells if rest), default=0)
    time_width = max((len(t) for t, _, _ in cells), default=0)
    for t, lane, rest in cells:
        lines.append(f"  {t.rjust(time_width)}  {lane.ljust(lane_width)}  {rest}".rstrip() if rest
                     else f"  {t.rjust(time_width)}  {lane}")

    lines += ["", "Gas"]
    txs = rec.transactions
    if txs:
        rows = [["#", "sender", "function", "gas", "block", "events"]]
        rows += [[str(i), tx.sender, tx.function, format_gas(tx.gas_used), str(tx.block), ", ".join(tx.events)]
                 for i, tx in enumerate(txs, 1)]
        rows.append(["", "total", "", format_gas(rec.gas), "", ""])
        lines += _text_table(rows, "rllrrl", "  ")
    else:
        lines.append("  no transactions")

    if rec.samples:
        last = rec.samples[-1]
        lines += ["", f"Final balances ({last.label})"]
        rows = [["wallets", _balances_text(last.wallets, rec.unit)]]
        rows += [[name, _balances_text(balances, _channel_unit(rec, name))]
                 for name, balances in last.channels.items()]
        lines += _text_table(rows, "ll", "  ")

    lines += ["", "Assertions"]
    lines += [f"  line {v.line}: {v.what} — expected {v.expected}, found {v.found}  {'ok' if v.passed else 'FAIL'}"
              for v in rec.verdicts] or ["  none"]
    return "\n".join(lines) + "\n"


def summary_table(recs: list[Recording]) -> str:
    """One aligned line per run (verdict, transactions, gas, final balances) and the totals."""
    rows = [["scenario", "verdict", "transactions", "gas", "final balances"]]
    for rec in recs:
        final = _balances_text(rec.samples[-1].wallets, rec.unit) if rec.samples else ""
        rows.append([rec.name, "PASS" if rec.passed else "FAIL", str(len(rec.transactions)),
                     format_gas(rec.gas), final])
    rows.append(["total", "", str(sum(len(r.transactions) for r in recs)), format_gas(sum(r.gas for r in recs)), ""])
    passed = sum(r.passed for r in recs)
    return "\n".join(_text_table(rows, "llrrl") + [f"{passed} passed, {len(recs) - passed} failed"]) + "\n"


# ------------------------------------------------------------------------------- sequence diagram

CHAR = 6.7  # width of one 11px monospace character: labels are clipped to fit by counting
SPACING = (220, 400)  # least and most between lifelines
DIAGRAM_W = 1060  # fills the page's column when the lanes are few
LEFT = 70  # the time column
FIRST = LEFT + 100  # the first lifeline
HEADER = 62
ROW = {"step": 36, "step-end": 22, "msg": 32, "tx": 50, "note": 30}
BASELINE = {"step": 24, "step-end": 15, "msg": 26, "tx": 29, "note": 19}  # of the time, level with the entry
PARTY_COLOURS = ("#2563eb", "#0d9488", "#db2777", "#92400e", "#4338ca", "#65a30d", "#0891b2", "#be123c")
FATE_COLOURS = {"delivered": "#334155", "dropped": "#dc2626", "delayed": "#ea580c",
                "replayed": "#7c3aed", "forged": "#7c3aed"}
TX_COLOUR = "#475569"
OUTCOME_COLOURS = {"ok": "#15803d", "failed": "#dc2626", "expected-error": "#b45309"}


def _lanes(rec: Recording) -> list[str]:
    """The parties in order, then the towers, any other name the timeline mentions, then the chain."""
    lanes = [*rec.parties, *rec.towers]
    for e in _ordered(rec.entries):
        names = (e.sender, e.receiver) if isinstance(e, Message) else \
            (e.party,) if isinstance(e, Note) and e.party not in (None, CHAIN) else ()
        lanes += [n for n in names if n not in lanes]
    return lanes + [CHAIN]


def _kind(entry: Entry) -> str:
    if isinstance(entry, Step):
        return "step" if entry.outcome is None else "step-end"
    return "msg" if isinstance(entry, Message) else "tx" if isinstance(entry, Transaction) else "note"


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start", fill: str = "", tip: str = "") -> str:
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' text-anchor="{anchor}"' if anchor != "start" else ""
    attrs += f' fill="{fill}"' if fill else ""
    title = f"<title>{_e(tip)}</title>" if tip else ""
    return f'<text x="{x:.1f}" y="{y:.1f}"{attrs}>{_e(text)}{title}</text>'


def _label(x: float, y: float, text: str, width: float, cls: str = "", anchor: str = "start",
           fill: str = "") -> str:
    """Text clipped to `width` pixels; the full text in a <title> when clipped."""
    shown = _clip(text, int(width / CHAR))
    return _text(x, y, shown, cls, anchor, fill, text if shown != text else "")


def _arrow(x1: float, x2: float, y: float, colour: str) -> str:
    return (f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="1.6" '
            f'marker-end="url(#head-{colour[1:]})"/>')


def _message_svg(m: Message, y: float, xs: dict[str, float], spacing: float) -> str:
    colour = FATE_COLOURS[m.fate]
    x1, x2 = xs[m.sender], xs[m.receiver]
    text = f"{m.type} {m.summary}" if m.fate == "delivered" else f"{m.fate}: {m.type} {m.summary}"
    parts = [f'<g class="msg {m.fate}">', f"<title>{_e(f'{m.sender} → {m.receiver}: {text}')}</title>"]
    ay = y + 22
    if x1 == x2:  # a frame to oneself: a small loop on the lifeline
        parts.append(f'<path d="M{x1:.1f},{ay - 8:.1f} h28 v10 h-26" fill="none" stroke="{colour}" '
                     f'stroke-width="1.6" marker-end="url(#head-{colour[1:]})"/>')
        parts.append(_label(x1 + 34, ay - 2, text, spacing - 40, "lbl", fill=colour))
    else:
        centre = (x1 + x2) / 2
        if m.fate == "dropped":
            parts.append(f'<line x1="{x1:.1f}" y1="{ay:.1f}" x2="{centre:.1f}" y2="{ay:.1f}" stroke="{colour}" '
                         f'stroke-width="1.6" stroke-dasharray="6 4"/>')
            parts.append(f'<path d="M{centre - 6:.1f},{ay - 6:.1f} l12,12 M{centre - 6:.1f},{ay + 6:.1f} l12,-12" '
                         f'stroke="{colour}" stroke-width="2.2"/>')
        else:
            end = x2 - 2 if x2 > x1 else x2 + 2
            parts.append(_arrow(x1, end, ay, colour))
        parts.append(_label(centre, ay - 10, text, abs(x2 - x1) - 16, "lbl", "middle", colour))
    parts.append("</g>")
    return "".join(parts)


def _tx_svg(tx: Transaction, number: int, y: float, xs: dict[str, float]) -> str:
    box_w, chain_x = 236, xs[CHAIN]
    left = chain_x - box_w / 2
    events = ", ".join(tx.events) or "no events"
    head = f"{tx.function} · {format_gas(tx.gas_used)} gas"
    if tx.sender not in xs:
        head = f"{_short_address(tx.sender)} {head}"
    tip = f"tx {number} {tx.tx_hash}: {tx.sender} {tx.function}, gas {format_gas(tx.gas_used)}, block {tx.block}"
    parts = ['<g class="tx">', f"<title>{_e(tip)}; {_e(events)}</title>",
             f'<rect x="{left:.1f}" y="{y + 5:.1f}" width="{box_w}" height="40" rx="5" class="txbox"/>',
             _label(left + 8, y + 21, head, box_w - 16, "txhead"),
             _label(left + 8, y + 37, events, box_w - 16, "lbl", fill="#475569")]
    if tx.sender in xs:
        parts.append(_arrow(xs[tx.sender], left - 2, y + 25, TX_COLOUR))
        parts.append(_text(left - 10, y + 19, f"tx {number} · block {tx.block}", "small", "end"))
    parts.append("</g>")
    return "".join(parts)


def _note_svg(note: Note, y: float, xs: dict[str, float], spacing: float, width: float) -> str:
    if note.party in xs:
        box_w = min(len(note.text) * CHAR + 16, spacing - 30)
        left = xs[note.party] - box_w / 2
    else:
        left, box_w = FIRST - 60, width - FIRST + 60 - 20
    text = note.text if note.party in xs or note.party is None else f"{note.party}: {note.text}"
    return (f'<g class="note"><rect x="{left:.1f}" y="{y + 5:.1f}" width="{box_w:.1f}" height="20" rx="3" '
            f'class="notebox"/>{_label(left + box_w / 2, y + 19, text, box_w - 12, "lbl", "middle", "#713f12")}</g>')


def _step_svg(step: Step, end: Step | None, y: float, width: float) -> str:
    ly = y + 20
    label = f"step {step.index} (line {step.line}): {step.text}"
    badge = "" if end is None else "expected error" if end.outcome == "expected-error" else str(end.outcome)
    label_w = min(len(label) * CHAR + 14, width - LEFT - 130)
    parts = ['<g class="step">',
             f'<line x1="{LEFT:.1f}" y1="{ly:.1f}" x2="{width - 10:.1f}" y2="{ly:.1f}" class="sepline"/>',
             f'<rect x="{LEFT:.1f}" y="{ly - 10:.1f}" width="{label_w:.1f}" height="20" rx="10" class="steplbl"/>',
             _label(LEFT + 7, ly + 4, label, label_w - 12, "stepname")]
    if end is not None:
        colour = OUTCOME_COLOURS[str(end.outcome)]
        badge_w = len(badge) * CHAR + 16
        bx = width - 14 - badge_w
        tip = f"<title>{_e(_step_outcome(end))}</title>"
        parts.append(f'<rect x="{bx:.1f}" y="{ly - 9:.1f}" width="{badge_w:.1f}" height="18" rx="9" '
                     f'fill="{colour}">{tip}</rect>')
        parts.append(_text(bx + badge_w / 2, ly + 4, badge, "badge", "middle"))
    parts.append("</g>")
    return "".join(parts)


def _step_end_svg(step: Step, y: float, width: float) -> str:
    colour = "#94a3b8" if step.outcome == "ok" else OUTCOME_COLOURS[str(step.outcome)]
    text = f"end of step {step.index}: {_step_outcome(step)}"
    label = _label(LEFT + 6, y + 15, text, width - LEFT - 20, "small", fill=colour)
    return f'<g class="step-end {step.outcome}">{label}</g>'


def _tower_lane_svg(name: str, address: str, x: float, height: float) -> str:
    """A watchtower's lifeline: a white box outlined in the tower colour with a "tower" tag, and a
    dotted line, so that no reader takes it for a channel party."""
    return (f'<g class="lane tower"><line x1="{x:.1f}" y1="{HEADER - 6}" x2="{x:.1f}" y2="{height - 8}" '
            f'class="life towerlife"/><rect x="{x - 75:.1f}" y="8" width="150" height="42" rx="6" class="towerbox"/>'
            f'{_text(x, 26, name, "towername", "middle")}'
            f'{_label(x, 42, f"tower · {_short_address(address)}", 140, "towersub", "middle")}'
            f"<title>{_e(f'{name} (watchtower): {address}')}</title></g>")


def sequence_svg(rec: Recording) -> str:
    """The timeline as an SVG sequence diagram: a lifeline per party and one for the chain."""
    lanes = _lanes(rec)
    spacing = max(SPACING[0], min(SPACING[1], (DIAGRAM_W - FIRST - 140) / max(len(lanes) - 1, 1)))
    xs = {name: FIRST + i * spacing for i, name in enumerate(lanes)}
    width = xs[CHAIN] + 140
    entries = _ordered(rec.entries)
    height = HEADER + sum(ROW[_kind(e)] for e in entries) + 24
    ends = {e.index: e for e in entries if isinstance(e, Step) and e.outcome is not None}
    colours = {*FATE_COLOURS.values(), TX_COLOUR}
    markers = "".join(f'<marker id="head-{c[1:]}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
                      f'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/>'
                      f"</marker>" for c in sorted(colours))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="seq" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="sequence diagram">',
             f"<defs>{markers}</defs>"]
    for i, name in enumerate(lanes):
        x = xs[name]
        if name in rec.towers:  # not a channel party: an outlined box, labelled as a tower
            parts.append(_tower_lane_svg(name, rec.towers[name], x, height))
            continue
        colour = "#0f172a" if name == CHAIN else PARTY_COLOURS[i % len(PARTY_COLOURS)]
        sub = rec.chain if name == CHAIN else rec.parties.get(name, "")
        parts.append(f'<g class="lane"><line x1="{x:.1f}" y1="{HEADER - 6}" x2="{x:.1f}" y2="{height - 8}" '
                     f'class="life"/><rect x="{x - 75:.1f}" y="8" width="150" height="42" rx="6" fill="{colour}"/>'
                     f'{_text(x, 26, name, "lane", "middle")}'
                     f'{_label(x, 42, _short_address(sub) if sub.startswith("0x") else sub, 140, "lanesub", "middle")}'
                     f"<title>{_e(f'{name}: {sub}')}</title></g>")
    y = HEADER
    tx_number = 0
    for e in entries:
        kind = _kind(e)
        parts.append(_text(LEFT - 8, y + BASELINE[kind], f"{e.t:.3f}s", "time", "end"))
        if isinstance(e, Message):
            parts.append(_message_svg(e, y, xs, spacing))
        elif isinstance(e, Transaction):
            tx_number += 1
            parts.append(_tx_svg(e, tx_number, y, xs))
        elif isinstance(e, Note):
            parts.append(_note_svg(e, y, xs, spacing, width))
        elif e.outcome is None:
            parts.append(_step_svg(e, ends.get(e.index), y, width))
        else:
            parts.append(_step_end_svg(e, y, width))
        y += ROW[kind]
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------- balance chart

CHART_W, CHART_H = 1060, 300
PLOT = (100, 20, 820, 250)  # left, top, right, bottom of the plot area


def _ticks(lo: int, hi: int, count: int = 5) -> list[int]:
    """Round integer ticks (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    raw = max((hi - lo) // count, 1)
    magnitude = 10 ** (len(str(raw)) - 1)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return list(range(lo // step * step, hi + step, step))


def _wallet_names(rec: Recording) -> list[str]:
    names = [n for n in rec.parties if any(n in s.wallets for s in rec.samples)]
    for s in rec.samples:
        names += [n for n in s.wallets if n not in names]
    return names


def balance_chart_svg(rec: Recording) -> str:
    """Wallet balances over the samples: one polyline per party, with a legend."""
    names = _wallet_names(rec)
    values = [v for s in rec.samples for v in s.wallets.values()]
    lo, hi = min(values), max(values)
    if lo == hi:
        pad = max(abs(lo) // 10, 1)
        lo, hi = lo - pad, hi + pad
    ticks = _ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]
    left, top, right, bottom = PLOT
    n = len(rec.samples)

    def px(i: int) -> float:
        return (left + right) / 2 if n == 1 else left + 20 + i * (right - left - 40) / (n - 1)

    def py(v: int) -> float:
        return bottom - (v - lo) * (bottom - top) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{CHART_W}" height="{CHART_H}" '
             f'viewBox="0 0 {CHART_W} {CHART_H}" role="img" aria-label="wallet balances">',
             f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" class="plot"/>']
    for t in ticks:
        parts.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{right}" y2="{py(t):.1f}" class="grid"/>')
        parts.append(_text(left - 6, py(t) + 4, format_amount(t, rec.unit, 4), "axis", "end"))
    for i, s in enumerate(rec.samples):
        parts.append(f'<g class="xtick">{_text(px(i), bottom + 16, str(i + 1), "axis", "middle")}'
                     f"<title>{_e(s.label)}</title></g>")
    parts.append(_text((left + right) / 2, bottom + 36, "sample (see the table below)", "axis", "middle"))
    for k, name in enumerate(names):
        colour = PARTY_COLOURS[k % len(PARTY_COLOURS)]
        points = [(px(i), py(s.wallets[name]), s, s.wallets[name]) for i, s in enumerate(rec.samples)
                  if name in s.wallets]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"><title>'
                       f"{_e(f'{name} {s.label}: {format_amount(v, rec.unit)}')}</title></circle>"
                       for x, y, s, v in points)
        parts.append(f'<g class="series" data-party="{_e(name)}"><polyline points="{path}" fill="none" '
                     f'stroke="{colour}" stroke-width="2.2"/>{dots}</g>')
        ly = top + 10 + k * 22
        legend = _label(right + 40, ly, f"{name}  {format_amount(points[-1][3], rec.unit, 4)}", CHART_W - right - 44,
                        "legend")
        parts.append(f'<g class="legend"><rect x="{right + 20}" y="{ly - 6}" width="14" height="4" rx="2" '
                     f'fill="{colour}"/>{legend}</g>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------- HTML page

CSS = """
:root { --pass: #15803d; --fail: #dc2626; --ink: #0f172a; --muted: #64748b; --line: #e2e8f0; }
* { box-sizing: border-box; }
body { margin: 0; background: #f1f5f9; color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1160px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 12px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px;
          margin: 0 0 18px; overflow-x: auto; }
.meta { color: var(--muted); margin: 0; }
.mono, td.num, code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
.banner { display: flex; align-items: center; gap: 20px; }
.big { font-size: 34px; font-weight: 800; letter-spacing: 2px; color: #fff; border-radius: 8px;
       padding: 6px 22px; }
.pass .big { background: var(--pass); }
.fail .big { background: var(--fail); }
#verdict.pass { border-left: 8px solid var(--pass); }
#verdict.fail { border-left: 8px solid var(--fail); }
.error { margin: 14px 0 0; padding: 10px 12px; background: #fef2f2; border: 1px solid #fecaca;
         color: #991b1b; border-radius: 6px; white-space: pre-wrap; }
.counts { display: flex; gap: 26px; margin-top: 12px; flex-wrap: wrap; }
.counts div { color: var(--muted); font-size: 12px; }
.counts b { display: block; color: var(--ink); font-size: 18px;
            font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); background: #f8fafc; }
td.num, th.num { text-align: right; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f8fafc; }
tr.verdict.pass td.v { color: var(--pass); font-weight: 700; }
tr.verdict.fail { background: #fef2f2 !important; }
tr.verdict.fail td.v { color: var(--fail); font-weight: 700; }
tr.total td { font-weight: 700; border-top: 2px solid #cbd5e1; }
.empty { color: var(--muted); font-style: italic; }
svg { max-width: 100%; height: auto; display: block; }
svg text { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 11px; }
svg .lbl, svg .small, svg .stepname, svg .txhead { paint-order: stroke; stroke: #fff; stroke-width: 3px;
                                                   stroke-linejoin: round; }
svg .lane { fill: #fff; font: 700 13px system-ui, "DejaVu Sans", sans-serif; }
svg .lanesub { fill: #e2e8f0; font-size: 10px; }
svg .life { stroke: #cbd5e1; stroke-width: 1.5; stroke-dasharray: 4 4; }
svg .towerlife { stroke: #a16207; stroke-dasharray: 1 5; stroke-linecap: round; stroke-width: 2; }
svg .towerbox { fill: #fff; stroke: #a16207; stroke-width: 2; stroke-dasharray: 6 3; }
svg .towername { fill: #a16207; font: 700 13px system-ui, "DejaVu Sans", sans-serif; }
svg .towersub { fill: #a16207; font-size: 10px; }
svg .time { fill: #94a3b8; font-size: 10px; }
svg .small { fill: #64748b; font-size: 10px; }
svg .sepline { stroke: #94a3b8; stroke-width: 1; }
svg .steplbl { fill: #e2e8f0; stroke: #94a3b8; }
svg .stepname { fill: #0f172a; font-weight: 700; stroke: #e2e8f0; }
svg .badge { fill: #fff; font-weight: 700; font-size: 10px; }
svg .txbox { fill: #f8fafc; stroke: #475569; stroke-width: 1.2; }
svg .txhead { fill: #0f172a; font-weight: 700; stroke: #f8fafc; }
svg .notebox { fill: #fef9c3; stroke: #ca8a04; }
svg .note .lbl { stroke: #fef9c3; }
svg .plot { fill: #fff; stroke: #cbd5e1; }
svg .grid { stroke: #e2e8f0; }
svg .axis { fill: #64748b; font-size: 10px; }
svg .legend { fill: #0f172a; font-size: 12px; }
.key { display: flex; gap: 18px; flex-wrap: wrap; margin: 0 0 10px; font-size: 12px; color: var(--muted); }
.key span::before { content: ""; display: inline-block; width: 18px; height: 0; margin-right: 6px;
                    vertical-align: middle; border-top: 2px solid var(--c); }
.key span.dashed::before { border-top-style: dashed; }
"""


def _verdict_section(rec: Recording) -> str:
    state = "pass" if rec.passed else "fail"
    msgs = rec.messages
    faults = sum(m.fate != "delivered" for m in msgs)
    steps = sum(isinstance(e, Step) and e.outcome is None for e in rec.entries)
    held = sum(v.passed for v in rec.verdicts)
    counts = [("steps", str(steps)), ("messages", f"{len(msgs)}" + (f" ({faults} faulty)" if faults else "")),
              ("transactions", str(len(rec.transactions))), ("gas", format_gas(rec.gas)),
              ("assertions hold", f"{held} / {len(rec.verdicts)}"), ("duration", f"{rec.duration:.2f} s")]
    error = f'<pre class="error">{_e(rec.error)}</pre>' if rec.error else ""
    description = f"<p>{_e(rec.description)}</p>" if rec.description else ""
    return (f'<section id="verdict" class="{state}"><div class="banner"><div class="big">{state.upper()}</div>'
            f'<div><h1>{_e(rec.title)}</h1><p class="meta"><code>{_e(rec.file)}</code> · chain {_e(rec.chain)}</p>'
            f"</div></div>{description}"
            f'<div class="counts">{"".join(f"<div><b>{_e(v)}</b>{_e(k)}</div>" for k, v in counts)}</div>'
            f"{error}</section>")


def _assertions_section(verdicts: list[Verdict]) -> str:
    rows = "".join(f'<tr class="verdict {"pass" if v.passed else "fail"}"><td class="num">{v.line}</td>'
                   f'<td>{_e(v.what)}</td><td class="mono">{_e(v.expected)}</td><td class="mono">{_e(v.found)}</td>'
                   f'<td class="v">{"✔ pass" if v.passed else "✘ fail"}</td></tr>' for v in verdicts)
    body = (f'<table><thead><tr><th class="num">line</th><th>what</th><th>expected</th><th>found</th>'
            f"<th>verdict</th></tr></thead><tbody>{rows}</tbody></table>") if verdicts \
        else '<p class="empty">no assertions</p>'
    return f'<section id="assertions"><h2>Assertions</h2>{body}</section>'


def _sequence_section(rec: Recording) -> str:
    key = "".join(f'<span{" class=dashed" if fate == "dropped" else ""} style="--c:{c}">{fate}</span>'
                  for fate, c in FATE_COLOURS.items() if fate not in ("replayed", "forged"))
    key += (f'<span style="--c:{FATE_COLOURS["forged"]}">replayed / forged</span>'
            f'<span style="--c:{TX_COLOUR}">transaction</span>')
    return f'<section id="sequence"><h2>Sequence</h2><div class="key">{key}</div>{sequence_svg(rec)}</section>'


def _balances_section(rec: Recording) -> str:
    if not any(s.wallets for s in rec.samples):
        return '<section id="balances"><h2>Balances</h2><p class="empty">no samples</p></section>'
    names = _wallet_names(rec)
    channels = list(dict.fromkeys(c for s in rec.samples for c in s.channels))

    def cell(value: int, unit: str) -> str:
        return f'<td class="num" title="{_e(format_amount(value, unit))}">{_e(format_amount(value, unit, 4))}</td>'

    def channel_cell(s: Sample, c: str) -> str:
        balances = s.channels.get(c)
        if balances is None:
            return "<td></td>"
        unit = _channel_unit(rec, c)
        return (f'<td class="mono" title="{_e(_balances_text(balances, unit))}">'
                f"{_e(_balances_text(balances, unit, 4))}</td>")

    def kind(c: str) -> str:  # a multistate channel's balances are its cash
        spec = rec.channels.get(c)
        return {"multistate": " (multistate: cash)", "virtual": " (virtual)"}.get(spec.kind, "") if spec else ""

    head = "".join(f'<th class="num">{_e(n)}</th>' for n in names) + \
        "".join(f"<th>channel {_e(c)}{kind(c)}</th>" for c in channels)
    rows = "".join(f'<tr><td class="num">{i}</td><td>{_e(s.label)}</td>'
                   + "".join(cell(s.wallets[n], rec.unit) if n in s.wallets else "<td></td>" for n in names)
                   + "".join(channel_cell(s, c) for c in channels) + "</tr>"
                   for i, s in enumerate(rec.samples, 1))
    return (f'<section id="balances"><h2>Wallet balances ({_e(rec.unit)}, gas excluded)</h2>'
            f"{balance_chart_svg(rec)}<table><thead><tr><th class=\"num\">#</th><th>sample</th>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")


def _gas_section(rec: Recording) -> str:
    txs = rec.transactions
    if not txs:
        return '<section id="gas"><h2>Gas</h2><p class="empty">no transactions</p></section>'
    rows = "".join(f'<tr><td class="num">{i}</td><td>{_e(tx.sender)}</td><td>'
                   f'<code title="{_e(tx.tx_hash)}">{_e(tx.function)}</code></td>'
                   f'<td class="num">{format_gas(tx.gas_used)}</td><td class="num">{tx.block}</td>'
                   f'<td class="mono">{_e(", ".join(tx.events))}</td><td class="num">{tx.line}</td></tr>'
                   for i, tx in enumerate(txs, 1))
    return (f'<section id="gas"><h2>Gas per transaction</h2><table><thead><tr><th class="num">#</th>'
            f'<th>sender</th><th>function</th><th class="num">gas</th><th class="num">block</th><th>events</th>'
            f'<th class="num">line</th></tr></thead><tbody>{rows}<tr class="total"><td></td><td>total</td><td></td>'
            f'<td class="num">{format_gas(rec.gas)}</td><td></td><td></td><td></td></tr></tbody></table></section>')


def html_report(rec: Recording) -> str:
    """The run as one self-contained HTML5 page (inline CSS and SVG, no scripts)."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{'PASS' if rec.passed else 'FAIL'} · {_e(rec.title)}</title><style>{CSS}</style></head>"
            f"<body><main>{_verdict_section(rec)}{_assertions_section(rec.verdicts)}{_sequence_section(rec)}"
            f"{_balances_section(rec)}{_gas_section(rec)}</main></body></html>\n")


def write_report(rec: Recording, out_dir: Path) -> tuple[Path, Path]:
    """Writes `<name>.html` and `<name>.txt` into `out_dir` (created) and returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page, text = out_dir / f"{rec.name}.html", out_dir / f"{rec.name}.txt"
    page.write_text(html_report(rec), encoding="utf-8")
    text.write_text(text_summary(rec), encoding="utf-8")
    return page, text


# ------------------------------------------------------------------------------- screenshot


def _page_height(page: str) -> int:
    """A height that holds the page: the SVGs' heights plus a share per table row and section."""
    svgs = sum(int(h) for h in re.findall(r'<svg[^>]*\sheight="(\d+)"', page))
    blocks = len(re.findall(r"<(?:tr|p|pre)[\s>]", page))
    return min(max(svgs + blocks * 30 + page.count("<section") * 100 + 150, 600), 16_000)


def screenshot(html: Path, png: Path, width: int = 1200) -> None:
    """Renders the page to a PNG `width` pixels wide with headless chromium."""
    browser = shutil.which("chromium")
    if browser is None:
        raise FileNotFoundError("chromium is not installed: install the chromium package to take screenshots")
    height = _page_height(html.read_text(encoding="utf-8"))
    # A fresh profile each time: runs in parallel would otherwise fight over the profile lock.
    with tempfile.TemporaryDirectory(prefix="perun-chromium-") as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png.resolve()}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def write_index(recs: list[Recording], out_dir: Path) -> Path:
    """Writes `index.html`: the catalog's summary, each scenario linking to its report."""
    rows = "".join(
        f'<tr class="verdict {"pass" if rec.passed else "fail"}"><td><a href="{_e(rec.name)}.html">{_e(rec.name)}</a></td>'
        f"<td>{_e(rec.title)}</td><td>{'PASS' if rec.passed else 'FAIL'}</td><td class=num>{len(rec.transactions)}</td>"
        f"<td class=num>{format_gas(rec.gas)}</td></tr>"
        for rec in recs)
    passed = sum(rec.passed for rec in recs)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Scenarios: {passed}/{len(recs)} pass'
            f"</title><style>{CSS}</style></head><body><main><section id=\"catalog\"><h1>Scenarios</h1>"
            f"<p>{passed} passed, {len(recs) - passed} failed</p><table><tr><th>scenario</th><th>what it shows</th>"
            f"<th>verdict</th><th>transactions</th><th>gas</th></tr>{rows}</table></section></main></body></html>\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
