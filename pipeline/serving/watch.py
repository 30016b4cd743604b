"""Follow the alias record and the rollout record while serving: promotions, rollouts and rollbacks, no restart.

Why polling a stat() and not inotify: both records are replaced by rename (a new inode), this
works the same on every filesystem, and two `os.stat` calls per tick cost microseconds. The
default tick is 50 ms so a rollback reaches every worker well inside the 100 ms target.
A change is loaded on the watcher's thread, off the request path, sha256-verified like any
load; only a scorer that loaded completely is swapped in, with one assignment (requests in
flight finish on the old one). Champion, standby and challenger stay loaded ("warm"), so a
rollback (rollout or champion <-> standby) is an assignment, not a load.

Failures never stop serving: a damaged alias record or a champion that fails to load keeps
the previous champion (reported as reload_error); a damaged rollout record or a challenger
that cannot be routed to (missing, tampered, gates not passed) drops the challenger and serves
the champion only (reported as rollout_error). Loads that failed are retried every few seconds.
The same thread evaluates the immediate rollback triggers a few times a second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.registry import BundleRef, BundleStore
from pipeline.registry.alias_state import STATE_FILE, alias_dir
from pipeline.registry.aliases import aliases
from pipeline.registry.tabular import load_tabular_bundle
from pipeline.rollout.backends import RolloutBackendDown
from pipeline.rollout.errors import RolloutError
from pipeline.rollout.record import read_rollout, rollout_stamp
from pipeline.serving.router import Routing
from pipeline.serving.scorer import Scorer
from pipeline.serving.state import ServingState

log = logging.getLogger("keel.serving")
RETRY_S = 2.0
TRIGGER_EVERY_S = 0.25

Stamp = tuple[int, int, int] | None


class ChampionWatcher:
    """Keeps `state` on the current champion, standby and rollout of `name` in `store`."""

    def __init__(
        self,
        name: str,
        store: BundleStore,
        state: ServingState,
        max_batch: int = 1000,
        id_field: str | None = None,
        warm_standby: bool = True,
        build: Callable[[BundleRef], Any] | None = None,
        group_fields: tuple[str, ...] = (),
        on_champion: Callable[[str], None] | None = None,
    ) -> None:
        """`build` turns a verified BundleRef into what the routes serve (default: a churn Scorer).

        `group_fields`: the spec's fairness group columns a /score record may carry (logged for stage checks).
        `on_champion(tag)`: called on this thread after a new champion is swapped in (the score cache warms).
        """
        self.name = name
        self.build = build
        self.store = store
        self.state = state
        self.max_batch = max_batch
        self.id_field = id_field
        self.warm_standby = warm_standby
        self.group_fields = tuple(group_fields)
        self.on_champion = on_champion
        self.record = alias_dir(store.keel_dir, name) / STATE_FILE
        self._seen: tuple[Stamp, Any] | None = None
        self._backend_down: str | None = None  # why the rollout state store is unreachable (Redis backend)
        self._retry_at = 0.0
        self._scorers: dict[str, Scorer] = {}
        self._fired: set[str] = set()  # rollout ids this worker already rolled back
        self._next_trigger = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Re-read both records when either changed (or a failed load is due); True when the champion changed."""
        stamps = (_stamp(self.record), self._rollout_stamp())
        due = bool(self._retry_at) and time.monotonic() >= self._retry_at
        if stamps == self._seen and not due:
            return False
        self._seen, self._retry_at = stamps, 0.0
        changed = self._sync_aliases()
        self._sync_rollout()
        return changed

    def _sync_aliases(self) -> bool:
        try:
            record = aliases(self.name, store=self.store)
        except Exception as exc:  # damaged record: keep serving what we have
            self._failed(f"cannot read aliases for {self.name!r}: {exc}")
            self._seen = None  # re-read every tick until it is readable again
            return False
        tag, current = record.get("champion"), self.state.scorer
        changed = False
        if not tag:
            if current is None:
                self._failed(f"no champion for {self.name!r} in {self.store.home}: train and promote a bundle first")
        elif current is None or current.tag != tag:
            try:
                scorer = self._load(tag)
            except Exception as exc:  # IntegrityError (tampered file), missing files, wrong family
                self._retry_later()
                self._failed(f"champion {tag} refused at load: {type(exc).__name__}: {exc}")
                return False
            self.state.scorer = scorer
            self.state.error = None
            self.state.reload_error = None
            self.state.loaded_at = time.time()
            log.info("keel serving %s (threshold %s)", tag, scorer.threshold)
            changed = True
            if self.on_champion is not None:
                try:
                    self.on_champion(tag)
                except Exception as exc:  # a cache that cannot warm must not stop the watcher
                    log.error("keel serving: after the switch to %s: %s: %s", tag, type(exc).__name__, exc)
        self._sync_standby(record.get("standby"))
        return changed

    def _sync_standby(self, tag: str | None) -> None:
        if not self.warm_standby or not tag:
            self.state.standby = None
            return
        if self.state.standby is not None and self.state.standby.tag == tag:
            return
        try:
            self.state.standby = self._load(tag)
        except Exception as exc:
            self.state.standby = None
            self._retry_later()
            log.error("keel serving: standby %s not loaded (a rollback will load it cold): %s", tag, exc)

    def _rollout_stamp(self) -> Any:
        """The record's change token; while its store is unreachable, the last one seen (nothing reloads)."""
        try:
            stamp = rollout_stamp(self.store.keel_dir, self.name)
        except RolloutBackendDown as exc:
            self._keep_last_good(str(exc))
            return self._seen[1] if self._seen else "unavailable"
        if self._backend_down is not None:
            if self.state.rollout_error == self._backend_down:
                self.state.rollout_error = None
            log.info("keel serving: rollout state store reachable again")
            self._backend_down = None
        return stamp

    def _keep_last_good(self, reason: str) -> None:
        """Redis down: serve the rollout as last read (a rollback cannot be written meanwhile either) and say so."""
        revision = (self.state.rollout or {}).get("revision")
        message = f"{reason}; keeping the last good rollout state (revision {revision})"
        if self._backend_down != message:
            log.error("keel serving: %s", message)
        self._backend_down = self.state.rollout_error = message

    def _sync_rollout(self) -> None:
        state = self.state
        try:
            record = read_rollout(self.store.keel_dir, self.name)
        except RolloutBackendDown as exc:
            self._keep_last_good(str(exc))
            if self._seen is not None:
                self._seen = (self._seen[0], "unavailable")  # reload once it answers again
            return
        except RolloutError as exc:
            self._drop_challenger(f"rollout record damaged, serving the champion only: {exc}")
            state.rollout = None
            self._seen = None
            return
        state.rollout = record.to_dict() if record else None
        if record is None or not record.live:
            state.routing, state.rollout_error = None, None
            return
        routing = state.routing
        if (
            routing is not None
            and routing.rollout_id == record.rollout_id
            and routing.challenger.tag == record.challenger
            and (routing.stage, routing.traffic, routing.shadow_share)
            == (record.stage, record.traffic, record.shadow_share)
        ):
            return
        try:
            challenger = self._load(record.challenger, routable=True)
        except Exception as exc:
            self._retry_later()
            self._drop_challenger(f"challenger {record.challenger} not routed, champion only: {exc}")
            return
        if state.triggers is not None:
            state.triggers.reset(record.rollout_id)
        state.routing = Routing(record.rollout_id, record.stage, record.traffic, challenger, record.shadow_share)
        state.rollout_error = None
        log.info(
            "keel rollout %s: %s at %s (%.0f%%)",
            record.rollout_id,
            record.challenger,
            record.stage,
            record.traffic * 100,
        )

    def _drop_challenger(self, message: str) -> None:
        self.state.routing = None
        if self.state.rollout_error != message:
            log.error("keel serving: %s", message)
        self.state.rollout_error = message

    def _load(self, tag: str, routable: bool = False) -> Scorer:
        """A verified Scorer for `tag`, reused while any alias or the rollout still names it."""
        ref = self.store.get(tag)
        if routable:
            if not tag.startswith(f"{self.name}:"):
                raise ValueError(f"{tag} is not a bundle of {self.name!r}")
            if not ref.manifest.gate_passed:
                raise ValueError(f"{tag} did not pass its gates (gate_passed=false); it is never routed to")
        scorer = self._scorers.get(tag)
        if scorer is None:
            if self.build is not None:
                scorer = self.build(ref)
            else:
                scorer = Scorer(
                    load_tabular_bundle(ref), self.max_batch, id_field=self.id_field, group_fields=self.group_fields
                )
        self._scorers[tag] = scorer
        keep = {s.tag for s in (self.state.scorer, self.state.standby) if s is not None}
        if self.state.routing is not None:
            keep.add(self.state.routing.challenger.tag)
        for old in [t for t in self._scorers if t not in keep | {tag}]:
            del self._scorers[old]
        return scorer

    def check_triggers(self) -> str | None:
        """Roll the live rollout back once when its challenger breaches an immediate threshold; the reason or None."""
        state, routing = self.state, self.state.routing
        if state.triggers is None or routing is None or routing.rollout_id in self._fired:
            return None
        reason = state.triggers.breach("challenger")
        if reason is None:
            return None
        from pipeline.rollout.state import rollback  # the operations, only when a trigger fires

        try:
            rollback(
                self.name,
                f"immediate trigger: {reason}",
                rollout_id=routing.rollout_id,
                actor=f"keel-serving:{os.getpid()}",
                store=self.store,
            )
        except RolloutError as exc:  # another worker (or an operator) got there first: nothing left to do
            log.info("keel rollout %s: trigger not applied: %s", routing.rollout_id, exc)
        self._fired.add(routing.rollout_id)
        if state.routing is routing:
            state.routing = None  # this worker stops routing now; the others see rollout.json
        state.triggered = f"{routing.rollout_id}: {reason}"
        log.error("keel rollout %s rolled back by this worker: %s", routing.rollout_id, reason)
        return reason

    def start(self, interval_s: float = 0.05) -> None:
        """Poll on a daemon thread until stop(); the first check runs before this returns."""
        self.check()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), name="keel-champion-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.check()
                if time.monotonic() >= self._next_trigger:
                    self._next_trigger = time.monotonic() + TRIGGER_EVERY_S
                    self.check_triggers()
            except Exception:  # the watcher must never die silently
                log.exception("champion watch failed")

    def _retry_later(self) -> None:
        """A failed load is retried after RETRY_S (not every tick: each try re-hashes the whole bundle)."""
        self._retry_at = time.monotonic() + RETRY_S

    def _failed(self, message: str) -> None:
        if self.state.scorer is None:
            self.state.error = message
        elif self.state.reload_error != message:
            log.error("keel serving keeps %s: %s", self.state.scorer.tag, message)
        self.state.reload_error = message


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
