"""The simulated agencies' document systems: what each does next, given what it sees.

One policy for every mode. It is pure: no I/O, no trio, no clock of its own.
The flow (sim.py) tells it what the agencies see (a new document in an
inbox, the state of a thread after the statuses received so far, the time)
and does what it decides through a driver (driver.py).

* A recipient registers (03) or rejects (02) a new document, assigns it
  (04), processes it (05, one to three times) and finishes it (06), each
  step after the delay its :class:`StatusPlan` drew.
* A question is answered first: a take-back (13) with the plan's 15 or 16,
  a change document (update, revoke, replace) with 15.
* A sender asks for about 2 % of its documents back (13) from their first
  recipient, once that recipient's 01 is back; the recipient's system then
  answers even if it had finished.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from protocol.agency import AgencyCode
from protocol.ids import Digest
from protocol.status import Pending, Phase, StatusCode, ThreadState

from .workload import DocPlan, StatusPlan, plan_statuses


@dataclass
class Thread:
    """One document as one recipient agency's document system processes it."""

    doc: Digest
    recipient: AgencyCode
    plan: StatusPlan
    next_at: float
    steps_done: int = 0
    done: bool = False

    def label(self) -> str:
        return f"{self.doc.short()}->{self.recipient.short()}"


@dataclass(frozen=True)
class Takeback:
    recipient: AgencyCode
    at: float


class Agent:
    """The document systems of all simulated agencies (one dict of threads, so steps keep one order)."""

    def __init__(self, *, seed: int, mean_delay_s: float, rng: random.Random) -> None:
        """``rng`` draws the take-back times (shared with the run, so a run replays from its seed);
        each thread's plan is drawn from its own seed, whenever the document arrives."""
        self.seed = seed
        self.mean_delay_s = mean_delay_s
        self.rng = rng
        self.threads: dict[tuple[Digest, AgencyCode], Thread] = {}
        self.takebacks: dict[Digest, Takeback] = {}
        self._cursor: dict[AgencyCode, int] = {}

    # --- as a recipient -------------------------------------------------------------------

    def cursor(self, code: AgencyCode) -> int:
        """The last inbox position ``code``'s system has seen."""
        return self._cursor.get(code, 0)

    def arrived(self, code: AgencyCode, seq: int, doc: Digest, now: float) -> None:
        """``doc`` is at ``seq`` in ``code``'s inbox: a new document starts a thread."""
        self._cursor[code] = max(self.cursor(code), seq)
        if (doc, code) not in self.threads:
            plan = plan_statuses(random.Random(f"{self.seed}-{doc.hex()}-{code}"), mean_delay_s=self.mean_delay_s)
            self.threads[(doc, code)] = Thread(doc, code, plan, now + plan.delays[0])

    def due(self, now: float) -> list[Thread]:
        return [t for t in self.threads.values() if not t.done and t.next_at <= now]

    def next_status(self, t: Thread, state: ThreadState) -> StatusCode | None:
        """The status to send now, given the thread's state at the recipient; None: the thread is finished."""
        if state.pending is Pending.TAKEBACK:
            return t.plan.takeback_answer
        if state.pending is Pending.CHANGE:
            return StatusCode.AGREED
        if state.phase is Phase.ARRIVED:
            return StatusCode.REJECTED if t.plan.reject else StatusCode.ACCEPTED
        if state.phase is Phase.ACCEPTED:
            return StatusCode.ASSIGNED
        if state.phase is Phase.ASSIGNED:
            return StatusCode.PROCESSING
        if state.phase is Phase.PROCESSING:
            return StatusCode.PROCESSING if t.steps_done < t.plan.processing_steps else StatusCode.FINISHED
        t.done = True
        return None

    @staticmethod
    def note(t: Thread) -> str:
        return f"bước {t.steps_done + 1}"

    def stepped(self, t: Thread, code: StatusCode, *, sent: bool, now: float) -> None:
        """After trying to send ``code``: the next step comes after the plan's next delay, sent or not.

        Not sent means the node refused it (a take-back arrived meanwhile: the
        next step answers it) or could not take it (its node is down, its key
        was just revoked): the next step tries again.
        """
        if sent and code is StatusCode.PROCESSING:
            t.steps_done += 1
        t.next_at = now + t.plan.delays[min(len(t.plan.delays) - 1, t.steps_done + 1)]

    # --- as a sender ----------------------------------------------------------------------

    def submitted(self, doc: Digest, plan: DocPlan, now: float) -> None:
        if plan.takeback:
            self.takebacks[doc] = Takeback(plan.recipients[0], now + self.rng.expovariate(1 / self.mean_delay_s))

    def takebacks_due(self, now: float) -> list[tuple[Digest, AgencyCode]]:
        return [(doc, tb.recipient) for doc, tb in self.takebacks.items() if tb.at <= now]

    def takeback_later(self, doc: Digest, at: float) -> None:
        """The recipient's 01 is not back yet: a 13 before it would be refused; ask at ``at``."""
        self.takebacks[doc] = Takeback(self.takebacks[doc].recipient, at)

    def takeback_dropped(self, doc: Digest) -> None:
        """The node refused the 13 (e.g. the document was rejected already): not every take-back is possible."""
        del self.takebacks[doc]

    def takeback_sent(self, doc: Digest, recipient: AgencyCode, now: float) -> None:
        """The 13 is sent: the recipient's system must answer it, even if it had finished."""
        del self.takebacks[doc]
        thread = self.threads.get((doc, recipient))
        if thread is not None:
            thread.done = False
            thread.next_at = now + thread.plan.delays[-1]

    # --- settling -------------------------------------------------------------------------

    def finished(self) -> bool:
        return not self.takebacks and all(t.done for t in self.threads.values())

    def unfinished(self) -> list[str]:
        return [t.label() for t in self.threads.values() if not t.done]
