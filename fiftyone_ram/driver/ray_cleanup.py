"""A guard for the local Ray cluster a run starts: when the run's process dies without shutting Ray down
(SIGKILL, an out-of-memory kill), the cluster's processes go too.

Ray stops its head processes (GCS, raylet, workers) when the driver that started them dies, but the raylet's
agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``, ~90 MB each) are re-parented to init and stay for
good (Ray 2.60). Ray offers no option for this, so a small detached process watches the driver: while it
lives, the watcher notes the driver's descendants; once it is gone, the watcher terminates the ones still
running (matched by pid *and* start time, so that a reused pid is never hit), then exits. Only clusters this
package started are guarded: a cluster joined by address, or one the caller started, is not ours to stop.
"""

from __future__ import annotations

import subprocess
import sys
import time

#: Seconds between two looks at the driver.
POLL_S = 1.0
#: Seconds the descendants get to stop on their own once the driver is gone (Ray's own shutdown), then to
#: stop after SIGTERM, before SIGKILL.
GRACE_S = 5.0


def guard_local_cluster() -> subprocess.Popen:
    """Start the watcher of this process (detached: it outlives a SIGKILL of this one), before this process
    starts its cluster, so that a driver killed during the start-up has it stopped too. It is handed the Ray
    processes running now, so that a driver killed before the watcher is up still has them stopped; it runs as
    a plain script (no package import: it is up in a fraction of a second)."""
    import os

    import psutil

    known = [f"{p.pid}:{p.create_time()!r}" for p in psutil.Process().children(recursive=True) if _is_ray(p)]
    return subprocess.Popen([sys.executable, __file__, str(os.getpid()), *known], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)


def watch(driver_pid: int, known: dict[int, float] | None = None) -> None:
    """Note ``driver_pid``'s Ray descendants (besides ``known``: pid → start time) until it exits, then stop
    those still running."""
    import psutil

    known = dict(known or {})
    try:
        driver = psutil.Process(driver_pid)
        while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
            for child in driver.children(recursive=True):
                if child.pid not in known and _is_ray(child):
                    known[child.pid] = child.create_time()
            time.sleep(POLL_S)
    except psutil.NoSuchProcess:  # the driver is gone (perhaps before this watcher was up)
        pass
    left = _alive(known)
    deadline = time.monotonic() + GRACE_S
    while left and time.monotonic() < deadline:  # Ray's own shutdown first
        time.sleep(POLL_S / 2)
        left = _alive(known)
    for process in left:
        process.terminate()
    _, left = psutil.wait_procs(left, timeout=GRACE_S)
    for process in left:
        process.kill()


def _is_ray(process) -> bool:
    """A process of Ray's (its head, raylet, agents, workers), never another child of the driver (FiftyOne's
    database service outlives its clients on purpose; a DataLoader's workers are the driver's business)."""
    import os

    import psutil

    try:
        name, command = process.name(), process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    marker = f"{os.sep}ray{os.sep}"
    return name.startswith("ray::") or any(marker in part for part in command[:2])


def _alive(known: dict[int, float]) -> list:
    import psutil

    alive = []
    for pid, started in known.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


if __name__ == "__main__":
    watch(int(sys.argv[1]), {int(pid): float(started) for pid, started in (a.split(":") for a in sys.argv[2:])})
