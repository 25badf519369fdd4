"""The processes of the system test: PostgreSQL, Redis and the Airflow components, all on loopback.

Every process is started in a session of its own and remembered; :meth:`Cluster.stop_all` ends each
one with its whole process tree (descendants found through ``/proc``, and anything left in its
session), SIGTERM first, SIGKILL after a bound. Waits poll a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ComponentDied(RuntimeError):
    """A process of the cluster exited: no point in waiting any longer."""


def wait_for(what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll ``condition`` until it returns a truthy value; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except ComponentDied:
            raise
        except Exception as err:  # the condition may fail until the component is up
            last_error = err
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


# -- /proc ------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2 :].split()


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, session id, state) of every process."""
    table = {}
    for pid in all_pids():
        fields = _stat_fields(pid)
        if fields:
            table[pid] = (int(fields[1]), int(fields[3]), fields[0])
    return table


def descendants(root: int, table: dict[int, tuple[int, int, str]] | None = None) -> set[int]:
    """``root`` and every process below it (children, grandchildren, ...)."""
    table = table if table is not None else process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in found or pid not in table:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds of ``pids`` (and of their reaped children)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def kill_tree(root: int, sid: int | None = None) -> set[int]:
    """SIGKILL ``root``, all its descendants and (with ``sid``) everything left in that session.

    The tree is frozen with SIGSTOP first (until no new process appears), so nothing forks away
    between finding and killing. Returns the pids killed.
    """
    frozen: set[int] = set()
    for _ in range(20):
        table = process_table()
        targets = descendants(root, table)
        if sid is not None:
            targets |= {pid for pid, (_, psid, _) in table.items() if psid == sid}
        targets.discard(os.getpid())
        new = targets - frozen
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        frozen |= new
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return frozen


def socket_owner(local_port: int) -> int | None:
    """The pid holding the TCP socket whose local end is 127.0.0.1:``local_port``."""
    # Every live socket with that local port (a closed one in TIME_WAIT has inode 0 and is skipped).
    targets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == local_port and parts[9] != "0":
                    targets.add(f"socket:[{parts[9]}]")
    if not targets:
        return None
    for pid in all_pids():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                        return pid
    return None


# -- processes --------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM
    started: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tree(self) -> set[int]:
        return descendants(self.pid)


class Cluster:
    """Starts and stops the processes of one run."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.env = env
        self.procs: dict[str, Proc] = {}
        self.retired: list[Proc] = []
        self.pid_file = Path(os.environ.get("VIDGEN_SYSTEM_PIDS") or run_dir / "pids")

    def start(
        self,
        name: str,
        argv: list[str],
        user: str | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Proc:
        log = self.run_dir / "components" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115 - owned by the child
        kwargs: dict[str, Any] = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=cwd or self.run_dir,
            start_new_session=True,
            **kwargs,
        )
        out.close()
        proc = Proc(name, popen, log, stop_signal)
        if name in self.procs:
            self.retired.append(self.procs.pop(name))
        self.procs[name] = proc
        with open(self.pid_file, "a") as pids:  # the shell's EXIT trap kills these sessions too
            pids.write(f"{popen.pid}\n")
        return proc

    def check_running(self, *names: str) -> None:
        for name in names or tuple(self.procs):
            proc = self.procs[name]
            if proc.popen.poll() is not None:
                tail = proc.log.read_text(errors="replace")[-3000:]
                raise ComponentDied(f"{name} exited with {proc.popen.returncode}; end of its log:\n{tail}")

    def kill9(self, name: str) -> set[int]:
        """kill -9 the component's whole process tree (as a lost machine); wait until all are gone."""
        proc = self.procs[name]
        killed = kill_tree(proc.pid, sid=proc.pid)
        wait_for(f"{name}'s processes to be gone", lambda: not any(alive(pid) for pid in killed), 30, 0.1)
        proc.popen.wait(10)
        self.retired.append(self.procs.pop(name))  # dead on purpose: no longer a component to watch
        return killed

    def stop(self, proc: Proc, grace: float = 20) -> None:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, proc.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(grace)
        kill_tree(proc.pid, sid=proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(10)

    def stop_all(self, order: list[str] | None = None) -> None:
        names = [n for n in (order or []) if n in self.procs] + [n for n in self.procs if n not in (order or [])]
        for name in names:
            self.stop(self.procs[name])
        for proc in self.retired:
            self.stop(proc, grace=1)
