"""The one error type a caller can cause: a bad request, always answered with a 4xx."""

from __future__ import annotations


class RequestError(ValueError):
    """The request breaks the bundle's input contract; `problems` names every offending field.

    Kept separate from model or registry errors so the HTTP layer can map exactly this type to
    422 and treat anything else as a server fault (logged, never echoed with a traceback).
    """

    def __init__(self, problems: list[str], status: int = 422) -> None:
        self.problems = list(problems)
        self.status = status
        super().__init__("; ".join(self.problems))

    def to_body(self) -> dict[str, object]:
        return {"error": "invalid request", "problems": self.problems}
