"""Where a sweep's Optuna study lives: the journal file in its folder (one machine: the default), or a database
given by URL (several machines: `pkd sweep --storage postgresql+psycopg://USER@HOST:PORT/DB`).

Only a database storage has heartbeats: each worker records one for its trial every `heartbeat` seconds; a trial
whose worker stopped beating for 2 x `heartbeat` (it was killed, its machine lost) is failed by the next worker
that looks (Optuna's fail_stale_trials) and retried once as a new trial with the same settings
(RetryHeartbeatStaleTrialCallback(max_retry=1), Optuna 5's name for RetryFailedTrialCallback).

Secrets: a URL's password is never printed or stored. The sweep folder records the URL without it (`public_url`),
messages show it masked (`masked`); a worker takes the password from the URL, else $PKD_DB_PASSWORD, else a
.pgpass-style file named by $PKD_DB_PASSFILE (lines host:port:database:user:password, `*` matches anything); for
PostgreSQL, libpq's own PGPASSWORD and ~/.pgpass work too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

from pkd.runs import printable
from pkd.sweep.folder import Sweep, held
from pkd.sweep.space import SweepError

DRIVERS = {"postgresql+psycopg": "PostgreSQL", "mysql+pymysql": "MySQL"}  # what pkd sweeps have run on
PASSWORD_ENV = "PKD_DB_PASSWORD"
PASSFILE_ENV = "PKD_DB_PASSFILE"
PLAN_ATTR = "pkd_sweep"  # the study's user attribute holding what sweep.json holds: a study without it is foreign
DEFAULT_HEARTBEAT_S = 60
MAX_RETRY = 1


def masked(url: str) -> str:
    """`url` as it may be shown: its password (between `user:` and `@`) replaced by ***."""
    return printable(re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", str(url)), 300)


def _parsed(url: str) -> Any:
    """The SQLAlchemy URL of a database storage; SweepError naming what is wrong with it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(str(url))
    except (ArgumentError, ValueError) as exc:
        raise SweepError(f"--storage {masked(url)}: not a database URL ({exc}); give e.g. "
                         "postgresql+psycopg://USER@HOST:PORT/DATABASE") from None
    if parsed.drivername not in DRIVERS:
        raise SweepError(f"--storage {masked(url)}: {printable(parsed.drivername, 40)} is not supported; give "
                         f"{' or '.join(d + '://USER@HOST:PORT/DATABASE' for d in DRIVERS)}")
    if not parsed.database:
        raise SweepError(f"--storage {masked(url)}: names no database; add /DATABASE at its end")
    return parsed


def public_url(url: str) -> str:
    """The URL without its password: what a sweep folder records (checked: SweepError when it is not one)."""
    return _parsed(url)._replace(password=None).render_as_string(hide_password=False)


def _passfile_password(parsed: Any, path: str) -> str | None:
    """The password of the first line of a .pgpass-style file matching the URL's host, port, database, user."""
    want = [parsed.host or "localhost", str(parsed.port or ""), parsed.database or "", parsed.username or ""]
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError(f"${PASSFILE_ENV} {printable(path, 200)}: cannot be read ({exc.strerror})") from None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.replace("\\:", ":").replace("\\\\", "\\") for f in re.split(r"(?<!\\):", line, maxsplit=4)]
        if len(fields) == 5 and all(f in ("*", w) or (i == 1 and not w) for i, (f, w) in
                                    enumerate(zip(fields[:4], want))):
            return fields[4]
    return None


_GIVEN: dict[str, str] = {}  # public URL -> the password this process was given in a URL


def with_password(url: str) -> str:
    """The URL to connect with: its own password (or the one this process was given for it), else
    $PKD_DB_PASSWORD, else $PKD_DB_PASSFILE's (see the module docstring); unchanged when none is given (libpq may
    still find one)."""
    parsed = _parsed(url)
    if parsed.password is not None:  # remembered, in memory only: this process's folder records the URL without it
        _GIVEN[public_url(url)] = parsed.password
    else:
        password = _GIVEN.get(public_url(url)) or os.environ.get(PASSWORD_ENV) or (
            _passfile_password(parsed, os.environ[PASSFILE_ENV]) if os.environ.get(PASSFILE_ENV) else None)
        if password:
            parsed = parsed.set(password=password)
    return parsed.render_as_string(hide_password=False)


def _reason(exc: BaseException) -> str:
    """The first line of a driver's error, without SQLAlchemy's wrapping, and what to do about it."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^(connection failed: )", "", text).replace("FATAL:  ", "")
    hints = [("does not exist", "create the database first (e.g. `createdb NAME`)"),
             ("password", f"give the password in ${PASSWORD_ENV} or a .pgpass-style file in ${PASSFILE_ENV}"),
             ("refused", "is the server running, and are the host and port right?"),
             ("resolve", "is the host name right?")]
    hint = next((h for key, h in hints if key in text.lower()), "check the URL and the server")
    return f"{printable(text, 200)}; {hint}"


_OPEN: dict[tuple, Any] = {}  # (url, heartbeat) -> its storage: one engine per database and process


def connect(url: str, heartbeat_s: int | None = None) -> Any:
    """Optuna's RDBStorage on the database `url` (its password found by with_password), with heartbeats every
    `heartbeat_s` seconds (None: none) and a stale trial retried once; SweepError in one line when the URL is
    wrong, the server cannot be reached, the database is missing or refuses the login."""
    import sqlalchemy.exc
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    full = with_password(url)
    if (full, heartbeat_s) in _OPEN:
        return _OPEN[full, heartbeat_s]
    warnings.filterwarnings("ignore", category=ExperimentalWarning, module=r"(optuna|pkd)\.")
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    beat = {} if heartbeat_s is None else {
        "heartbeat_interval": int(heartbeat_s), "grace_period": 2 * int(heartbeat_s),
        "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)}
    try:
        storage = RDBStorage(full, engine_kwargs={"pool_pre_ping": True}, **beat)
    except ImportError as exc:
        raise SweepError(f"--storage {masked(url)}: its driver is not installed ({exc}); "
                         "pip install 'psycopg[binary]' (PostgreSQL) or pymysql (MySQL)") from None
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        raise SweepError(f"cannot open the study database {masked(url)}: {_reason(exc)}") from None
    _OPEN[full, heartbeat_s] = storage
    return storage


def plan_of(storage: Any, study_name: str) -> dict | None:
    """The pkd plan (sweep.json's content) the database's study `study_name` holds; None when there is no such
    study; SweepError when a study of that name exists but pkd did not create it."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    plan = storage.get_study_user_attrs(study_id).get(PLAN_ATTR)
    if not isinstance(plan, dict):
        raise SweepError(f"the database already holds a study named {printable(study_name, 80)} that is not a pkd "
                         "sweep; give another --study NAME or another database")
    return plan


@contextlib.contextmanager
def study_lock(storage: Any, study_name: str, what: str) -> Iterator[None]:
    """Held by one worker at a time on every machine: a PostgreSQL advisory lock (MySQL: GET_LOCK) on a connection
    of its own, which the server drops when the worker dies, however it dies."""
    from sqlalchemy import text

    key = hashlib.sha256(f"pkd:{study_name}:{what}".encode()).digest()
    with storage.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            number = int.from_bytes(key[:8], "big", signed=True)
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": number})
            release = text("SELECT pg_advisory_unlock(:k)"), {"k": number}
        else:
            name = f"pkd-{key.hex()[:40]}"
            conn.execute(text("SELECT GET_LOCK(:n, -1)"), {"n": name})
            release = text("SELECT RELEASE_LOCK(:n)"), {"n": name}
        conn.commit()
        try:
            yield
        finally:
            conn.execute(*release)
            conn.commit()


@contextlib.contextmanager
def ask_lock(sweep: Sweep, study: Any) -> Iterator[None]:  # noqa: ARG001 - the study: what it guards
    """Held while a worker picks its next trial: across machines on a database (study_lock), else the sweep
    folder's flock."""
    if sweep.database():
        with study_lock(sweep.storage(), sweep.study_name(), "ask"):
            yield
    else:
        with held(sweep.lock_path("ask")):
            yield


def has_heartbeat(storage: Any) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return is_heartbeat_enabled(storage)


@contextlib.contextmanager
def heartbeat(storage: Any, trial_id: int) -> Iterator[None]:
    """While the block runs: this worker's trial `trial_id` beats (one at once, then every heartbeat interval)."""
    if not has_heartbeat(storage):
        yield
        return
    storage.record_heartbeat(trial_id)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(storage.heartbeat_interval):
            with contextlib.suppress(Exception):  # a lost connection: the next beat tries again
                storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
