"""The backtest timeline in words: one line per trigger that fired, was deduplicated, merged or
held, and per model the gates judged; `--all` adds the below-threshold evaluations. The side by
side view lines two specs' timelines up by instant for `keel diff --backtest`.
"""

from __future__ import annotations

from pipeline.backtest.replay import SHOWN, ModelVerdict, Timeline
from pipeline.triggers.rules import Evaluation

LABEL = {
    "fired": "FIRED",
    "suppressed": "dedup",
    "merged": "merged",
    "waiting_for_labels": "waiting",
    "below_threshold": "below",
    "no_data": "no data",
}


def _event(e: Evaluation) -> str:
    extra = (" CRITICAL" if e.critical else "") + (" approval" if e.approval and e.status == "fired" else "")
    retrain = f" -> retrain #{e.retrain}" if e.retrain and e.status == "fired" else ""
    return f"{e.trigger:<11} {LABEL[e.status]:<7} {e.reason}{extra}{retrain}"


def _model(m: ModelVerdict) -> str:
    if m.passed is None and m.metrics:
        return f"retrain #{m.retrain}: model of {m.trained_on}: none of the gates' metrics recorded: not gated"
    if m.passed is None:
        return f"retrain #{m.retrain}: no model metrics recorded for {m.trained_on or 'any earlier day'}: not gated"
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(m.metrics.items()))
    if m.passed:
        wait = " (after human approval)" if m.approval else ""
        return f"retrain #{m.retrain}: model of {m.trained_on} ({metrics}) PASSED the gates -> champion{wait}"
    return f"retrain #{m.retrain}: model of {m.trained_on} ({metrics}) REJECTED: " + "; ".join(m.failed)


def render_text(timeline: Timeline, show_all: bool = False) -> str:
    s = timeline.summary()
    lines = [
        f"backtest {timeline.spec_name} over {timeline.source}: {timeline.start:%Y-%m-%d} .. {timeline.end:%Y-%m-%d}",
        f"  {s['retrains']} retrain(s), {s['promoted']} model(s) promoted, {s['rejected']} rejected by the gates",
    ]
    for a, b in timeline.gaps:
        lines.append(f"  gap: no facts recorded {a} .. {b} (scheduled triggers still fire)")
    by_retrain = {m.retrain: m for m in timeline.models}
    repeats: dict[tuple[str, int | None], int] = {}
    for e in timeline.evaluations:
        if not show_all and "(triggers.rearm)" in e.reason:
            key = (e.trigger, e.retrain)
            repeats[key] = repeats.get(key, 0) + 1
            if repeats[key] > 1:
                continue  # the same lasting condition, day after day: shown once, counted below
        if show_all or e.status in SHOWN:
            lines.append(f"{e.at:%Y-%m-%d %a %H:%M}  {_event(e)}")
            if e.status == "fired" and e.retrain in by_retrain:
                lines.append(f"{'':22}{_model(by_retrain.pop(e.retrain))}")
    for (trigger, retrain), count in repeats.items():
        if count > 1:
            lines.append(f"  {trigger}: {count - 1} more day(s) still held by the condition of retrain #{retrain}")
    for trigger, counts in s["by_trigger"].items():
        lines.append(f"  {trigger}: " + ", ".join(f"{LABEL[k]} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def _cell(events: list[Evaluation], models: dict[int, ModelVerdict]) -> str:
    parts = []
    for e in events:
        text = f"{e.trigger} {LABEL[e.status]}" + (" CRIT" if e.critical else "")
        m = models.get(e.retrain) if e.status == "fired" and e.retrain else None
        if m is not None:
            text += {True: " (promoted)", False: " (REJECTED)", None: " (no model)"}[m.passed]
        parts.append(text)
    return ", ".join(dict.fromkeys(parts)) or "-"


def render_side_by_side(old: Timeline, new: Timeline, labels: tuple[str, str]) -> str:
    """Both specs' timelines by instant: only instants where either did something worth a look."""

    def shown(t: Timeline) -> dict:
        out: dict = {}
        for e in t.shown():
            if "(triggers.rearm)" not in e.reason:  # a lasting condition's daily repeats: noise side by side
                out.setdefault(e.at, []).append(e)
        return out

    a, b = shown(old), shown(new)
    ma, mb = {m.retrain: m for m in old.models}, {m.retrain: m for m in new.models}
    width = 44
    lines = [f"{'when':<21} {labels[0][:width]:<{width}} {labels[1][:width]}"]
    for at in sorted(set(a) | set(b)):
        left, right = _cell(a.get(at, []), ma), _cell(b.get(at, []), mb)
        mark = " " if left == right else "*"
        lines.append(f"{at:%Y-%m-%d %a %H:%M}{mark} {left[:width]:<{width}} {right[:width]}")
    sa, sb = old.summary(), new.summary()
    for key in ("retrains", "promoted", "rejected"):
        lines.append(f"{key:<21} {sa[key]!s:<{width}} {sb[key]}")
    for trigger in dict.fromkeys([*sa["first_fired"], *sb["first_fired"]]):
        lines.append(
            f"{'first ' + trigger:<21} {sa['first_fired'].get(trigger, 'never')[:16]:<{width}} "
            f"{sb['first_fired'].get(trigger, 'never')[:16]}"
        )
    return "\n".join(lines)
