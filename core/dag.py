"""A curriculum as a tree: which stages a failure holds back, and the order and depth a tree is drawn in.

Every stage starts from one earlier stage or from the base model (`from:`), so the stages form a
tree rooted at the base (drawn so); a distill stage also reads its teacher and a route stage its
experts. A stage that fails, or whose gate fails or is rejected, holds back only the stages that
read it, directly or through others; an evaluation stage that fails its gate holds back what starts
from the stage it evaluated (it is that stage's promotion gate).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

BASE = "base"  # `from: base`: a stage that starts from model.base, beside the first stage (a branch)


def parent_of(from_: str | None) -> str:
    """The stage a stage starts from; BASE for the first stage and for `from: base`."""
    return from_ or BASE


class Reader(Protocol):
    """A stage as Holds sees it (core.config.StageSpec)."""

    name: str
    kind: str
    from_: str | None

    def needs(self) -> list[str]: ...


class Holds:
    """What each stage that did not pass holds back, as the supervisor learns of it."""

    def __init__(self):
        self.why: dict[str, str] = {}  # stage (or BASE) -> why the stages reading it cannot run

    def ended_badly(self, stage: Reader, status: str) -> None:
        why = f"{stage.name} {status.replace('_', ' ')}"
        self.why[stage.name] = why
        if stage.kind == "eval":  # an eval stage gates the stage it read
            self.why.setdefault(parent_of(stage.from_), why)

    def held(self, stage: Reader) -> str | None:
        """Why `stage` cannot run now (None: it can): a stage it reads (its parent, a teacher, experts) did not
        pass; a held stage holds back its own branch too."""
        why = next((self.why[n] for n in stage.needs() if n in self.why), None)
        if why is not None:
            self.why.setdefault(stage.name, why)
        return why


@dataclass(frozen=True)
class TreeRow:
    """One stage as a tree draws it: its position in the curriculum and the box lines before its name."""

    index: int
    prefix: str  # "", "├╴", "│ └╴" …
    indent: str  # what the lines below it carry at its level: "│ " while its branch's siblings follow


def tree_rows(stages: Iterable[tuple[str, str | None, bool]]) -> list[TreeRow]:
    """The stages, given as (name, from, writes a model) in curriculum order, in drawing order.

    A stage with one model-writing child goes on in a straight line; one with several branches, each
    child drawn one level deeper with box lines (depth-first, curriculum order among siblings). Stages
    that only evaluate are leaves drawn before the line goes on. A straight curriculum is drawn flat.
    """
    stages = list(stages)
    children: dict[str, list[int]] = {}
    for i, (_, from_, _) in enumerate(stages):
        children.setdefault(parent_of(from_), []).append(i)
    rows: list[TreeRow] = []

    def branch(node: str, indent: str) -> None:
        kids = children.get(node, [])
        if sum(stages[k][2] for k in kids) <= 1:  # a straight line: evaluations first, then the one that goes on
            for k in sorted(kids, key=lambda k: stages[k][2]):
                draw(k, indent, indent)
            return
        for j, k in enumerate(kids):
            last = j == len(kids) - 1
            draw(k, indent + ("└╴" if last else "├╴"), indent + ("  " if last else "│ "))

    def draw(i: int, prefix: str, indent: str) -> None:
        rows.append(TreeRow(i, prefix, indent))
        branch(stages[i][0], indent)

    branch(BASE, "")
    return rows
