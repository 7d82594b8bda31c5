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


def without(needs: Needs, skill: str) -> Needs:
    """The needs with one skill dropped (relaxation)."""
    return tuple(r for r in needs if r.skill != skill)


@dataclass(frozen=True)
class Relaxation:
    """A skill a waiting call stopped asking for, and why (for the call's transcript and the screen pop)."""

    skill: str
    reason: str  # "unstaffed": no logged-in agent of the queue has it; "timeout": none free within relax_after_s
    waited_s: float

    def describe(self) -> str:
        why = ("no logged-in agent has it" if self.reason == "unstaffed"
               else f"nobody with it free after {self.waited_s:.0f} s")
        return f"skill {self.skill} relaxed ({why})"


def relax_reason(
    call_needs: Needs, queue_needs: Needs, staffed: Iterable[Mapping[str, int]], waited_s: float,
    relax_after_s: float | None,
) -> str | None:
    """Whether a waiting call should drop its next relaxable skill now, and why.

    `staffed`: the skills of the queue's logged-in agents. "unstaffed" when some agent is logged in for the
    queue but none of them meets the call's needs (waiting cannot help); "timeout" after `relax_after_s`
    (counted from joining or from the last relaxation). None: keep waiting for the skill.
    """
    want = merge_needs(queue_needs, call_needs)
    logged_in = list(staffed)
    if logged_in and not any(meets(s, want) for s in logged_in):
        return "unstaffed"
    if relax_after_s is not None and waited_s >= relax_after_s:
        return "timeout"
    return None
