"""Samples: a member named several times in a council is several independent samples of one backend,
named `smol#1`, `smol#2`, ... in the metadata."""

from __future__ import annotations


def backend_of(member: str) -> str:
    """The backend behind a member's name: `smol#2` (the second sample of `smol`) is `smol`."""
    name, sep, n = member.rpartition("#")
    return name if sep and n.isdigit() else member


def samples(members: list[str]) -> list[tuple[str, str]]:
    """Each mention of a member as (its name in the metadata, its backend): a backend named once keeps
    its name; one named several times is several samples, `smol#1`, `smol#2`, ..."""
    counts: dict[str, int] = {}
    for m in members:
        counts[m] = counts.get(m, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for m in members:
        if counts[m] == 1:
            out.append((m, m))
        else:
            seen[m] = seen.get(m, 0) + 1
            out.append((f"{m}#{seen[m]}", m))
    return out
