"""Model params come from the family's group file (`conf/model/<family>.yaml`) unless the spec says otherwise.

Two rules applied to the composed spec, before it is type-checked:

- **Candidates inherit their family's group params.** A `candidates` entry `{family: lightgbm,
  params: {num_leaves: 15}}` gets `conf/model/lightgbm.yaml`'s params (early stopping included)
  under its own, as `model` does through the defaults list; without this it would get the
  schema's bare defaults and train differently from the same family declared as `model`.
- **A family chosen on the command line takes that family's params.** `keel run SPEC
  model=logistic` (or a sweep `-m model=lightgbm,logistic`) on a spec whose defaults name
  `lightgbm` gets `conf/model/logistic.yaml`'s params: the spec's own `model.params` were
  written for lightgbm and are left out (they would not even type-check). A `model.params.X=`
  override on the command line still applies. So does the spec's `model.search` only when it is
  `default`: a grid written for lightgbm names lightgbm's keys.
- **`search: default` takes the group's grid.** `conf/model/<family>.yaml`'s `default_search` (a
  small documented grid) replaces it, so `keel show`, `keel diff` and the spec hash see the points
  that will be tried. `default_search` itself never reaches the spec: a group composed into
  `model` brings it along, and it is removed here (docs/adr/0032-parameter-search.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.spec.source_map import YamlProblem, read_yaml

GROUP = "model"
DEFAULT_SEARCH = "default_search"  # a group file's grid for `search: default`


def apply_model_groups(
    data: dict[str, Any],
    choices: dict[str, str],
    primary: Any,
    override_keys: dict[str, str],
    conf_dirs: list[Path],
) -> None:
    """Edit the composed spec `data` in place (see the module docstring)."""
    if not isinstance(data, dict):
        return
    chosen = choices.get(GROUP)
    declared = _declared_option(primary)
    model = data.get("model")
    if chosen and declared and chosen != declared and isinstance(model, dict):
        group = _group_model(chosen, conf_dirs)
        if group is not None:
            composed = model.get("params") if isinstance(model.get("params"), dict) else {}
            params = dict(group.get("params") or {})
            params |= {k: v for k, v in composed.items() if f"model.params.{k}" in override_keys}
            model["params"] = params
            if isinstance(group.get("family"), str) and "model.family" not in override_keys:
                model["family"] = group["family"]
            if model.get("search") != "default" and not any(k.startswith("model.search") for k in override_keys):
                model.pop("search", None)
    if isinstance(model, dict):
        model.pop(DEFAULT_SEARCH, None)
        _default_search(model, conf_dirs)
    for candidate in data.get("candidates") or []:
        if not isinstance(candidate, dict) or not isinstance(candidate.get("family"), str):
            continue
        _default_search(candidate, conf_dirs)
        group = _group_model(candidate["family"], conf_dirs)
        if group is None or group.get("family") != candidate["family"]:
            continue
        own = candidate.get("params")
        if own is not None and not isinstance(own, dict):
            continue  # the type check says what is wrong with it
        candidate["params"] = {**(group.get("params") or {}), **(own or {})}


def _default_search(model: dict[str, Any], conf_dirs: list[Path]) -> None:
    """`search: default` -> the family group's `default_search` grid (left as is when the group has none)."""
    if model.get("search") != "default" or not isinstance(model.get("family"), str):
        return
    group = _group_model(model["family"], conf_dirs)
    grid = group.get(DEFAULT_SEARCH) if group is not None and group.get("family") == model["family"] else None
    if isinstance(grid, dict):
        model["search"] = {key: list(values) if isinstance(values, list) else values for key, values in grid.items()}


def _declared_option(primary: Any) -> str | None:
    """The `model` option the spec file's own defaults list names (None: it names none)."""
    defaults = getattr(primary, "data", None)
    defaults = defaults.get("defaults") if isinstance(defaults, dict) else None
    for entry in defaults if isinstance(defaults, list) else []:
        if isinstance(entry, dict):
            for key, option in entry.items():
                if str(key).removeprefix("override ").lstrip("+~").split("@")[0] == GROUP and isinstance(option, str):
                    return option
    return None


def _group_model(option: str, conf_dirs: list[Path]) -> dict[str, Any] | None:
    """`conf/model/<option>.yaml` from the first search directory that has it, as plain data."""
    if not option or "/" in option or ".." in option:
        return None
    for conf in conf_dirs:
        path = conf / GROUP / f"{option}.yaml"
        if path.is_file():
            try:
                source = read_yaml(path, str(path))
            except YamlProblem:
                return None  # composition already read it; its problem is reported there
            if source.package not in (None, "", GROUP):
                return None  # a file that places itself elsewhere: left as Hydra composed it
            data = source.data
            if not isinstance(data, dict):
                return None
            params = data.get("params")
            if params is not None and not isinstance(params, dict):
                return None
            return data
    return None
