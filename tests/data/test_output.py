"""Output parts: the lock that keeps two runs off one output (the processes of one job each lock their own part)."""

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from stic_plugin.data.output import OutputBusy, PartLock, ShardedOutput, release_locks

HOLD = """
import sys, time
from pathlib import Path
from stic_plugin.data.output import PartLock
PartLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder():
    """``holder(path)``: another process that holds the part lock at ``path`` until the test ends."""
    processes = []

    def start(path):
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
        processes.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


def test_a_second_run_is_refused_at_once_naming_the_first(tmp_path, holder):
    path = tmp_path / "data" / "stic_pref.stic" / "part-00000-of-00001.lock"
    first = holder(path)
    with pytest.raises(OutputBusy) as caught:
        ShardedOutput(str(tmp_path / "data"), "stic_pref").lock()
    message = str(caught.value)
    assert f"process {first.pid} on host {socket.gethostname()}" in message and str(path) in message


def test_the_processes_of_one_job_lock_their_own_parts_and_another_world_size_is_refused(tmp_path):
    try:
        for rank in (0, 1):
            ShardedOutput(str(tmp_path), "out", rank, 2).lock()
        with pytest.raises(OutputBusy, match="another number of processes"):
            ShardedOutput(str(tmp_path), "out", 0, 1).lock()
        with pytest.raises(OutputBusy, match=f"process {os.getpid()}"):
            ShardedOutput(str(tmp_path), "out", 1, 2).lock()  # the same part twice
    finally:
        release_locks()
    ShardedOutput(str(tmp_path), "out", 0, 1).lock()  # all released: free again
    release_locks()
    assert (tmp_path / "out.stic" / "part-00000-of-00001.lock").read_text() == ""  # a clean end leaves no name


def test_a_lock_left_by_a_process_that_died_is_taken_over_with_a_log_line(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "part-00000-of-00001.lock"
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "2026-01-01 00:00:00"}))
    caplog.set_level(logging.WARNING, logger="stic_plugin")
    lock = PartLock(path)
    lock.acquire()
    try:
        assert f"taking over the lock of process {dead.pid} on host {socket.gethostname()}" in caplog.text
        assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def _immutable(path):
    """Make ``path`` immutable (chattr +i: refused even to root); False where the file system cannot."""
    import shutil

    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_a_dataset_info_that_cannot_be_written_stops_the_run_before_it_starts(tmp_path):
    from stic_plugin.data.output import check_dataset_info_writable

    info = tmp_path / "dataset_info.json"
    info.write_text("{}")
    check_dataset_info_writable(tmp_path)  # writable: no error, nothing changed
    assert info.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == [
        ".dataset_info.json.lock",
        "dataset_info.json",
    ]
    if os.geteuid() != 0:
        info.chmod(0o444)
        locked = True
    else:
        locked = _immutable(info)
    if not locked:
        pytest.skip("cannot make a file unwritable here (root, and no chattr)")
    try:
        with pytest.raises(ValueError, match="dataset_info.json cannot be written"):
            check_dataset_info_writable(tmp_path)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(info)], check=True)
        else:
            info.chmod(0o644)


def test_temporary_copies_left_by_a_killed_writer_are_removed(tmp_path, caplog):
    from stic_plugin.data.output import merge_dataset_info

    stale = tmp_path / ".dataset_info.json.abc123.tmp"
    stale.write_text('{"half": ')
    caplog.set_level(logging.INFO, logger="stic_plugin")
    merge_dataset_info(tmp_path, "out", {"file_name": "out"})
    assert not stale.exists() and "left by a process killed while writing" in caplog.text
    assert json.loads((tmp_path / "dataset_info.json").read_text()) == {"out": {"file_name": "out"}}


def test_garbled_lines_are_reported_with_file_and_line_and_moved_out(tmp_path, caplog):
    from stic_plugin.data.output import repair_part

    part = tmp_path / "part-00000-of-00001.jsonl"
    part.write_bytes(b'{"a": 1}\n{"a": \x00\x00garbage\n{"a": 3}\n[1, 2]\n{"a": 5}\n{"a": 6, "tor')
    caplog.set_level(logging.WARNING, logger="stic_plugin")
    repair_part(part, tmp_path / "garbled.txt")
    assert part.read_text() == '{"a": 1}\n{"a": 3}\n{"a": 5}\n'
    assert f"{part}, line 2: not valid JSON" in caplog.text and f"{part}, line 4: not a JSON object" in caplog.text
    kept = (tmp_path / "garbled.txt").read_bytes()
    assert b'{"a": \x00\x00garbage\n' in kept and b"[1, 2]\n" in kept  # nothing lost
    repair_part(part, tmp_path / "garbled.txt")  # a clean file stays as it is
    assert part.read_text() == '{"a": 1}\n{"a": 3}\n{"a": 5}\n'


KILLED_IN_REPAIR = """
import os, signal, sys
from pathlib import Path
from stic_plugin.data import output
output.os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # killed just before the copy takes over
output.ShardedOutput(sys.argv[1], "out").check_configuration({"k": 1}, overwrite=False)
"""


def test_a_repair_killed_midway_leaves_nothing_but_records_in_the_data_folder(tmp_path):
    """LLaMA-Factory loads every file of a dataset's folder, and stops on one that is not of the records' type."""
    out = ShardedOutput(str(tmp_path), "out")
    out.meta_dir.mkdir(parents=True)
    out.config_path.write_text('{"k": 1}')
    out.records_path.parent.mkdir()
    out.records_path.write_bytes(b'{"a": 1}\n[1, 2]\n{"a": 3}\n')
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_REPAIR, str(tmp_path)], check=False)
    assert killed.returncode == -9
    assert os.listdir(out.data_dir) == [out.records_path.name]
    assert [p.name for p in out.meta_dir.glob(".*.tmp")]  # the copy was written outside the data folder

    out.check_configuration({"k": 1}, overwrite=False)  # the rerun
    assert os.listdir(out.data_dir) == [out.records_path.name]
    assert not list(out.meta_dir.glob(".*.tmp"))
    assert out.records_path.read_bytes() == b'{"a": 1}\n{"a": 3}\n'


def test_each_process_removes_the_copies_of_its_own_files_left_by_a_killed_rewrite(tmp_path):
    out = ShardedOutput(str(tmp_path), "out", 0, 2)
    out.meta_dir.mkdir(parents=True)
    out.data_dir.mkdir()
    out.config_path.write_text('{"k": 1}')
    own = [
        out.data_dir / ".part-00000-of-00002.jsonl.a1.tmp",  # beside the part: where earlier versions wrote it
        out.meta_dir / ".part-00000-of-00002.jsonl.a2.tmp",
        out.meta_dir / ".skipped-part-00000-of-00002.jsonl.a3.tmp",
        out.meta_dir / ".config.json.a4.tmp",
    ]
    other = out.meta_dir / ".part-00001-of-00002.jsonl.b1.tmp"  # process 1's, which may be rewriting it now
    for path in [*own, other]:
        path.write_text("half")
    out.check_configuration({"k": 1}, overwrite=False)
    assert not any(path.exists() for path in own)
    assert other.exists()


def test_a_dataset_info_that_is_a_link_gets_the_entry_where_it_points(tmp_path):
    """Before: the link was replaced by a file of its own, and the shared file never got the entry."""
    from stic_plugin.data.output import check_dataset_info_writable, merge_dataset_info

    shared = tmp_path / "shared" / "info.json"
    shared.parent.mkdir()
    shared.write_text(json.dumps({"other": {"file_name": "other"}}))
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").symlink_to(shared)
    check_dataset_info_writable(data)
    merge_dataset_info(data, "out", {"file_name": "out"})
    assert (data / "dataset_info.json").is_symlink()
    assert json.loads(shared.read_text()) == {"other": {"file_name": "other"}, "out": {"file_name": "out"}}
    assert not list(shared.parent.glob(".info.json.*.tmp")) and not list(data.glob(".dataset_info.json.*.tmp"))

    (data / "dataset_info.json").unlink()
    (data / "dataset_info.json").symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(ValueError, match="is a link to .*nowhere.json, which is not a file"):
        check_dataset_info_writable(data)


def test_a_sibling_process_s_part_is_no_foreign_file_but_anything_else_is(tmp_path):
    """Under torchrun, process 1 may open its part before process 0 has written the configuration: process 0
    must not take that part for files another tool wrote. A file of anything else still stops the run."""
    first, second = ShardedOutput(str(tmp_path), "out", 0, 2), ShardedOutput(str(tmp_path), "out", 1, 2)
    second.check_configuration({"seed": 0}, overwrite=False)
    second.records_path.parent.mkdir(parents=True, exist_ok=True)
    second.records_path.write_text('{"id": 1}\n')  # it has begun writing
    assert first.conflict({"seed": 0}, overwrite=False) is None
    (second.records_path.parent / "part-00000-of-00001.jsonl").write_text("")  # another world size's part
    (second.records_path.parent / "notes.txt").write_text("mine")
    problem = first.conflict({"seed": 0}, overwrite=False)
    assert problem is not None and "holds files this tool did not write" in problem
    assert sorted(path.name for path in first.foreign_files()) == ["notes.txt", "part-00000-of-00001.jsonl"]
