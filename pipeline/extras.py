"""Optional dependencies as extras: a missing one is a clear `pip install 'keel[x]'`, exit 2, no traceback.

    keel[recsys]  torch, faiss-cpu, implicit  recommendation specs (two-tower, FAISS, ranker; implicit: als)
    keel[serve]   uvloop, httptools, redis    `keel serve` / `keel build` (uvicorn's fast loop and parser)
    keel[dask]    dask, distributed, prefect-dask   runtime.executor: dask
    keel[dev]     pytest, ruff, hypothesis ...      the test suite

BentoML is not an extra: the registry writes every bundle as a BentoML model (its `model.yaml`), so
`keel run` needs it as much as `keel serve` does (docs/adr/0026-keel-travels.md).
"""

from __future__ import annotations

import importlib.util

# import name -> the extra that installs it
MODULE_EXTRA = {
    "torch": "recsys",
    "faiss": "recsys",
    "implicit": "recsys",  # only the `als` retrieval source imports it
    "uvloop": "serve",
    "httptools": "serve",
    "redis": "serve",
    "dask": "dask",
    "distributed": "dask",
    "prefect_dask": "dask",
}
EXTRA_MODULES = {
    "recsys": ("torch", "faiss"),
    "serve": ("uvloop", "httptools"),
    "dask": ("dask", "distributed", "prefect_dask"),
}


class MissingExtra(Exception):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, extra: str, modules: list[str], needed_for: str = "") -> None:
        self.extra, self.modules = extra, modules
        what = f" ({needed_for})" if needed_for else ""
        super().__init__(
            f"{', '.join(modules)} not installed: this needs keel[{extra}]{what}; "
            f"install it with: pip install 'keel[{extra}]' "
            f"(in a checkout: pip install -c constraints.txt -e '.[{extra}]')"
        )


def missing(extra: str) -> list[str]:
    """The modules of `extra` this Python cannot import."""
    return [name for name in EXTRA_MODULES[extra] if not _importable(name)]


def require(extra: str, needed_for: str = "") -> None:
    gone = missing(extra)
    if gone:
        raise MissingExtra(extra, gone, needed_for)


def require_for_spec(spec: object, verb: str) -> None:
    """What a verb needs beyond the core for this spec: torch/faiss to train or serve recommendations."""
    if getattr(spec, "task", None) == "recommendation" and verb in ("run", "serve", "build", "score"):
        require("recsys", "a recommendation spec: two-tower, FAISS")
    runtime = getattr(spec, "runtime", None)
    if getattr(runtime, "executor", None) == "dask" and verb == "run":
        require("dask", "runtime.executor: dask")


def from_import_error(exc: ImportError) -> MissingExtra | None:
    """The MissingExtra an ImportError of an optional module stands for (None: a real bug, let it raise)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = MODULE_EXTRA.get(name)
    return MissingExtra(extra, [name]) if extra else None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
