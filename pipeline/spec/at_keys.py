"""Overrides whose key path holds an `@`, such as `gates.ndcg@10.min=0.12` or `~gates.hit@10`.

Hydra reads `@` in an override key as a package (`group@package=option`), so `gates.ndcg@10.min=0`
was taken for a config group and `~gates.hit@10` failed to parse — yet metric names like `ndcg@10`
are gate names. Keel takes such overrides out before Hydra composes (a key with a `.` before its
`@` is never a group choice: group names have no dots) and applies them to the composed config
with OmegaConf; the value is parsed by Hydra's own override grammar, so lists, dicts and quoting
work as everywhere else.
"""

from __future__ import annotations

from typing import Any


def is_at_key(override: str) -> bool:
    """`a.b@c...=v`, `+a.b@c=v` or `~a.b@c`: a literal key path with an `@` (not `group@package`)."""
    key = override.partition("=")[0].lstrip("+~")
    return "@" in key and "." in key.split("@", 1)[0]


def split_at_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(overrides for Hydra, overrides with `@` key paths for apply_at_overrides)."""
    return [o for o in overrides if not is_at_key(o)], [o for o in overrides if is_at_key(o)]


def apply_at_overrides(cfg: Any, overrides: list[str]) -> list[tuple[str, str]]:
    """Apply them to the composed OmegaConf `cfg` (struct flag lifted by the caller); (key, problem) pairs."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parser = OverridesParser.create()
    problems: list[tuple[str, str]] = []
    for text in overrides:
        key, sep, value = text.partition("=")
        path = key.lstrip("+~")
        parts = path.split(".")
        parent = OmegaConf.select(cfg, ".".join(parts[:-1])) if len(parts) > 1 else cfg
        if key.startswith("~"):
            if parent is None or parts[-1] not in parent:
                problems.append((path, f"cannot remove {path}: no such key"))
            else:
                del parent[parts[-1]]
            continue
        if not sep:
            problems.append((path, "an override needs a value: key=value (or ~key to remove it)"))
            continue
        try:
            parsed = parser.parse_override(f"keel_value={value}").value()
        except Exception as exc:  # Hydra's grammar error, worded by Hydra
            problems.append((path, f"cannot parse the value {value!r}: {str(exc).splitlines()[0]}"))
            continue
        # like `++`: a key with only a schema default may be set; the schema check that follows catches typos
        OmegaConf.update(cfg, path, parsed, merge=True, force_add=True)
    return problems
