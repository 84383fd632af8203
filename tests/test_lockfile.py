"""Lock files: exclusion between threads, between our processes, and with fcntl/Go users."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import containers_storage as cs
import pytest
from containers_storage.errors import (
    LockNotHeldError,
    LockReadOnlyError,
    LockUpgradeError,
    StorageError,
)

from tests.helpers import (
    HANG_GUARD,
    RESTORE_SIGINT,
    Child,
    proc_locks_holders,
    wait_until_blocked,
)
from tests.store.helpers import go_argv

# A child that takes our lock on command: "w" write, "r" read, "u" unlock, "m" modified(),
# "t" touch(), "q" quit. It answers each command with one line.
OUR_CHILD = r"""
import sys
import containers_storage as cs
lock = cs.Lockfile(sys.argv[1], read_only=sys.argv[2] == "ro")
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "w":
        lock.lock(); print("locked", flush=True)
    elif cmd == "r":
        lock.rlock(); print("rlocked", flush=True)
    elif cmd == "u":
        lock.unlock(); print("unlocked", flush=True)
    elif cmd == "m":
        print(lock.modified(), flush=True)
    elif cmd == "t":
        lock.touch(); print("touched", flush=True)
    elif cmd == "q":
        break
"""

# A child using Python's own fcntl.lockf (POSIX record locks): "x" exclusive, "s" shared,
# "X"/"S" the same without waiting (answers "busy" when refused), "u" unlock.
LOCKF_CHILD = r"""
import fcntl, sys
f = open(sys.argv[1], "r+")
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    try:
        if cmd == "x": fcntl.lockf(f, fcntl.LOCK_EX); print("locked", flush=True)
        elif cmd == "s": fcntl.lockf(f, fcntl.LOCK_SH); print("locked", flush=True)
        elif cmd == "X": fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print("locked", flush=True)
        elif cmd == "S": fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB); print("locked", flush=True)
        elif cmd == "u": fcntl.lockf(f, fcntl.LOCK_UN); print("unlocked", flush=True)
    except OSError:
        print("busy", flush=True)
"""


def our_child(children: list[Child], path: Path, mode: str = "rw") -> Child:
    child = Child(OUR_CHILD, str(path), mode)
    children.append(child)
    child.expect("ready")
    return child


def lockf_child(children: list[Child], path: Path) -> Child:
    child = Child(LOCKF_CHILD, str(path))
    children.append(child)
    child.expect("ready")
    return child


def lock_in_thread(
    lock: cs.Lockfile, write: bool = True
) -> tuple[threading.Thread, threading.Event]:
    """Start a thread that takes ``lock`` (write or read), sets the event, and lets go."""
    got = threading.Event()

    def run() -> None:
        with lock.writing() if write else lock.reading():
            got.set()

    t = threading.Thread(target=run)
    t.start()
    return t, got


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "graph" / "vfs-layers" / "layers.lock"


# -- the object ---------------------------------------------------------------------------


def test_created_0644_with_missing_parents(lock_path: Path) -> None:
    old = os.umask(0o022)
    try:
        lock = cs.Lockfile(lock_path)
    finally:
        os.umask(old)
    st = lock_path.stat()
    assert st.st_mode & 0o7777 == 0o644
    assert st.st_size == 0
    assert lock.is_read_write()
    assert lock.path == str(lock_path)


def test_one_object_per_path(lock_path: Path) -> None:
    a = cs.Lockfile(lock_path)
    b = cs.Lockfile(str(lock_path.parent / ".." / "vfs-layers" / "layers.lock"))
    assert a is b


def test_read_only_on_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "images.lock"
    with pytest.raises(FileNotFoundError) as info:
        cs.Lockfile(missing, read_only=True)
    assert info.value.filename == str(missing)
    assert "read-only lock file" in str(info.value)
    assert not missing.parent.exists()


def test_read_only_refuses_writes(lock_path: Path) -> None:
    lock_path.parent.mkdir(parents=True)
    lock_path.write_bytes(b"")
    ro = cs.Lockfile(lock_path, read_only=True)
    assert not ro.is_read_write()
    with pytest.raises(LockReadOnlyError, match="lock is not a read-write lock"):
        with ro.writing():
            pass
    with ro.reading():
        with pytest.raises(LockReadOnlyError):
            ro.touch()
        assert ro.modified() is True  # an empty file was never touched
    ro.recursive_lock()  # Go: RecursiveLock on a read-only lock takes the read lock
    assert ro.held() == "read"
    ro.unlock()
    # Go's getLockfile refuses to reopen one path in the other mode.
    with pytest.raises(LockReadOnlyError):
        cs.Lockfile(lock_path)


def test_mixing_modes_read_write_first(lock_path: Path) -> None:
    cs.Lockfile(lock_path)
    with pytest.raises(StorageError, match="is not a read-only lock"):
        cs.Lockfile(lock_path, read_only=True)


def test_touch_and_modified_need_the_lock(lock_path: Path) -> None:
    lock = cs.Lockfile(lock_path)
    with pytest.raises(LockNotHeldError):
        lock.touch()
    with pytest.raises(LockNotHeldError):
        lock.modified()
    with pytest.raises(LockNotHeldError):
        lock.unlock()
    with lock.reading(), pytest.raises(LockNotHeldError):
        lock.touch()


def test_recursion_as_go_allows(lock_path: Path) -> None:
    lock = cs.Lockfile(lock_path)
    with lock.writing():
        with lock.writing():
            lock.touch()
            with lock.reading():
                assert lock.held() == "write"
        assert lock.locked()
    assert not lock.locked()
    assert lock.held() is None
    with lock.reading():
        with lock.reading():
            assert lock.held() == "read"
        with pytest.raises(LockUpgradeError):
            lock.lock()
    assert lock.held() is None


def test_token_layout_is_go_143(lock_path: Path) -> None:
    lock = cs.Lockfile(lock_path)
    before = time.time_ns()
    with lock.writing():
        first = lock.touch()
        second = lock.touch()
    after = time.time_ns()
    assert len(second) == 64
    assert lock_path.read_bytes() == second
    nanos, counter, pid = struct.unpack_from("<QQI", second)
    assert before <= nanos <= after
    assert pid == os.getpid()
    assert counter == struct.unpack_from("<QQI", first)[1] + 1
    assert first[20:] != second[20:]


def test_token_reads_the_file_without_dropping_the_lock(
    lock_path: Path, children: list[Child]
) -> None:
    """token() reads through the locked descriptor: opening and closing another descriptor
    of the file would release this process's fcntl lock (POSIX semantics)."""
    lock = cs.Lockfile(lock_path)
    with pytest.raises(LockNotHeldError):
        lock.token()
    other = lockf_child(children, lock_path) if lock_path.exists() else None
    with lock.writing():
        assert lock.token() == b""
        written = lock.touch()
        assert lock.token() == written
        assert proc_locks_holders(lock_path) == {os.getpid()}
        if other is None:
            other = lockf_child(children, lock_path)
        other.send("X")
        other.expect("busy")
    other.send("X")
    other.expect("locked")


def test_touch_changes_token_every_time(lock_path: Path) -> None:
    lock = cs.Lockfile(lock_path)
    seen = set()
    with lock.writing():
        for _ in range(100):
            seen.add(lock.touch())
    assert len(seen) == 100


def test_touched_since(lock_path: Path) -> None:
    lock = cs.Lockfile(lock_path)
    with lock.writing():
        lock.touch()
    mtime = lock_path.stat().st_mtime
    assert lock.touched_since(mtime - 10)
    assert not lock.touched_since(mtime + 10)


# -- threads of one process ---------------------------------------------------------------


def test_two_threads_exclude_each_other_on_writing(lock_path: Path) -> None:
    lock = cs.Lockfile(lock_path)
    state = {"counter": 0, "inside": 0, "max_inside": 0}
    rounds, threads = 200, 4

    def work() -> None:
        for _ in range(rounds):
            with lock.writing():
                state["inside"] += 1
                state["max_inside"] = max(state["max_inside"], state["inside"])
                value = state["counter"]
                time.sleep(0)  # let other threads run inside the critical section if they can
                state["counter"] = value + 1
                state["inside"] -= 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert state["max_inside"] == 1
    assert state["counter"] == rounds * threads


def test_readers_share_and_writers_wait_between_threads(lock_path: Path) -> None:
    lock = cs.Lockfile(lock_path)
    order: list[str] = []
    with lock.reading():
        other, entered = lock_in_thread(lock, write=False)
        assert entered.wait(HANG_GUARD), "a second reader thread was refused"
        other.join()

        def writer() -> None:
            with lock.writing():
                order.append("writer")

        w = threading.Thread(target=writer)
        w.start()
        w.join(0.2)
        assert w.is_alive(), "a writer got in while a reader held the lock"
        order.append("reader done")
    w.join(HANG_GUARD)
    assert order == ["reader done", "writer"]


# -- other processes: fcntl.lockf ---------------------------------------------------------


def test_our_write_lock_excludes_lockf(lock_path: Path, children: list[Child]) -> None:
    lock = cs.Lockfile(lock_path)
    other = lockf_child(children, lock_path)
    with lock.writing():
        assert proc_locks_holders(lock_path) == {os.getpid()}
        other.send("X")
        other.expect("busy")
        other.send("S")
        other.expect("busy")
    other.send("X")
    other.expect("locked")


def test_our_read_lock_is_shared_with_lockf(lock_path: Path, children: list[Child]) -> None:
    lock = cs.Lockfile(lock_path)
    other = lockf_child(children, lock_path)
    with lock.reading():
        other.send("S")
        other.expect("locked")
        other.send("u")
        other.expect("unlocked")
        other.send("X")
        other.expect("busy")


def test_lockf_write_lock_excludes_ours(lock_path: Path, children: list[Child]) -> None:
    lock = cs.Lockfile(lock_path)
    other = lockf_child(children, lock_path)
    other.send("x")
    other.expect("locked")
    t, got = lock_in_thread(lock)
    wait_until_blocked(lock_path, os.getpid())
    assert not got.is_set()
    other.send("u")
    other.expect("unlocked")
    assert got.wait(HANG_GUARD)
    t.join()


def test_lockf_read_lock_blocks_our_writer_not_our_reader(
    lock_path: Path, children: list[Child]
) -> None:
    lock = cs.Lockfile(lock_path)
    other = lockf_child(children, lock_path)
    other.send("s")
    other.expect("locked")
    with lock.reading():
        pass  # shared: no wait
    t, got = lock_in_thread(lock)
    wait_until_blocked(lock_path, os.getpid())
    assert not got.is_set()
    other.send("u")
    other.expect("unlocked")
    assert got.wait(HANG_GUARD)
    t.join()


# -- other processes: ours ----------------------------------------------------------------


def test_ours_against_ours_write_is_exclusive(lock_path: Path, children: list[Child]) -> None:
    a = our_child(children, lock_path)
    b = our_child(children, lock_path)
    a.send("w")
    a.expect("locked")
    b.send("w")
    wait_until_blocked(lock_path, b.pid)
    b.send("r")  # queued behind the write it is still waiting for
    a.send("u")
    a.expect("unlocked")
    b.expect("locked")
    b.expect("rlocked")  # the read inside its own write is a recursive take
    a.send("r")
    wait_until_blocked(lock_path, a.pid)


def test_ours_against_ours_readers_share(lock_path: Path, children: list[Child]) -> None:
    cs.Lockfile(lock_path)  # create it
    a = our_child(children, lock_path)
    b = our_child(children, lock_path, "ro")
    a.send("r")
    a.expect("rlocked")
    b.send("r")
    b.expect("rlocked")
    assert proc_locks_holders(lock_path) == {a.pid, b.pid}
    c = our_child(children, lock_path)
    c.send("w")
    wait_until_blocked(lock_path, c.pid)
    a.send("u")
    a.expect("unlocked")
    b.send("u")
    b.expect("unlocked")
    c.expect("locked")


def test_other_process_sees_one_touch_exactly_once(lock_path: Path, children: list[Child]) -> None:
    lock = cs.Lockfile(lock_path)
    reader = our_child(children, lock_path)

    def check() -> str:
        reader.send("r")
        reader.expect("rlocked")
        reader.send("m")
        assert reader.proc.stdout is not None
        answer = reader.proc.stdout.readline().strip()
        reader.send("u")
        reader.expect("unlocked")
        return answer

    assert check() == "True"  # never touched: modified, as in Go
    with lock.writing():
        lock.touch()
    assert check() == "True"
    assert check() == "False"
    assert check() == "False"
    with lock.writing():
        lock.touch()
        lock.touch()
    assert check() == "True"
    assert check() == "False"
    # Our own touches are not news to us; the child's are.
    with lock.writing():
        assert lock.modified() is False
    reader.send("w")
    reader.expect("locked")
    reader.send("t")
    reader.expect("touched")
    reader.send("u")
    reader.expect("unlocked")
    with lock.writing():
        assert lock.modified() is True
        assert lock.modified() is False


def test_kill_9_releases_the_lock(lock_path: Path, children: list[Child]) -> None:
    holder = our_child(children, lock_path)
    holder.send("w")
    holder.expect("locked")
    lock = cs.Lockfile(lock_path)
    t, got = lock_in_thread(lock)
    wait_until_blocked(lock_path, os.getpid())
    os.kill(holder.pid, signal.SIGKILL)
    assert got.wait(HANG_GUARD)
    t.join()


# -- the GIL and signals ------------------------------------------------------------------

GIL_CHILD = r"""
import sys, threading
import containers_storage as cs
lock = cs.Lockfile(sys.argv[1])
got = threading.Event()
t = threading.Thread(target=lambda: (lock.lock(), got.set(), lock.unlock()))
t.start()
print("waiting", flush=True)
sys.stdin.readline()              # the parent saw our thread blocked in fcntl
n = 0
for i in range(2_000_000):        # Python work while that thread waits
    n += i
print("computed", got.is_set(), flush=True)
t.join()
print("acquired", flush=True)
"""


def test_waiting_thread_does_not_stop_other_python_threads(
    lock_path: Path, children: list[Child]
) -> None:
    cs.Lockfile(lock_path)  # create the file
    holder = lockf_child(children, lock_path)
    holder.send("x")
    holder.expect("locked")
    child = Child(GIL_CHILD, str(lock_path))
    children.append(child)
    child.expect("waiting")
    wait_until_blocked(lock_path, child.pid)
    child.send("go")
    child.expect("computed False")  # would hang (and fail at the guard) if the GIL were held
    holder.send("u")
    holder.expect("unlocked")
    child.expect("acquired")


def test_ctrl_c_interrupts_a_wait(lock_path: Path, children: list[Child]) -> None:
    lock = cs.Lockfile(lock_path)
    script = RESTORE_SIGINT + (
        "import sys, containers_storage as cs\n"
        "lock = cs.Lockfile(sys.argv[1])\n"
        "print('waiting', flush=True)\n"
        "try:\n"
        "    lock.lock()\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', lock.held(), flush=True)\n"
    )
    with lock.writing():
        child = Child(script, str(lock_path))
        children.append(child)
        child.expect("waiting")
        wait_until_blocked(lock_path, child.pid)
        os.kill(child.pid, signal.SIGINT)
        child.expect("interrupted None")


# -- the Go tools -------------------------------------------------------------------------


@pytest.mark.gotools
@pytest.mark.parametrize("mode", ["writing", "reading"])
def test_go_containers_storage_waits_for_our_lock(tmp_path: Path, mode: str) -> None:
    """Go's `layers` opens the layer store read-write (it may clean up incomplete layers), so
    it wants the write lock on layers.lock: our write lock and our read lock both hold it off.
    """
    graph, run = tmp_path / "graph", tmp_path / "run"
    layers_lock = graph / "vfs-layers" / "layers.lock"
    lock = cs.Lockfile(layers_lock)
    with getattr(lock, mode)():
        go = subprocess.Popen(
            go_argv((graph, run), "vfs", "layers"), stdout=subprocess.PIPE, text=True
        )
        try:
            wait_until_blocked(layers_lock, go.pid)
            assert go.poll() is None
        except BaseException:
            go.kill()
            raise
    out, _ = go.communicate(timeout=HANG_GUARD)
    assert go.returncode == 0
    assert out == ""  # an empty store has no layers


@pytest.mark.gotools
def test_go_lock_excludes_ours(tmp_path: Path, children: list[Child]) -> None:
    """While Go waits for layers.lock it holds storage.lock: we must wait for it in turn.

    layers.lock is held by a child of ours, not by this process: if this process held it
    while asking for storage.lock, the kernel would see the cycle and answer EDEADLK.
    """
    graph, run = tmp_path / "graph", tmp_path / "run"
    subprocess.run(go_argv((graph, run), "vfs", "layers"), check=True, capture_output=True)
    layers_lock, storage_lock = graph / "vfs-layers" / "layers.lock", graph / "storage.lock"
    holder = our_child(children, layers_lock)
    holder.send("w")
    holder.expect("locked")
    go = subprocess.Popen(go_argv((graph, run), "vfs", "layers"), stdout=subprocess.DEVNULL)
    try:
        wait_until_blocked(layers_lock, go.pid)
        assert go.pid in proc_locks_holders(storage_lock)
        storage = cs.Lockfile(storage_lock)
        t, got = lock_in_thread(storage)
        wait_until_blocked(storage_lock, os.getpid())
        assert not got.is_set()
        holder.send("u")
        holder.expect("unlocked")
        assert got.wait(HANG_GUARD)
        t.join()
        assert go.wait(HANG_GUARD) == 0
    finally:
        if go.poll() is None:
            go.kill()
            go.wait()
