"""The job store: transitions, races across threads and processes, hostile ids, planted files,
modes, unreadable records, gc, listing, and a 10,000-record scale check."""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import random
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import pytest

from agent_dispatch.errors import BadArgumentError, JobNotFoundError, JobRecordError
from agent_dispatch.jobs import (
    ALLOWED_TRANSITIONS,
    JobAlreadyTerminal,
    JobStore,
    RecordProblem,
    TransitionRefused,
    new_job_id,
)
from agent_dispatch.models import JOB_STATUSES, TERMINAL_STATUSES, DispatchResult, Job

SRC = Path(__file__).resolve().parents[1] / "src"
NOW = 1_700_000_000.0
DAY = 86400.0


@pytest.fixture
def jobs_dir(tmp_path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def store(jobs_dir) -> JobStore:
    return JobStore(jobs_dir, clock=lambda: NOW)


def make(store: JobStore, status: str = "pending", created_at: float = NOW - 10, **fields) -> Job:
    values = {"agent": "infra", "task": "deploy", **fields}
    job = Job(id=new_job_id(), status=status, created_at=created_at, **values)
    return store.create(job)


def ended(store: JobStore, status: str, completed_at: float, created_at: float | None = None) -> Job:
    created = completed_at - 5 if created_at is None else created_at
    return make(store, status, created_at=created, started_at=created, completed_at=completed_at)


def raw(store: JobStore, job_id: str) -> bytes:
    return (store.directory / f"{job_id}.json").read_bytes()


# --- ids -------------------------------------------------------------------------------------


def test_new_job_ids_are_32_lowercase_hex_and_unique():
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and i == i.lower() and int(i, 16) >= 0 for i in ids)


HOSTILE_IDS = [
    "../x",
    "../" + "a" * 29,
    "a" * 31,
    "a" * 33,
    "A" * 32,
    "a" * 32 + "\n",
    "a" * 31 + "\x00",
    "",
    "g" * 32,
    None,
    123,
]


@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=repr)
def test_hostile_ids_are_refused_before_any_file_access(store, bad, monkeypatch):
    touched: list[tuple] = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            touched.append((name, args))
            return real(*args, **kwargs)

        return wrapper

    for module, name in [
        (os, "open"), (os, "stat"), (os, "lstat"), (os, "listdir"), (os, "scandir"), (os, "replace"),
        (os, "unlink"), (os, "rename"), (os, "mkdir"), (builtins, "open"), (tempfile, "mkstemp"), (fcntl, "flock"),
    ]:
        monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    calls = [
        lambda: store.get(bad),
        lambda: store.transition(bad, "running"),
        lambda: store.transition(bad, "cancelled"),
        lambda: store.update(bad, progress=["x"]),
        lambda: store.path_for(bad),
        lambda: store.path_for(bad, ".out"),
        lambda: store.create(Job.model_construct(id=bad, status="pending", agent="a", task="t", created_at=NOW)),
    ]
    for call in calls:
        with pytest.raises(BadArgumentError):
            call()
    assert touched == []


def test_traversal_id_never_reads_the_file_it_points_at(store, jobs_dir):
    # A valid-looking record planted where "../x" would lead.
    planted = Job(id="a" * 32, status="done", agent="evil", task="planted", created_at=NOW)
    (jobs_dir.parent / "x.json").write_text(planted.model_dump_json())
    with pytest.raises(BadArgumentError):
        store.get("../x")


def test_path_for_gives_artefact_paths_and_refuses_odd_suffixes(store, jobs_dir):
    job_id = new_job_id()
    assert store.path_for(job_id, ".out") == jobs_dir / f"{job_id}.out"
    assert store.path_for(job_id) == jobs_dir / f"{job_id}.json"
    for suffix in ("/../x", ".json/..", "", ".OUT", "out", ".a-b"):
        with pytest.raises(BadArgumentError):
            store.path_for(job_id, suffix)


# --- planted files -------------------------------------------------------------------------


def test_symlinked_record_is_never_followed(store, jobs_dir, tmp_path):
    job_id = new_job_id()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(Job(id=job_id, status="running", agent="evil", task="x", created_at=NOW).model_dump_json())
    before = elsewhere.read_bytes()
    (jobs_dir / f"{job_id}.json").symlink_to(elsewhere)
    with pytest.raises(JobRecordError, match="symbolic link"):
        store.get(job_id)
    with pytest.raises(JobRecordError):
        store.transition(job_id, "cancelled")
    with pytest.raises(JobRecordError):
        store.update(job_id, progress=["x"])
    assert elsewhere.read_bytes() == before
    # A rebuilt index does not pick it up either, and gc leaves both files alone.
    fresh = JobStore(jobs_dir)
    problems: list[RecordProblem] = []
    assert [job.id for job in fresh.list(problems=problems)] == []
    assert fresh.unfinished() == []
    assert fresh.gc_all() == 0
    assert (jobs_dir / f"{job_id}.json").is_symlink() and elsewhere.read_bytes() == before


def test_symlink_swapped_in_over_an_existing_record_is_refused(store, tmp_path):
    job = make(store, "running")
    target = tmp_path / "outside.json"
    target.write_text(job.model_copy(update={"agent": "evil"}).model_dump_json())
    path = store.path_for(job.id)
    path.unlink()
    path.symlink_to(target)
    problems: list[RecordProblem] = []
    assert store.list(problems=problems) == []
    assert problems and problems[0].job_id == job.id and "symbolic link" in problems[0].reason
    assert store.unfinished() == []


def test_fifo_under_a_record_name_is_refused_without_blocking(store, jobs_dir):
    job_id = new_job_id()
    os.mkfifo(jobs_dir / f"{job_id}.json")
    began = time.monotonic()
    with pytest.raises(JobRecordError, match="regular file"):
        store.get(job_id)
    assert time.monotonic() - began < 1


# --- modes ------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_directory_and_files_are_owner_only_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        store = JobStore(tmp_path / "a" / "b" / "jobs")
        job = make(store, "pending")
        store.transition(job.id, "running")
    finally:
        os.umask(old)
    assert mode(store.directory) == 0o700
    assert mode(store.directory / ".index") == 0o700
    assert mode(store.path_for(job.id)) == 0o600
    assert mode(store.directory / ".lock") == 0o600
    assert all(mode(p) == 0o600 for p in (store.directory / ".index").iterdir())


def test_existing_loose_directory_is_tightened(tmp_path):
    loose = tmp_path / "jobs"
    loose.mkdir()
    loose.chmod(0o755)
    JobStore(loose)
    assert mode(loose) == 0o700


def test_a_file_where_the_directory_should_be_is_a_clear_error(tmp_path):
    (tmp_path / "jobs").write_text("not a dir")
    with pytest.raises(JobRecordError, match="not a directory"):
        JobStore(tmp_path / "jobs")


# --- create and get ------------------------------------------------------------------------


def test_create_get_roundtrip_across_store_instances(store, jobs_dir):
    result = DispatchResult(agent="infra", success=True, result="ok", session_id="s")
    job = make(store, "done", result=result, completed_at=NOW, request={"task": "deploy"}, kind="ref")
    again = JobStore(jobs_dir).get(job.id)
    assert again == job
    assert json.loads(raw(store, job.id))["version"] == 1


def test_create_refuses_an_existing_id(store):
    job = make(store)
    with pytest.raises(JobRecordError, match="already exists"):
        store.create(job.model_copy(update={"task": "other"}))
    assert store.get(job.id).task == "deploy"


def test_missing_job_is_not_found(store):
    with pytest.raises(JobNotFoundError):
        store.get(new_job_id())
    with pytest.raises(JobNotFoundError):
        store.transition(new_job_id(), "running")
    with pytest.raises(JobNotFoundError):
        store.update(new_job_id(), progress=[])


def test_lone_surrogates_are_stored_not_fatal(store):
    job = make(store, task="deploy \ud800 now")
    assert store.get(job.id).task == "deploy ? now"


# --- unreadable records ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"{not json", "invalid"),
        (b"\xff\xfe garbage", "invalid"),
        (b"[]", "invalid"),
        (b'{"id": "%s", "status": "running"}', "invalid"),
        (b'{"id": "%s", "status": "exploded", "agent": "a", "task": "t", "created_at": 1}', "status"),
        (b'{"id": "%s", "status": "running", "agent": "a", "task": "t", "created_at": -5}', "created_at"),
        (b'{"id": "%s", "status": "running", "agent": "a", "task": "t", "created_at": 1, "started_at": NaN}',
         "started_at"),
        (b'{"id": "%s", "status": "running", "agent": "a", "task": "t", "created_at": 1e999}', "created_at"),
        (b'{"id": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "status": "running", "agent": "a", "task": "t", '
         b'"created_at": 1}', "not the one in its name"),
    ],
)
def test_unreadable_record_is_reported_never_deleted(store, content, reason):
    job = make(store, "running")
    path = store.path_for(job.id)
    body = content.replace(b"%s", job.id.encode()) if b"%s" in content else content
    path.write_bytes(body)
    with pytest.raises(JobRecordError, match=reason):
        store.get(job.id)
    with pytest.raises(JobRecordError):
        store.transition(job.id, "cancelled")
    problems: list[RecordProblem] = []
    assert store.list(problems=problems) == []
    assert [p.job_id for p in problems] == [job.id]
    problems.clear()
    assert store.unfinished(problems=problems) == [] and [p.job_id for p in problems] == [job.id]
    assert store.gc_all() == 0
    assert path.read_bytes() == body


def test_unreadable_record_stays_listed_as_a_problem_after_an_index_rebuild(store, jobs_dir):
    job = make(store, "done", completed_at=NOW)
    store.path_for(job.id).write_text("{broken")
    (jobs_dir / ".index" / os.listdir(jobs_dir / ".index")[0]).unlink()
    os.rmdir(jobs_dir / ".index")
    problems: list[RecordProblem] = []
    assert JobStore(jobs_dir).list(problems=problems) == []
    assert [p.job_id for p in problems] == [job.id]


# --- transitions -----------------------------------------------------------------------------


@pytest.mark.parametrize("edge", sorted(ALLOWED_TRANSITIONS))
def test_every_allowed_transition(store, jobs_dir, edge):
    start, to = edge
    job = make(store, start, started_at=NOW - 5 if start == "running" else None)
    moved = store.transition(job.id, to, error="why" if to == "failed" else None)
    assert moved.status == to and JobStore(jobs_dir).get(job.id) == moved
    if to == "running":
        assert moved.started_at == NOW and moved.completed_at is None
    else:
        assert moved.completed_at == NOW
    assert [j.id for j in store.unfinished()] == ([job.id] if to == "running" else [])
    assert [j.id for j in store.list(status=to)] == [job.id]
    assert store.list(status=start) == []


REFUSED = [(a, b) for a in JOB_STATUSES for b in JOB_STATUSES if (a, b) not in ALLOWED_TRANSITIONS]


@pytest.mark.parametrize("edge", REFUSED)
def test_every_refused_transition_leaves_the_record_alone(store, edge):
    start, to = edge
    job = make(store, start)
    before = raw(store, job.id)
    expected = JobAlreadyTerminal if start in TERMINAL_STATUSES else TransitionRefused
    with pytest.raises(expected) as info:
        store.transition(job.id, to)
    assert info.value.job == job and info.value.to_status == to
    assert isinstance(info.value, JobRecordError)  # one boundary catches it
    assert raw(store, job.id) == before


def test_unknown_target_status_is_a_bad_argument(store):
    job = make(store)
    with pytest.raises(BadArgumentError):
        store.transition(job.id, "exploded")


def test_given_timestamps_win_over_the_stamps(store):
    job = make(store)
    assert store.transition(job.id, "running", started_at=NOW - 1).started_at == NOW - 1
    assert store.transition(job.id, "done", completed_at=NOW - 0.5).completed_at == NOW - 0.5


def test_require_is_checked_under_the_lock_and_can_refuse(store):
    job = make(store, "running", owner={"pid": 1})
    before = raw(store, job.id)
    with pytest.raises(TransitionRefused, match="condition"):
        store.transition(job.id, "failed", require=lambda j: j.owner == {"pid": 2})
    assert raw(store, job.id) == before
    assert store.transition(job.id, "failed", require=lambda j: j.owner == {"pid": 1}).status == "failed"


def test_update_changes_fields_until_the_job_ends(store):
    job = make(store)
    assert store.update(job.id, owner={"pid": 7}).owner == {"pid": 7}
    store.transition(job.id, "running")
    assert store.update(job.id, progress=["a", "b"], run={"pid": 9}).progress == ["a", "b"]
    store.transition(job.id, "done")
    before = raw(store, job.id)
    with pytest.raises(JobAlreadyTerminal):
        store.update(job.id, progress=["late"])
    assert raw(store, job.id) == before


def test_update_refuses_status_and_identity_fields_and_bad_values(store):
    job = make(store)
    for field in ("status", "id", "created_at", "version", "nonsense"):
        with pytest.raises(TypeError):
            store.update(job.id, **{field: "x"})
    with pytest.raises(TypeError):
        store.transition(job.id, "running", status="done")
    with pytest.raises(BadArgumentError):
        store.update(job.id, started_at=float("nan"))
    with pytest.raises(BadArgumentError):
        store.transition(job.id, "running", started_at=-1)
    assert store.get(job.id) == job


def test_failed_write_keeps_the_old_record_and_leaves_no_temp_file(store, monkeypatch):
    job = make(store)
    before = raw(store, job.id)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(JobRecordError, match="No space left"):
        store.transition(job.id, "running")
    assert raw(store, job.id) == before
    assert [n for n in os.listdir(store.directory) if n.startswith(".tmp")] == []


# --- races ------------------------------------------------------------------------------------


def test_cancel_before_start_means_it_never_runs(store):
    job = make(store)
    store.transition(job.id, "cancelled")
    with pytest.raises(JobAlreadyTerminal) as info:
        store.transition(job.id, "running")
    assert info.value.job.status == "cancelled" and store.get(job.id).started_at is None


def test_finish_after_cancel_is_refused_and_keeps_the_cancel(store):
    job = make(store, "running")
    store.transition(job.id, "cancelled", error="cancelled while running")
    result = DispatchResult(agent="infra", success=True, result="late")
    with pytest.raises(JobAlreadyTerminal) as info:
        store.transition(job.id, "done", result=result)
    assert info.value.job.status == "cancelled"
    assert store.get(job.id).result is None


def test_threads_racing_start_and_cancel_always_end_cancelled(store):
    outcomes = []
    for _ in range(30):
        job = make(store)
        barrier = threading.Barrier(2)
        started = []

        def start(job_id=job.id, barrier=barrier, started=started):
            barrier.wait()
            try:
                store.transition(job_id, "running")
                started.append(True)
            except JobAlreadyTerminal:
                started.append(False)

        def cancel(job_id=job.id, barrier=barrier):
            barrier.wait()
            store.transition(job_id, "cancelled")  # legal from pending and from running

        threads = [threading.Thread(target=start), threading.Thread(target=cancel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = store.get(job.id)
        assert final.status == "cancelled"
        assert (final.started_at is not None) == started[0]
        outcomes.append(started[0])
    assert store.unfinished() == []


def test_concurrent_updates_never_tear_a_record(store):
    job = make(store, "running")
    errors = []

    def writer(n):
        try:
            for i in range(40):
                store.update(job.id, progress=[f"{n}-{i}"] * 50)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(store.get(job.id).progress)) == 1
    assert [n for n in os.listdir(store.directory) if n.startswith(".tmp")] == []


RACER = r"""
import json, sys, time
from pathlib import Path
from agent_dispatch.jobs import JobStore, JobAlreadyTerminal
from agent_dispatch.models import DispatchResult

directory, to_status, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
ids = json.loads(Path(sys.argv[4]).read_text())
store = JobStore(directory)
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    pass  # spin: both racers must leave the line together
won = []
for job_id in ids:
    fields = {"error": "cancelled"} if to_status == "cancelled" else {
        "result": DispatchResult(agent="infra", success=True, result="paid answer")}
    try:
        store.transition(job_id, to_status, **fields)
        won.append(job_id)
    except JobAlreadyTerminal:
        pass
print(json.dumps(won))
"""


def test_two_processes_racing_finish_and_cancel_exactly_one_wins(store, jobs_dir, tmp_path):
    ids = [make(store, "running").id for _ in range(150)]
    go, id_file = tmp_path / "go", tmp_path / "ids.json"
    id_file.write_text(json.dumps(ids))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    racers = {
        to: subprocess.Popen(
            [sys.executable, "-c", RACER, str(jobs_dir), to, str(go), str(id_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )
        for to in ("done", "cancelled")
    }
    time.sleep(0.5)  # let both import and reach the start line
    go.touch()
    won = {}
    for to, proc in racers.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        won[to] = set(json.loads(out))
    assert won["done"] | won["cancelled"] == set(ids)
    assert won["done"] & won["cancelled"] == set()
    for job_id in ids:
        final = store.get(job_id)
        assert final.status == ("done" if job_id in won["done"] else "cancelled")
        assert (final.result is not None) == (final.status == "done")
    assert store.unfinished() == []
    assert len(os.listdir(jobs_dir / ".index")) == len(ids)


# --- the index: crash leftovers are repaired --------------------------------------------------


def test_deleted_index_is_rebuilt_from_the_records(store, jobs_dir):
    jobs = [make(store, status, created_at=NOW - n) for n, status in enumerate(["running", "done", "pending"])]
    for name in os.listdir(jobs_dir / ".index"):
        os.unlink(jobs_dir / ".index" / name)
    os.rmdir(jobs_dir / ".index")
    fresh = JobStore(jobs_dir)
    assert [j.id for j in fresh.list()] == [j.id for j in jobs]
    assert {j.id for j in fresh.unfinished()} == {jobs[0].id, jobs[2].id}


def test_stale_marker_from_a_crash_mid_transition_is_repaired(store, jobs_dir):
    job = make(store, "pending")
    index = jobs_dir / ".index"
    pending_mark = os.listdir(index)[0]
    store.transition(job.id, "running")
    # Simulate a crash after the record was written but before its marker was renamed.
    os.rename(index / os.listdir(index)[0], index / pending_mark)
    assert [j.status for j in store.list(status="pending")] == []  # the record is the truth
    assert [j.id for j in store.unfinished()] == [job.id]
    assert [j.id for j in store.list(status="running")] == [job.id]
    store.transition(job.id, "done")
    assert os.listdir(index) == [pending_mark.replace(".pending", ".done")]


def test_orphan_marker_from_a_crash_mid_create_is_dropped(store, jobs_dir):
    job = make(store, "pending")
    store.path_for(job.id).unlink()  # as if the process died between marker and record
    assert store.list() == [] and store.unfinished() == []
    assert os.listdir(jobs_dir / ".index") == []


def test_duplicate_markers_never_list_a_job_twice(store, jobs_dir):
    job = make(store, "running")
    index = jobs_dir / ".index"
    name = os.listdir(index)[0]
    (index / name.replace(".running", ".pending")).touch()
    assert [j.id for j in store.list()] == [job.id]


# --- list -------------------------------------------------------------------------------------


def test_list_is_newest_first_filtered_and_limited(store):
    statuses = ["pending", "running", "done", "failed", "cancelled"] * 4
    created = list(range(len(statuses)))
    random.Random(7).shuffle(created)  # noqa: S311 - a fixed shuffle, not a secret
    jobs = [make(store, s, created_at=NOW - 1000 + c) for s, c in zip(statuses, created, strict=True)]
    newest_first = sorted(jobs, key=lambda j: j.created_at, reverse=True)
    assert [j.id for j in store.list()] == [j.id for j in newest_first]
    assert [j.id for j in store.list(limit=3)] == [j.id for j in newest_first[:3]]
    for status in JOB_STATUSES:
        assert [j.id for j in store.list(status=status)] == [j.id for j in newest_first if j.status == status]
    assert [j.id for j in store.list(status="done", limit=2)] == [
        j.id for j in newest_first if j.status == "done"
    ][:2]
    assert len(store.list(limit=0)) == 1 and len(store.list(limit=-5)) == 1  # clamped to 1
    assert len(store.list(status="")) == len(jobs)


@pytest.mark.parametrize("status", ["exploded", "DONE", "done ", 5])
def test_list_refuses_an_unknown_status(store, status):
    with pytest.raises(BadArgumentError):
        store.list(status=status)


@pytest.mark.parametrize("limit", ["50", 2.5, True, None])
def test_list_refuses_a_non_integer_limit(store, limit):
    with pytest.raises(BadArgumentError):
        store.list(limit=limit)


# --- gc ----------------------------------------------------------------------------------------


def test_gc_deletes_only_old_terminal_jobs_with_their_artefacts(store, jobs_dir):
    old = [ended(store, status, NOW - 8 * DAY) for status in ("done", "failed", "cancelled")]
    young = ended(store, "done", NOW - 6 * DAY)
    finished_late = ended(store, "done", NOW - 1 * DAY, created_at=NOW - 30 * DAY)  # age is completed_at
    no_completed = make(store, "failed", created_at=NOW - 9 * DAY)  # falls back to created_at
    stuck = [make(store, s, created_at=NOW - 30 * DAY) for s in ("pending", "running")]
    for job in old:
        store.path_for(job.id, ".out").write_text("out")
        store.path_for(job.id, ".err").write_text("err")
    assert store.gc(7, dry_run=True) == 4
    assert len(list(jobs_dir.glob("*.json"))) == 8
    assert store.gc(7) == 4
    remaining = {p.name for p in jobs_dir.iterdir() if not p.name.startswith(".")}
    assert remaining == {f"{j.id}.json" for j in [young, finished_late, *stuck]}
    assert len(os.listdir(jobs_dir / ".index")) == 4
    assert store.gc(7) == 0
    with pytest.raises(JobNotFoundError):
        store.get(no_completed.id)
    assert store.gc_all() == 2
    assert {j.id for j in store.list()} == {j.id for j in stuck}


@pytest.mark.parametrize("days", [float("nan"), float("inf"), float("-inf"), 0, 0.0, -1, True, "7", None])
def test_gc_refuses_bad_ages_and_deletes_nothing(store, jobs_dir, days):
    job = ended(store, "done", NOW - 400 * DAY)
    with pytest.raises(BadArgumentError):
        store.gc(days)
    assert store.get(job.id) == job


def test_gc_sweeps_stale_temporary_files_only(store, jobs_dir):
    stale, fresh = jobs_dir / ".tmp-stale.part", jobs_dir / ".tmp-fresh.part"
    stale.write_text("x")
    fresh.write_text("x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    store.gc(1)
    assert not stale.exists() and fresh.exists()


# --- scale ------------------------------------------------------------------------------------


def test_ten_thousand_records_list_and_recover_correctly(tmp_path):
    store = JobStore(tmp_path / "jobs", clock=lambda: NOW)
    statuses = ("done", "failed", "cancelled", "done")
    with mock.patch("agent_dispatch.jobs.os.fsync"):  # building 10,000 fsynced files is not the point
        jobs = [make(store, statuses[n % 4], created_at=NOW - 20_000 + n) for n in range(9_990)]
        jobs += [make(store, "running", created_at=NOW - 20_000 + n) for n in range(9_990, 10_000)]
    newest_first = jobs[::-1]
    assert [j.id for j in store.list(limit=50)] == [j.id for j in newest_first[:50]]
    assert len(store.list(limit=5000)) == 1000
    assert [j.id for j in store.list(status="running")] == [j.id for j in newest_first[:10]]
    assert [j.id for j in store.list(status="cancelled", limit=5)] == [
        j.id for j in newest_first if j.status == "cancelled"
    ][:5]
    assert [j.id for j in store.unfinished()] == [j.id for j in jobs[-10:]]
