"""Running one user action as one transaction, retried when it only lost an optimistic lock."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from engine.errors import StaleInstance

T = TypeVar("T")


def run_in_transaction(session_factory: sessionmaker, action: Callable[[Session], T], *, attempts: int = 3) -> T:
    """Run ``action(session)`` and commit; roll back on any error.

    When another action on the same call committed first (:class:`StaleInstance`,
    e.g. two departments signing at the same moment) the action is re-run from
    scratch after a rollback, up to ``attempts`` times: it re-reads
    everything, so a retry can still fail cleanly (e.g. "already completed").
    """
    with session_factory() as session:
        try:
            return retry_stale(session, lambda: action(session), attempts=attempts)
        except BaseException:
            session.rollback()
            raise


def retry_stale(session: Session, action: Callable[[], T], *, attempts: int = 3) -> T:
    """Run ``action()`` in ``session`` (a request's) and commit it, as :func:`run_in_transaction` does:
    a lost optimistic lock rolls back and runs it again, up to ``attempts`` times, then re-raises.

    Any other error propagates with the session left for the caller to roll back (its handler
    decides what the user sees).
    """
    for attempt in range(1, attempts + 1):
        try:
            result = action()
            session.commit()
            return result
        except StaleInstance:
            session.rollback()
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")
