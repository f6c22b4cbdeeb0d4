"""A cross-process, cross-machine mutex per registered model, kept in the MLflow store itself.

    python -c "from seqtune.pipeline.registry_lock import lock_name; print(lock_name('seqtune-smiles2iupac'))"

`register`, `promote` and `rollback` each read the champion, decide, then move the alias and
append to its history tag: two of them interleaving can register the same content twice,
lose a history entry, or let a worse model replace a better one that was promoted a moment
earlier. They run those steps holding this lock.

The lock is a registered model named `<name>.lock`. Creating a registered model is atomic in
every MLflow store (a primary key on the name: sqlite, PostgreSQL/MySQL behind `mlflow
server`, the REST API on top), so whoever creates it holds the lock, and whoever gets
RESOURCE_ALREADY_EXISTS waits. Deleting it releases. This needs nothing beyond the tracking
URI every stage already has — no shared file system, no extra service.

A holder that died (kill -9, a lost machine) leaves its lock behind. It is taken over when its
holder is a process of this host that no longer exists, or when it is older than `stale_s`
(register.lock_stale_s). Taking over deletes the lock only if it still carries the token that
was read, then competes for a fresh create like anyone else; a stale-lock check and its
delete are two requests, so two waiters taking over the same dead lock at the same instant
could both see it; the create that follows still lets only one of them in.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
HOLDER_TAG = "seqtune.lock_holder"
"""Tag of the lock model: JSON {token, host, pid, by, since} of the process holding it."""


class RegistryBusyError(RuntimeError):
    """The lock stayed held by a live process for longer than the wait allowed."""


def lock_name(name: str) -> str:
    """The registered model that serves as `name`'s lock."""
    return name + LOCK_SUFFIX


def _error_code(e: Exception) -> str | None:
    return getattr(e, "error_code", None)


def _holder(client, lock: str) -> tuple[dict, int] | None:
    """(holder record, creation time in ms) of the lock model, or None when there is none."""
    try:
        rm = client.get_registered_model(lock)
    except Exception as e:  # noqa: BLE001
        if _error_code(e) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    try:
        holder = json.loads((rm.tags or {}).get(HOLDER_TAG, "{}"))
    except json.JSONDecodeError:
        holder = {}
    return holder, int(rm.creation_timestamp or 0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _stale_reason(holder: dict, created_ms: int, stale_s: float) -> str | None:
    """Why a held lock may be taken over, or None while its holder may still be working."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if holder["pid"] != os.getpid() and not _pid_alive(holder["pid"]):
            return f"its holder (pid {holder['pid']} on this host) is gone"
    age = time.time() - created_ms / 1000
    if created_ms and age > stale_s:
        return f"it is {age:.0f} s old (register.lock_stale_s = {stale_s:g})"
    return None


def _delete_if_token(client, lock: str, token: str | None) -> None:
    seen = _holder(client, lock)
    if seen is None or seen[0].get("token") != token:
        return  # released or taken over meanwhile: not ours to delete
    try:
        client.delete_registered_model(lock)
    except Exception as e:  # noqa: BLE001
        if _error_code(e) != "RESOURCE_DOES_NOT_EXIST":
            raise


@contextmanager
def registry_lock(client, name: str, *, by: str, wait_s: float, stale_s: float) -> Iterator[None]:
    """Hold `name`'s registry lock for the body; RegistryBusyError after `wait_s` of waiting."""
    lock = lock_name(name)
    token = uuid.uuid4().hex
    me = {
        "token": token,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "by": by,
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={HOLDER_TAG: json.dumps(me)},
                description=f"seqtune registry lock of {name}, held by `{by}` (pid {me['pid']} on {me['host']}). "
                "Deleted when the holder finishes; taken over when it is stale.",
            )
            break
        except Exception as e:  # noqa: BLE001
            # RESOURCE_DOES_NOT_EXIST from a create: the store's insert hit the holder's row,
            # then its own re-read found it gone (released in between): free again, retry.
            if _error_code(e) not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                raise
        seen = _holder(client, lock)
        if seen is not None:
            holder, created_ms = seen
            why = _stale_reason(holder, created_ms, stale_s)
            if why:
                log.warning("taking over the registry lock of %s: %s", name, why)
                _delete_if_token(client, lock, holder.get("token"))
                continue
            if time.monotonic() > deadline:
                raise RegistryBusyError(
                    f"{name} is being changed by `{holder.get('by')}` (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, since {holder.get('since')}); waited {wait_s:g} s "
                    "(register.lock_wait_s). Retry when it is done; a lock whose holder died is "
                    "taken over automatically after register.lock_stale_s."
                )
        # Jittered backoff: waiters that collided don't retry in lockstep.
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 1.5, 1.0)
    try:
        yield
    finally:
        _delete_if_token(client, lock, token)
