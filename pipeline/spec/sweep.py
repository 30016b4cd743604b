"""`keel run -m`: Hydra's sweep grammar expanded into jobs, every job's spec checked before any runs.

Parsing uses Hydra's own `OverridesParser` and the combinations come from its
`BasicSweeper.split_arguments`, so `a=1,2`, `a=range(1,4)`, `a=choice(x,y)` and
`model=lightgbm,logistic` mean exactly what they mean in a Hydra multirun (cartesian
product, the first sweep key varying slowest). Overrides that are not sweeps are passed
on as typed, so provenance in error messages shows the user's own text. No Prefect
here: a bad combination must cost a second, not a server start (docs/adr/0005).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.spec.errors import Problem, SpecError
from pipeline.spec.limits import override_problem
from pipeline.spec.load import LoadedSpec, load_spec
from pipeline.spec.security import check_overrides

MAX_JOBS = 256
"""More combinations than this is almost certainly a typo (range(0,10000)); each job is a full run."""


@dataclass(frozen=True)
class SweepJob:
    """One combination: `overrides` is the job's full override list, `swept` the part that varies."""

    index: int  # 1-based, in Hydra's order
    overrides: tuple[str, ...]
    swept: tuple[str, ...]

    @property
    def label(self) -> str:
        return " ".join(self.swept) or "(no sweep overrides)"


@dataclass(frozen=True)
class SweepProblem(Problem):
    """A spec problem of one combination: which job, with which swept values."""

    job: int = 0
    swept: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "job": self.job, "overrides": list(self.swept)}


class SweepSpecError(SpecError):
    """Every invalid combination of a sweep, each problem tagged with its job; the CLI exits 2."""

    def __init__(self, problems: list[SweepProblem], spec_file: str, jobs: int):
        self.jobs = jobs  # before super().__init__, which renders
        super().__init__(problems, spec_file=spec_file)
        self.problems = sorted(self.problems, key=lambda p: (getattr(p, "job", 0), p.file, p.line or 0, p.key))

    def render(self) -> str:
        bad = sorted({getattr(p, "job", 0) for p in self.problems})
        lines = [
            f"sweep over {self.spec_file}: {len(bad)} of {self.jobs} combination{'s' if self.jobs != 1 else ''} "
            f"{'is' if len(bad) == 1 else 'are'} invalid; nothing was run:"
        ]
        for job in bad:
            problems = [p for p in self.problems if getattr(p, "job", 0) == job]
            swept = " ".join(getattr(problems[0], "swept", ())) or "(no sweep overrides)"
            lines.append(f"  job {job} [{swept}]:")
            lines += [f"    {p.render()}" for p in problems]
        return "\n".join(lines)


def sweep_overrides(overrides: list[str]) -> list[str]:
    """The overrides that are sweeps (`a=1,2`, `range(...)`); [] when none or unparsable.

    Cheap pre-filter first: Hydra's parser is only built when a value could be a sweep.
    """
    if not any("," in o or "(" in o for o in overrides):
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    found = []
    for text in overrides:
        if override_problem(text):
            continue  # too long or too deep for Hydra's recursive parser: check_overrides reports it
        try:
            [parsed] = parser.parse_overrides([text])
        except (HydraException, RecursionError):
            continue  # compose reports unparsable overrides with its own message
        if parsed.is_sweep_override():
            found.append(text)
    return found


def expand_sweep(overrides: list[str], spec_file: str = "") -> list[SweepJob]:
    """One SweepJob per combination of the sweep overrides; SpecError for what cannot be swept."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    problems = check_overrides(overrides)  # before expansion: Hydra escapes ${...} in swept values
    if problems:
        raise SpecError(problems, spec_file=spec_file)
    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed += parser.parse_overrides([text])
        except RecursionError:
            problems.append(Problem(f"command line override '{text}'", None, _key(text), "nested too deeply to parse"))
        except HydraException as exc:
            reason = str(exc).splitlines()[0]
            problems.append(Problem(f"command line override '{text}'", None, _key(text), f"cannot parse: {reason}"))
    sweeps = [o for o in parsed if o.is_sweep_override()]
    sizes = []
    for override in sweeps:
        where = f"command line override '{override.input_line}'"
        key = override.get_key_element().lstrip("+~")
        if not override.is_discrete_sweep():
            reason = (
                "interval(...) is a continuous range that only a search sweeper (e.g. Optuna) can sample; "
                "keel sweeps enumerate values: use a comma list, range(...) or choice(...)"
            )
            problems.append(Problem(where, None, key, reason))
            continue
        try:
            values = list(override.sweep_string_iterator())
        except HydraException:  # glob() lists config-group options through a ConfigLoader keel does not run
            reason = "glob(...) is not supported in keel sweeps; list the options (e.g. model=lightgbm,logistic)"
            problems.append(Problem(where, None, key, reason))
            continue
        if not values:
            problems.append(Problem(where, None, key, "the sweep has no values"))
        sizes.append(len(values))
    if not problems and math.prod(sizes) > MAX_JOBS:
        shape = " x ".join(str(n) for n in sizes)
        reason = f"the sweep has {math.prod(sizes)} combinations ({shape}); at most {MAX_JOBS}"
        problems.append(Problem("command line", None, "", reason))
    if problems:
        raise SpecError(problems, spec_file=spec_file)
    if not sweeps:
        return [SweepJob(1, tuple(overrides), ())]
    try:
        [combinations] = BasicSweeper.split_arguments(sweeps, None)
    except HydraException as exc:
        raise SpecError([Problem("command line", None, "", str(exc).splitlines()[0])], spec_file=spec_file) from None
    jobs = []
    for index, combination in enumerate(combinations, start=1):
        values = {text.split("=", 1)[0]: text for text in combination}
        job: list[str] = []
        for override in parsed:
            if not override.is_sweep_override():
                job.append(override.input_line or "")
                continue
            text = values.pop(override.get_key_element(), None)
            if text is not None:  # a key swept twice: Hydra keeps the last values, once
                job.append(text)
        jobs.append(SweepJob(index, tuple(job), tuple(combination)))
    return jobs


def check_sweep(spec: str | Path, jobs: list[SweepJob], conf_dirs: list[Path] | None = None) -> list[LoadedSpec]:
    """Compose and check every combination; one SweepSpecError lists every bad one."""
    loaded: list[LoadedSpec] = []
    problems: list[SweepProblem] = []
    spec_file = str(spec)
    for job in jobs:
        try:
            loaded.append(load_spec(spec, list(job.overrides), conf_dirs))
        except SpecError as exc:
            spec_file = exc.spec_file or spec_file
            problems += [SweepProblem(p.file, p.line, p.key, p.reason, job.index, job.swept) for p in exc.problems]
    if problems:
        raise SweepSpecError(problems, spec_file, len(jobs))
    return loaded


def _key(text: str) -> str:
    return text.split("=", 1)[0].lstrip("+~")
