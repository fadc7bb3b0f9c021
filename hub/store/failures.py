"""What a database driver's exception means for the hub: pure classification, no I/O.

SQLite (through aiosqlite) and PostgreSQL (through asyncpg) fail in their own words; the store
turns them into one of three typed errors at its boundary (``hub.store.database``: reads and
the writer), so every caller can tell "try again later" from "this is a bug" without knowing
which database runs underneath.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from hub.errors import HubError, StoreConflict, StoreError, StoreUnavailable

#: PostgreSQL SQLSTATE classes that mean "the database cannot serve now", not "this statement is
#: wrong": 08 connection, 53 insufficient resources (disk full 53100, out of memory, too many
#: connections), 57 operator intervention (shutdown, cannot connect now), 58 system error (I/O),
#: 3D no such database, 55 object not in prerequisite state (not accepting connections), 40
#: transaction rollback (serialization failure, deadlock)
_PG_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57", "58", "3D", "55", "40"})
_PG_UNAVAILABLE_CODES = frozenset({"42501"})  # insufficient privilege: revoked access
#: SQLite primary result codes (``sqlite_errorname`` before any ``_`` extension) that mean the
#: file cannot be used now: disk full, I/O error, read-only, cannot open, busy/locked, ...
_SQLITE_UNAVAILABLE = frozenset(
    {
        "FULL",
        "IOERR",
        "READONLY",
        "CANTOPEN",
        "BUSY",
        "LOCKED",
        "PERM",
        "NOLFS",
        "CORRUPT",
        "NOTADB",
        "PROTOCOL",
        "AUTH",
    }
)


def translate(exc: BaseException) -> StoreError | None:
    """The typed store error for what a driver raised, or None if ``exc`` is not a database
    failure (our own :class:`HubError` s and bugs pass through unchanged).

    :class:`StoreUnavailable` when the database cannot serve right now, whichever driver said
    so (SQLite's "database or disk is full", "unable to open database file"; PostgreSQL
    down, terminated, refusing connections, out of disk): callers answer ``unavailable`` / 503.
    :class:`StoreConflict` for a uniqueness violation; :class:`StoreError` for anything else the
    database refused (a bug in a statement)."""
    if isinstance(exc, HubError):
        return None
    message = f"{exc.__class__.__name__}: {exc}".split("\n", 1)[0]
    if isinstance(exc, sa_exc.IntegrityError):
        return StoreConflict(f"write refused: {message}")
    if isinstance(exc, sa_exc.DBAPIError):
        verdict = _driver_verdict(exc.orig)
        if verdict is None:  # the driver did not say: SQLAlchemy's categories decide
            verdict = exc.connection_invalidated or isinstance(
                exc, sa_exc.OperationalError | sa_exc.InterfaceError
            )
        if verdict or exc.connection_invalidated:
            return StoreUnavailable(f"the database is unavailable: {_reason(exc)}")
        return StoreError(f"the database refused: {message}")
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return StoreUnavailable(f"the database is unavailable: {message}")
    if _driver_verdict(exc) or isinstance(exc, OSError | TimeoutError):
        return StoreUnavailable(f"the database is unavailable: {message}")
    return None


def _driver_verdict(error: BaseException | None) -> bool | None:
    """Whether a driver's own exception says the database cannot serve now; None when it
    carries no code (SQLite's result code, PostgreSQL's SQLSTATE) to tell."""
    if error is None:
        return None
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in _PG_UNAVAILABLE_CLASSES or sqlstate in _PG_UNAVAILABLE_CODES
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str) and name.startswith("SQLITE_"):
        return name.removeprefix("SQLITE_").split("_", 1)[0] in _SQLITE_UNAVAILABLE
    if isinstance(error, OSError | TimeoutError):
        return True
    return None


def _reason(exc: sa_exc.DBAPIError) -> str:
    """The driver's own words, without SQLAlchemy's statement and background link."""
    orig = exc.orig if exc.orig is not None else exc
    return str(orig).split("\n", 1)[0] or orig.__class__.__name__
