"""Skills with levels: an agent has {"zh": 3, "cards": 2, "vip": 1}; a queue or a call needs some of them.

Conventions used in configs (any string works): languages ("zh", "en"), product lines ("cards",
"loans", "wealth", "accounts"), and "vip" whose level is the highest VIP tier the agent may serve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SkillRequirement:
    skill: str
    min_level: int = 1


Needs = tuple[SkillRequirement, ...]


def needs_of(spec: Mapping[str, int] | Iterable[str | SkillRequirement] | None) -> Needs:
    """{"zh": 2} or ["zh", SkillRequirement("cards", 2)] → a sorted tuple of requirements."""
    if spec is None:
        return ()
    if isinstance(spec, Mapping):
        items = [SkillRequirement(k, int(v)) for k, v in spec.items()]
    else:
        items = [s if isinstance(s, SkillRequirement) else SkillRequirement(s) for s in spec]
    return tuple(sorted(items))


def merge_needs(*groups: Needs) -> Needs:
    """Union of requirements; the stricter level wins when a skill appears twice."""
    best: dict[str, int] = {}
    for group in groups:
        for r in group:
            best[r.skill] = max(best.get(r.skill, 0), r.min_level)
    return tuple(SkillRequirement(k, v) for k, v in sorted(best.items()))


def meets(skills: Mapping[str, int], needs: Needs) -> bool:
    return all(skills.get(r.skill, 0) >= r.min_level for r in needs)


def skill_score(skills: Mapping[str, int], needs: Needs) -> int:
    """How well an agent covers the needs: the sum of their levels in the needed skills."""
    return sum(skills.get(r.skill, 0) for r in needs)
