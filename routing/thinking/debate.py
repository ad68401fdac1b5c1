"""`debate`: `rounds` rounds; the first independent, each later one showing every member the others'
last answers; then a majority vote over the last round. A member that fails drops out.
"""

from __future__ import annotations

import functools

from routing.request import Message
from routing.thinking.base import Asker, Messages, Options, Thought, majority, nobody


def rebuttal_messages(messages: Messages, own: str, others: dict[str, str], round_no: int) -> Messages:
    shown = "\n\n".join(f"--- {name} ---\n{text}" for name, text in others.items())
    return [*messages, Message("assistant", own),
            Message("user", f"Round {round_no} of a debate. Other participants answered:\n\n{shown}\n\n"
                    "Weigh their arguments against yours. Then give your complete final answer; change it only "
                    "where they are right.")]


async def think(asker: Asker, messages: Messages, lead: str, partners: list[str], opts: Options) -> Thought:
    members = [lead, *[p for p in partners if p != lead]]
    deadline = asker.deadline(members)
    asker.progress(f"debate · round 1 · {', '.join(members)}")
    last = await asker.poll({m: functools.partial(asker.ask, m, messages, "debater r1") for m in members}, deadline)
    for r in range(2, opts.rounds + 1):
        if len(last) < 2:
            break
        asker.progress(f"debate · round {r} · {', '.join(last)}")
        prev = dict(last)
        asks = {m: functools.partial(asker.ask, m, rebuttal_messages(messages, prev[m],
                                                                     {o: t for o, t in prev.items() if o != m}, r),
                                     f"debater r{r}")
                for m in prev}
        answered = await asker.poll(asks, deadline)
        last = answered or prev
    if not last:
        raise nobody("debate: no member answered", asker, members)
    winner, agree = majority(last, {}, opts.similarity, messages)
    return Thought(last[winner], winner, "debate", agree)
