"""Work shared by concurrent runs, arbitrated by the database: a lock per dataset and a claim per sample.

Two runs on one dataset may be two processes on two machines (the CLI, a script, the App's delegated
operations); the FiftyOne database is the one thing they all reach. MongoDB refuses a second document with
the same ``_id`` and applies each document update atomically, which is all a lease needs: whoever writes the
``_id`` first holds it. Every lease names its holder (a token, the host and the process id) and an expiry
taken from the database's own clock (no two machines need agree on the time); a background thread renews a
holder's leases while it lives. A crashed holder's leases are taken over once they expire, or at once when
the holder was a process of this machine that no longer exists.

Why a lease and not a unique index: a unique index on ``filepath`` would change the user's dataset (and
fail on one that already repeats a path), while the lock covers everything a run does to the dataset's own
document (its creation, media type, fields and run records: FiftyOne saves those whole, so two processes
writing them at once would lose one's change).

Everything lives in one collection of FiftyOne's database, ``fiftyone_ram.claims``:

- ``lock:<name>``: the lock of one dataset, held while a run adds samples or records its run;
- ``worker:<scope>:<token>``: a run working on ``scope`` (a dataset's field, one tagging run);
- ``<scope>:<sample id>``: a sample's claim, ``state`` "claimed" (with an expiry), then "written" or
  "failed" (kept until the run completes: they say what this run already did).
"""

from __future__ import annotations

import datetime
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fiftyone_ram.errors import UserError

#: A lease not renewed for this long is taken over. Holders renew every ``RENEW_S``.
LEASE_S = 60.0
RENEW_S = 10.0
#: How long a run waits for a dataset lock before giving up with a message naming the holder.
LOCK_TIMEOUT_S = 600.0
COLLECTION = "fiftyone_ram.claims"
_HOST = socket.gethostname()


class LockTimeoutError(UserError, RuntimeError):
    """Another run has held the dataset's lock for longer than a run waits."""


_indexed = False
_connected = False


def connect() -> None:
    """Connect this process to FiftyOne's database. When FiftyOne runs its own database server, two
    processes connecting first at the same moment both start one, and one fails to bind its port. So the
    first connection is made under a file lock next to the database folder (once per process), and a start
    that lost the race with a process not taking the lock (the App, a script) is retried: by then the other
    server is up, and FiftyOne connects to it."""
    global _connected
    if _connected:
        return
    import fcntl

    import fiftyone as fo
    import fiftyone.core.odm as foo

    if fo.config.database_uri is not None:  # a server the user runs: nothing to start
        _check_reachable(fo.config.database_uri)
        foo.get_db_conn()
    else:
        lock = Path(str(fo.config.database_dir).rstrip(os.sep) + ".fiftyone-ram.lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                _start_database()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    _connected = True


#: Seconds a database the user runs may take to answer the first time (pymongo waits 30 s by default).
REACH_TIMEOUT_S = 5.0


class DatabaseUnavailableError(UserError, ConnectionError):
    """FiftyOne's database does not answer."""


def _check_reachable(uri: str) -> None:
    """Refuse at once, in one line, a database that does not answer, before FiftyOne's own connection waits
    for it (with its default timeout) and fails with a traceback."""
    import pymongo
    from pymongo.errors import PyMongoError

    where = uri.split("@")[-1]  # never print credentials
    if _refused_everywhere(uri):
        raise DatabaseUnavailableError(
            f"FiftyOne's database at {where} does not answer (connection refused): start it (or fix "
            f"FIFTYONE_DATABASE_URI), then run the command again")
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=int(REACH_TIMEOUT_S * 1000), connect=False)
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        raise DatabaseUnavailableError(
            f"FiftyOne's database at {where} does not answer ({type(exc).__name__}): start it (or fix "
            f"FIFTYONE_DATABASE_URI), then run the command again") from None
    finally:
        client.close()


#: How long a host of the database URI may take to accept a TCP connection before pymongo is left to judge.
PROBE_TIMEOUT_S = 1.0


def _refused_everywhere(uri: str) -> bool:
    """Whether every host of a plain ``mongodb://`` URI refuses a TCP connection: nothing listens there, and
    pymongo would only wait out its timeout (it retries a refused server until then). Anything else (a host
    that accepts, is slow or unknown; an SRV or socket URI) is left to pymongo."""
    if not uri.startswith("mongodb://"):
        return False
    from pymongo.uri_parser import parse_uri

    try:
        hosts = parse_uri(uri, validate=False)["nodelist"]
    except Exception:  # noqa: BLE001  a URI pymongo will refuse in its own words
        return False
    for host, port in hosts:
        if host.endswith(".sock"):
            return False
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
        except ConnectionRefusedError:
            continue
        except OSError:
            return False
        return False
    return bool(hosts)


def _start_database(attempts: int = 3) -> None:
    import fiftyone.core.odm as foo
    import fiftyone.core.odm.database as fodb
    import fiftyone.core.service as fos

    for attempt in range(attempts):
        try:
            foo.get_db_conn()
            return
        except fos.ServiceListenTimeout:  # FiftyOne 1.22 has no other service error class
            if attempt == attempts - 1:
                raise
            # FiftyOne keeps the failed service and would not start (or find) one again: forget it.
            fodb._db_service = None
            time.sleep(1.0 + attempt)


def _collection():
    global _indexed
    import fiftyone.core.odm as foo

    connect()
    collection = foo.get_db_conn()[COLLECTION]
    if not _indexed:  # creating an existing index is a no-op; once per process is enough
        collection.create_index([("scope", 1), ("state", 1)])
        collection.create_index([("owner", 1)])
        _indexed = True
    return collection


def _now() -> datetime.datetime:
    """The database server's clock: every expiry is set and compared on it."""
    import fiftyone.core.odm as foo

    return foo.get_db_conn().command("hello")["localTime"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class Holder:
    """One holder of leases (a run in this process): its identity, and the thread that renews its leases.

    Use it as a context manager; leaving it gives back every lease still held (claims not finished, the
    run's worker entry, a lock)."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.pid = os.getpid()
        self.host = _HOST
        self._stop = threading.Event()
        self.database_gone = False  # set by a run that saw the database stop answering: write nothing more
        self._thread: threading.Thread | None = None

    def stamp(self, now: datetime.datetime) -> dict[str, Any]:
        return {"owner": self.token, "host": self.host, "pid": self.pid,
                "expires": now + datetime.timedelta(seconds=LEASE_S)}

    def __enter__(self) -> Holder:
        self._thread = threading.Thread(target=self._renew, name="fiftyone-ram-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.database_gone:  # the leases expire on their own
            return
        try:
            _collection().delete_many({"owner": self.token, "state": {"$in": ["claimed", "worker", "lock"]}})
        except Exception:  # the database went away: the leases expire on their own
            pass

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            try:
                expires = _now() + datetime.timedelta(seconds=LEASE_S)
                _collection().update_many({"owner": self.token, "expires": {"$exists": True}},
                                          {"$set": {"expires": expires}})
            except Exception:  # renewal is retried; a lease lost meanwhile is taken over, never corrupted
                pass


def _takeover(holder: Holder, state: str, now: datetime.datetime, scope: str | None = None) -> list[dict[str, Any]]:
    """The conditions under which a lease of ``state`` may be (re)taken by ``holder``: it is its own, it
    expired, or its holder was a process of this machine that is gone."""
    conditions: list[dict[str, Any]] = [{"owner": holder.token, "state": state},
                                        {"state": state, "expires": {"$lt": now}}]
    where: dict[str, Any] = {"state": state, "host": _HOST, "owner": {"$ne": holder.token}}
    if scope is not None:
        where["scope"] = scope
    dead = [pid for pid in _collection().distinct("pid", where) if not _alive(pid)]
    if dead:
        conditions.append({"state": state, "host": _HOST, "pid": {"$in": dead}})
    return conditions


# -- the dataset lock --------------------------------------------------------------------------------------

@contextmanager
def dataset_lock(name: str, holder: Holder, *, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock of dataset ``name`` (which need not exist yet) for the ``with`` block. Not re-entrant."""
    from pymongo.errors import DuplicateKeyError

    key = f"lock:{name}"
    collection = _collection()
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        now = _now()
        try:
            collection.update_one({"_id": key, "$or": _takeover(holder, "lock", now)},
                                  {"$set": {"state": "lock", **holder.stamp(now)}}, upsert=True)
            break
        except DuplicateKeyError:
            pass
        if time.monotonic() > deadline:
            doc = collection.find_one({"_id": key}) or {}
            raise LockTimeoutError(
                f"dataset '{name}' has been locked for {timeout:.0f} s by process {doc.get('pid')} on "
                f"{doc.get('host')}: wait for that run to finish, or stop it")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    try:
        yield
    finally:
        collection.delete_one({"_id": key, "owner": holder.token})


# -- runs and their samples ----------------------------------------------------------------------------------

def join(scope: str, holder: Holder) -> None:
    """Announce ``holder`` as working on ``scope`` (renewed while it lives, removed when it leaves)."""
    now = _now()
    _collection().update_one({"_id": f"worker:{scope}:{holder.token}"},
                             {"$set": {"scope": scope, "state": "worker", **holder.stamp(now)}}, upsert=True)


def leave(scope: str, holder: Holder) -> None:
    """``holder`` no longer works on ``scope``."""
    _collection().delete_one({"_id": f"worker:{scope}:{holder.token}"})


def other_workers(scope: str, holder: Holder) -> list[dict[str, Any]]:
    """The live runs on ``scope`` other than ``holder`` (their host and pid)."""
    now = _now()
    found = _collection().find({"scope": scope, "state": "worker", "owner": {"$ne": holder.token},
                                "expires": {"$gte": now}}, {"host": 1, "pid": 1})
    return [doc for doc in found if doc.get("host") != _HOST or _alive(doc.get("pid", -1))]


def take(scope: str, ids: Sequence[str], holder: Holder) -> list[str]:
    """Claim those of ``ids`` that nobody holds and nobody finished in ``scope``; returns the claimed ones, in
    order. Each claim is one atomic upsert: of two runs asking at once, exactly one gets each sample."""
    from pymongo import UpdateOne
    from pymongo.errors import BulkWriteError

    if not ids:
        return []
    now = _now()
    conditions = _takeover(holder, "claimed", now, scope)
    stamp = {"scope": scope, "state": "claimed", **holder.stamp(now)}
    operations = [UpdateOne({"_id": f"{scope}:{sample}", "$or": conditions},
                            {"$set": {**stamp, "sample": sample}}, upsert=True) for sample in ids]
    refused: set[int] = set()
    try:
        _collection().bulk_write(operations, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != 11000 for error in errors):
            raise
        refused = {error["index"] for error in errors}
    return [sample for i, sample in enumerate(ids) if i not in refused]


def finish(scope: str, holder: Holder, written: Iterable[str], failed: Iterable[str]) -> None:
    """Record what became of claimed samples; finished samples are never claimed again in ``scope``."""
    collection = _collection()
    for state, ids in (("written", list(written)), ("failed", list(failed))):
        if ids:
            collection.update_many({"_id": {"$in": [f"{scope}:{i}" for i in ids]}, "owner": holder.token},
                                   {"$set": {"state": state}, "$unset": {"expires": ""}})


def release(scope: str, holder: Holder) -> None:
    """Give back the claims of ``holder`` not finished (an interrupted run): others may take them at once."""
    _collection().delete_many({"scope": scope, "owner": holder.token, "state": "claimed"})


def finished(scope: str, state: str = "written") -> set[str]:
    """The samples finished in ``scope`` with ``state``."""
    return {doc["sample"] for doc in _collection().find({"scope": scope, "state": state}, {"sample": 1})}


def forget(scope: str, states: Sequence[str] | None = None) -> None:
    """Drop the claims of ``scope`` (all, and the entries of runs that died on it; or those in ``states``): a
    run completed, was replaced or starts a new pass (call it when no other run works on ``scope``)."""
    everything = ("claimed", "written", "failed", "worker")
    query: dict[str, Any] = {"scope": scope, "state": {"$in": list(states or everything)}}
    _collection().delete_many(query)
