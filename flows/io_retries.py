"""Retries for the flows' I/O tasks: a transient read failure (NFS hiccup, a file mid-copy) is tried again.

Only OS-level errors are retried: a bad file (DataSourceError) or a contract failure would fail the
same way again, and retrying it would only double the logs and the wait.
"""

from __future__ import annotations

from typing import Any


def transient_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry_condition_fn: retry when the task failed with an OSError (not a data or spec error)."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


IO_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 2, "retry_condition_fn": transient_io_error}
