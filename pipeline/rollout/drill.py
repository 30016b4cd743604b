"""`keel rollout drill`: switch a live service to its warm standby and back under steady traffic, and time it.

Why a drill on the real service and not a unit test of the record: what matters in an incident
is when the service actually answers from the other bundle, and whether any request failed
on the way; both depend on the watcher, the workers and the load, not on the write alone.
The load is paced (one request every 1/rate s over keep-alive connections, raw HTTP/1.1 on
asyncio so the client costs little next to the server) and every reply is kept with its send
and receive times; bench/bench_rollout.py measures its rollbacks with the same code.

A switch is `aliases.rollback` (the standby becomes champion) and back is `aliases.promote` of
the original champion (which makes the rolled-back-to bundle standby again), so the drill
leaves the aliases as it found them, with every switch in the alias history.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases, promote
from pipeline.registry.aliases import rollback as alias_rollback
from pipeline.rollout.errors import RolloutRefused
from pipeline.rollout.record import read_rollout

TARGET_S = 0.100


@dataclass
class Reply:
    sent: float
    received: float
    status: int
    bundle: str | None
    entity: str
    side: str | None = None
    request_id: str | None = None


Work = Sequence[tuple[str, bytes]]  # (entity id, the raw HTTP request)


def http_request(path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """One raw HTTP/1.1 POST with a JSON body, ready to write on a keep-alive connection."""
    payload = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    for key, value in (headers or {}).items():
        head += f"{key}: {value}\r\n"
    return (head + f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


def _header(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(name + b":"):
            return line.split(b":", 1)[1].strip().decode("latin-1")
    return None


async def connection(host: str, port: int, work: Work, interval: float, start: float, out: list[Reply]) -> None:
    """Send `work` in order, one every `interval` s from `start` (0: back to back), recording every reply."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for n, (entity, request) in enumerate(work):
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(int(_header(head, b"content-length") or 0))
                status = int(head.split(b" ", 2)[1])
                bundle = json.loads(body).get("bundle") if status == 200 else None
            except (OSError, asyncio.IncompleteReadError, ValueError):
                out.append(
                    Reply(sent, time.perf_counter(), 0, None, entity)
                )  # a failed request: counted, never retried
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            side, rid = _header(head, b"x-keel-side"), _header(head, b"x-request-id")
            out.append(Reply(sent, time.perf_counter(), status, bundle, entity, side, rid))
    finally:
        writer.close()


async def paced(
    host: str,
    port: int,
    work: Work,
    conns: int,
    rate: float,
    actions: Sequence[tuple[float, Callable[[], Any]]] = (),
) -> tuple[list[Reply], list[tuple[float, float]]]:
    """Run the load; call each action (blocking, on a thread) at its offset in s; replies and (t0, t1) per action."""
    out: list[Reply] = []
    interval = conns / rate if rate > 0 else 0.0
    start = time.perf_counter() + 0.05
    shards = [work[c::conns] for c in range(conns)]
    starts = [start + c * interval / conns for c in range(conns)]  # staggered: one request every 1/rate s
    load = asyncio.gather(
        *(connection(host, port, shard, interval, at, out) for shard, at in zip(shards, starts, strict=True))
    )
    times: list[tuple[float, float]] = []
    for at_s, action in actions:
        await asyncio.sleep(max(0.0, start + at_s - time.perf_counter()))
        t0 = time.perf_counter()
        await asyncio.to_thread(action)
        times.append((t0, time.perf_counter()))
    await load
    return out, times


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--url must be http://HOST:PORT, got {url!r}")
    return parts.hostname, parts.port or 80


@dataclass
class Switch:
    direction: str  # "to standby" | "back"
    old: str
    new: str
    write_ms: float
    switch_ms: float | None  # from the write until the last request the old bundle answered was sent
    first_new_ms: float | None  # from the write until the first answer from the new bundle arrived
    old_after_target: int  # answers from the old bundle sent more than TARGET_S after the write returned


@dataclass
class DrillReport:
    url: str
    cycles: int
    rate: float
    requests: int
    failed: int
    third_bundle: int
    switches: list[Switch] = field(default_factory=list)
    limit_ms: float | None = None  # --max-switch-ms: a slower switch fails the drill (None: timing is reported only)

    @property
    def max_switch_ms(self) -> float | None:
        values = [s.switch_ms for s in self.switches if s.switch_ms is not None]
        return max(values) if values else None

    @property
    def slow(self) -> bool:
        """A switch took longer than --max-switch-ms (never true without the flag)."""
        worst = self.max_switch_ms
        return self.limit_ms is not None and worst is not None and worst > self.limit_ms

    @property
    def missed_target(self) -> int:
        """Switches with an answer from the old bundle sent more than TARGET_S after the write: reported, not failed."""
        return sum(1 for s in self.switches if s.old_after_target)

    @property
    def ok(self) -> bool:
        """As docs/cli.md says: a failed request, an answer from a third bundle, or a switch that never showed.

        The 100 ms target is reported (`missed_target`, `late old`); only `--max-switch-ms` makes time a failure.
        """
        complete = all(s.first_new_ms is not None for s in self.switches)
        return self.failed == 0 and self.third_bundle == 0 and complete and not self.slow

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            max_switch_ms=self.max_switch_ms,
            ok=self.ok,
            target_ms=TARGET_S * 1e3,
            missed_target=self.missed_target,
            slow=self.slow,
        )
        return out


def switch_times(replies: list[Reply], t0: float, t1: float, until: float, old: str, new: str) -> tuple:
    """(switch_ms, first_new_ms, late) of the switch written from t0 to t1, the next one starting at `until`.

    Only replies sent after this write began and received before the next one began count: a request sent
    just before the next switch but answered after it (a loaded server) may carry the next switch's bundle,
    which is this switch's old one, and must not read as this switch flipping back.
    """
    window = [r for r in replies if t0 <= r.sent and r.received < until and r.status == 200]
    last_old = max((r.sent for r in window if r.bundle == old), default=None)
    first_new = min((r.received for r in window if r.bundle == new), default=None)
    late = sum(1 for r in window if r.bundle == old and r.sent - t1 > TARGET_S)
    return (
        None if last_old is None else (last_old - t0) * 1e3,
        None if first_new is None else (first_new - t0) * 1e3,
        late,
    )


def run_drill(
    url: str,
    name: str,
    work: Work,
    store: BundleStore | None = None,
    cycles: int = 3,
    rate: float = 100.0,
    conns: int = 4,
    gap_s: float = 1.0,
    max_switch_ms: float | None = None,
) -> DrillReport:
    """`cycles` times: champion -> standby, then back, under steady load. Refused without a standby or mid-rollout.

    `max_switch_ms`: fail the drill when a switch takes longer (without it the timing is only reported).
    """
    store = store or BundleStore()
    current = read_rollout(store.keel_dir, name)
    if current is not None and current.live:
        raise RolloutRefused(
            f"rollout {current.rollout_id} of {name!r} is {current.status}: finish or roll it back first"
        )
    start = aliases(name, store=store)
    champion, standby = start["champion"], start["standby"]
    if not champion or not standby:
        raise RolloutRefused(f"{name!r} needs a champion and a warm standby to drill (have {start})")
    host, port = host_port(url)
    seconds = gap_s * (2 * cycles + 1)
    count = max(int(rate * seconds), 1)
    jobs = [work[i % len(work)] for i in range(count)]
    actions: list[tuple[float, Callable[[], Any]]] = []
    plan: list[tuple[str, str, str]] = []
    for k in range(cycles):
        actions.append((gap_s * (2 * k + 1), lambda: alias_rollback(name, "keel rollout drill", store=store)))
        actions.append((gap_s * (2 * k + 2), lambda: promote(name, champion, "keel rollout drill: back", store=store)))
        plan += [("to standby", champion, standby), ("back", standby, champion)]
    try:
        replies, times = asyncio.run(paced(host, port, jobs, conns, rate, actions))
    finally:  # whatever happened, leave the aliases as they were
        now = aliases(name, store=store)
        if now["champion"] != champion:
            promote(name, champion, "keel rollout drill: restore", store=store)
    report = DrillReport(
        url=url,
        cycles=cycles,
        rate=rate,
        requests=len(replies),
        failed=sum(1 for r in replies if r.status != 200),
        third_bundle=sum(1 for r in replies if r.status == 200 and r.bundle not in (champion, standby)),
        limit_ms=max_switch_ms,
    )
    ends = [t0 for t0, _ in times[1:]] + [float("inf")]
    for (direction, old, new), (t0, t1), until in zip(plan, times, ends, strict=True):
        switch_ms, first_ms, late = switch_times(replies, t0, t1, until, old, new)
        report.switches.append(Switch(direction, old, new, (t1 - t0) * 1e3, switch_ms, first_ms, late))
    return report


def render(report: DrillReport) -> str:
    lines = [
        f"drill against {report.url}: {report.cycles} cycles, {report.requests} requests at {report.rate:.0f} req/s, "
        f"{report.failed} failed, {report.third_bundle} from a third bundle",
        f"{'switch':<12} {'write ms':>8} {'switch ms':>9} {'first new ms':>12} {'late old':>8}",
    ]
    for s in report.switches:
        sw = "-" if s.switch_ms is None else f"{s.switch_ms:.1f}"
        first = "-" if s.first_new_ms is None else f"{s.first_new_ms:.1f}"
        lines.append(f"{s.direction:<12} {s.write_ms:>8.1f} {sw:>9} {first:>12} {s.old_after_target:>8}")
    limit = "" if report.limit_ms is None else f", limit {report.limit_ms:g} ms{' EXCEEDED' if report.slow else ''}"
    missed = f", {report.missed_target} switches missed it" if report.missed_target else ""
    lines.append(
        f"{'OK' if report.ok else 'FAILED'}: max switch {report.max_switch_ms or 0:.1f} ms "
        f"(target < {TARGET_S * 1e3:.0f} ms{missed}{limit}), {report.failed} failed requests"
    )
    never = [s.direction for s in report.switches if s.first_new_ms is None]
    if never:
        lines.append(f"switches that never showed: {', '.join(never)}")
    return "\n".join(lines)
