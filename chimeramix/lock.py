"""One process per run folder: a lock file created with O_CREAT | O_EXCL, which is atomic on local disks and NFS.

Two processes training in one folder would both append to metrics.jsonl and overwrite each other's checkpoints,
so `runs.prepare` takes this lock before it looks at the folder and the run keeps it until it ends. The file
records who holds it (pid, host, since when, and the Slurm job id inside a Slurm job) so the refusal can say so.
A lock whose holder is certainly gone is taken over:

- on the same host: the pid is dead, was reused (another start time), or the machine rebooted since;
- a Slurm job's lock seen from another node: `squeue` no longer lists the job, or lists it in a finished state
  (COMPLETED, FAILED, CANCELLED, TIMEOUT, ...), or it is this very job after a requeue (a higher
  SLURM_RESTART_COUNT: one job id runs one instance at a time);
- otherwise (another host, no job id, or squeue missing or not answering): only if $CHIMERAMIX_LOCK_STALE_MINUTES
  is set and the lock file's heartbeat is older than that. A held lock's file is touched every minute
  (HEARTBEAT_S), so its age says when its holder was last alive; choose minutes well above one, for the
  clock skew between hosts and for a paused (SIGSTOP, suspended) holder. Unset (the default), the lock stands:
  the refusal names the holder and says to delete the file once nothing uses it.

Nothing here imports torch, so a launcher (chimeramix/launch.py) can use it cheaply.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import ChimeraMixError

LOCK_FILE = "run.lock"
# Taking over a dead process's lock is read-check-delete-create; this second O_EXCL file makes that one step
# at a time, so two processes finding the same stale lock cannot both take it (or delete each other's new one).
TAKEOVER_FILE = "run.lock.takeover"
# A takeover lasts milliseconds; a guard this old was left by a process that died during one.
TAKEOVER_STALE_S = 10.0
# A lock file is written right after it is created; one still unreadable after this long lost its writer.
UNREADABLE_STALE_S = 60.0
# A held lock's file is touched this often (its mtime is the holder's heartbeat).
HEARTBEAT_S = 60.0
STALE_ENV = "CHIMERAMIX_LOCK_STALE_MINUTES"


def _stale_after_s() -> float | None:
    try:
        minutes = float(os.environ.get(STALE_ENV, ""))
    except ValueError:
        return None
    return minutes * 60 if minutes > 0 else None


class RunLocked(ChimeraMixError):
    """Another process holds the run folder (`folder`)."""

    folder: Path | None = None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid from the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22; the name in parentheses may hold spaces
    except (OSError, ValueError, IndexError):
        return None


# squeue states of a job whose processes are gone (the job may linger in squeue for MinJobAge after it ended)
ENDED_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
                          "BOOT_FAIL", "DEADLINE", "REVOKED"})


def slurm_job_state(job: str) -> str | None:
    """The job's state as squeue reports it; 'GONE' when squeue no longer knows it; None when undecidable."""
    exe = shutil.which("squeue")
    if exe is None:
        return None
    try:
        r = subprocess.run([exe, "-h", "-j", str(job), "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        # a job that ended long ago is an invalid id to squeue; any other failure (controller down) decides nothing
        return "GONE" if "invalid job id" in (r.stderr or "").lower() else None
    states = [line.strip().split()[0] for line in r.stdout.splitlines() if line.strip()]
    return states[0].upper() if states else "GONE"


def _restart_count() -> int:
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except (OverflowError, ValueError):
        return False
    return True


@dataclass
class Holder:
    pid: int
    host: str
    since: str
    boot: str | None = None
    start: int | None = None
    token: str = ""
    job: str | None = None  # SLURM_JOB_ID of the holder, inside a Slurm job
    restart: int = 0  # SLURM_RESTART_COUNT: a requeued job runs again under the same id

    def describe(self) -> str:
        job = f"Slurm job {self.job}, " if self.job else ""
        return f"{job}pid {self.pid} on {self.host} since {self.since}"

    def dead(self, heartbeat_age: float | None = None) -> bool:
        """Whether the holder has gone (see the module's docstring for the rules); `heartbeat_age`: seconds since
        the lock file was last touched, for holders nothing else can decide on."""
        if self.host != socket.gethostname():
            if self.job:
                if self.job == os.environ.get("SLURM_JOB_ID") and self.restart < _restart_count():
                    return True  # an earlier instance of this requeued job
                state = slurm_job_state(self.job)
                if state is not None:
                    return state == "GONE" or state in ENDED_STATES
            limit = _stale_after_s()
            return limit is not None and heartbeat_age is not None and heartbeat_age > limit
        boot = _boot_id()
        if self.boot and boot and self.boot != boot:  # the machine restarted since: every pid of then is gone
            return True
        if not _alive(self.pid):
            return True
        start = _start_ticks(self.pid)
        return self.start is not None and start is not None and start != self.start  # the pid was reused


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:  # released in the meantime
        return None


def _parse(text: str | None) -> Holder | None:
    if text is None:
        return None
    try:
        d = json.loads(text)
        job = d.get("job")
        return Holder(int(d["pid"]), str(d["host"]), str(d["since"]), d.get("boot"), d.get("start"), str(d.get("token", "")),
                      None if job in (None, "") else str(job), int(d.get("restart") or 0))
    except (ValueError, KeyError, TypeError):
        return None


def _create_exclusive(path: Path, text: str) -> bool:
    """Create `path` holding `text` if it does not exist; False if it does."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError:  # e.g. a full disk: an empty lock would block the folder for a minute
        path.unlink(missing_ok=True)
        raise
    return True


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


class RunLock:
    """Exclusive use of `folder` by this process: `acquire()` or refuse in one line; `release()` (idempotent)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.holder = Holder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S"), _boot_id(),
                             _start_ticks(os.getpid()), uuid.uuid4().hex, os.environ.get("SLURM_JOB_ID") or None,
                             _restart_count())
        self.held = False
        self._stop = threading.Event()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                mine = _parse(_read_text(self.path))
                if mine is None or mine.token != self.holder.token:
                    return
                os.utime(self.path)
            except OSError:
                return

    def _held(self) -> "RunLock":
        self.held = True
        self._stop.clear()
        threading.Thread(target=self._heartbeat, name=f"heartbeat {self.path}", daemon=True).start()
        return self

    def _text(self) -> str:
        return json.dumps(self.holder.__dict__) + "\n"

    def acquire(self) -> "RunLock":
        try:
            if _create_exclusive(self.path, self._text()):
                return self._held()
            self._take_over_if_stale()
        except RunLocked as e:
            e.folder = self.folder
            raise
        except OSError as e:
            raise ChimeraMixError(f"cannot write to {self.folder} ({e.strerror}): choose a writable --out") from None
        return self._held()

    def _take_over_if_stale(self) -> None:
        seen = _read_text(self.path)
        other = _parse(seen)
        if other is None and seen is not None and _age(self.path) < UNREADABLE_STALE_S:
            raise RunLocked(f"{self.folder} is being locked by another process right now: try again in a minute")
        if other is not None and not other.dead(_age(self.path)):
            if other.host == socket.gethostname():
                hint = "wait for it to finish or stop it"
            elif other.job:
                hint = f"wait for it to finish or cancel it (scancel {other.job})"
            else:
                hint = f"wait for it to finish; if nothing on {other.host} uses it any more, delete {self.path}"
            raise RunLocked(f"{self.folder} is in use by {other.describe()}: {hint}")
        guard = self.folder / TAKEOVER_FILE
        if not _create_exclusive(guard, self._text()):
            if _age(guard) < TAKEOVER_STALE_S:
                raise RunLocked(f"{self.folder} is being taken over by another process right now: try again in a minute")
            guard.unlink(missing_ok=True)  # its writer died during a takeover
            if not _create_exclusive(guard, self._text()):
                raise RunLocked(f"{self.folder} is being taken over by another process right now: try again in a minute")
        try:
            # Still the same stale lock? Another process may have taken it over between our read and the guard.
            now = _read_text(self.path)
            if now != seen:
                other = _parse(now)
                who = other.describe() if other else "another process"
                raise RunLocked(f"{self.folder} was just taken by {who}: wait for it to finish or stop it")
            self.path.unlink(missing_ok=True)
            if not _create_exclusive(self.path, self._text()):
                other = _parse(_read_text(self.path))
                who = other.describe() if other else "another process"
                raise RunLocked(f"{self.folder} was just taken by {who}: wait for it to finish or stop it")
        finally:
            guard.unlink(missing_ok=True)

    def release(self) -> None:
        """Give the folder back (only if the lock file is still this process's)."""
        if not self.held:
            return
        self.held = False
        self._stop.set()
        mine = _parse(_read_text(self.path))
        if mine is not None and mine.token == self.holder.token:  # never delete a lock another process took
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def live_holder(folder: str | Path) -> Holder | None:
    """Who holds `folder`'s lock now, if anyone still alive does (a launcher's check before it submits a job there)."""
    path = Path(folder) / LOCK_FILE
    text = _read_text(path)
    holder = _parse(text)
    if holder is None:
        # an unreadable lock is being written right now, or its writer died long ago
        return Holder(-1, "?", "now") if text is not None and _age(path) < UNREADABLE_STALE_S else None
    return None if holder.dead(_age(path)) else holder
