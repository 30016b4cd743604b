"""Follow the champion alias while serving: a promotion or rollback is picked up without a restart.

Why polling a stat() and not inotify: the alias record is replaced by rename (a new inode), works
the same on every filesystem, and one `os.stat` every half second costs nothing. A change is loaded
on the watcher's thread, off the request path, sha256-verified like any load; only a scorer that
loaded completely is swapped in, with one assignment (requests in flight finish on the old one).
A failed load keeps the previous champion serving and is reported on /status; with nothing
serving yet (no champion at start, a tampered file), the watcher simply keeps retrying.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from pipeline.registry import BundleStore
from pipeline.registry.alias_state import STATE_FILE, alias_dir
from pipeline.registry.aliases import aliases
from pipeline.registry.tabular import load_tabular_bundle
from pipeline.serving.app import ServingState
from pipeline.serving.scorer import Scorer

log = logging.getLogger("keel.serving")


class ChampionWatcher:
    """Keeps `state.scorer` on the current champion of `name` in `store`."""

    def __init__(self, name: str, store: BundleStore, state: ServingState, max_batch: int = 1000) -> None:
        self.name = name
        self.store = store
        self.state = state
        self.max_batch = max_batch
        self.record = alias_dir(store.keel_dir, name) / STATE_FILE
        self._seen: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Reload when the alias record changed and names another champion; True when a new scorer went live."""
        stamp = _stamp(self.record)
        if stamp is not None and stamp == self._seen and self.state.scorer is not None:
            return False
        try:
            tag = aliases(self.name, store=self.store).get("champion")
        except Exception as exc:  # damaged record: keep serving what we have
            self._failed(f"cannot read aliases for {self.name!r}: {exc}")
            return False
        self._seen = stamp
        current = self.state.scorer
        if not tag:
            if current is None:
                self._failed(f"no champion for {self.name!r} in {self.store.home}: train and promote a bundle first")
            return False
        if current is not None and current.tag == tag:
            return False
        try:
            scorer = Scorer(load_tabular_bundle(self.store.get(tag)), max_batch=self.max_batch)
        except Exception as exc:  # IntegrityError (tampered file), missing files, wrong family
            self._seen = None  # retry on the next tick: the bundle may still be arriving
            self._failed(f"champion {tag} refused at load: {type(exc).__name__}: {exc}")
            return False
        self.state.scorer = scorer
        self.state.error = None
        self.state.reload_error = None
        self.state.loaded_at = time.time()
        log.info("keel serving %s (threshold %.3f)", tag, scorer.threshold)
        return True

    def start(self, interval_s: float = 0.5) -> None:
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
            except Exception:  # the watcher must never die silently
                log.exception("champion watch failed")

    def _failed(self, message: str) -> None:
        if self.state.scorer is None:
            self.state.error = message
        elif self.state.reload_error != message:
            log.error("keel serving keeps %s: %s", self.state.scorer.tag, message)
        self.state.reload_error = message


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
