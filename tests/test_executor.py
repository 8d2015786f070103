"""The executor seam of the sweeps (mot_lib.experiments.executor): the same files in process, on local worker
processes and on a Dask cluster found by its address; clear errors for options that cannot work."""
import os
from pathlib import Path

import pytest

from mot_lib.cli import main
from mot_lib.experiments import executor, schedule, sweeps

REPO = executor.REPO


@pytest.fixture
def few_jobs(monkeypatch, tmp_path):
    jobs = schedule.jobs()[:4]
    monkeypatch.setattr(schedule, "jobs", lambda *a, **k: jobs)
    monkeypatch.setattr(sweeps, "fingerprint", lambda modules: {"canary": [1.0]})
    monkeypatch.setattr(executor, "CACHE", tmp_path / "cache")
    monkeypatch.setenv("MOT_PROGRESS", "0")
    return tmp_path


def _files(folder):
    return {f: (folder / "training_schedule" / f).read_bytes() for f in ("rows.csv", "curves.csv")}


def test_a_dask_cluster_writes_the_files_of_the_in_process_run(few_jobs, capsys):
    distributed = pytest.importorskip("distributed")
    tmp = few_jobs
    assert main(["sweep", "schedule", "--smoke", "--out", str(tmp / "here")]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        assert main(["sweep", "schedule", "--smoke", "--fresh", "--scheduler", lc.scheduler_address,
                     "--out", str(tmp / "dask")]) == 0
    assert main(["sweep", "schedule", "--smoke", "--fresh", "--jobs", "2", "--out", str(tmp / "pool")]) == 0
    out = capsys.readouterr().out
    assert out.count("0 of 4 jobs already computed") == 3
    assert _files(tmp / "here") == _files(tmp / "dask") == _files(tmp / "pool")


def test_a_killed_worker_is_retried(tmp_path):
    with executor.executor(jobs=2) as ex:
        got = executor.run(_die_once, [(str(tmp_path / "flag"), i) for i in range(4)], ex, desc="test")
    assert got == [0, 1, 4, 9]


def _die_once(task):
    import os
    from pathlib import Path
    flag, i = task
    if i == 2 and not Path(flag).exists():
        Path(flag).write_text("died")
        os._exit(1)                    # the worker process dies without a word
    return i * i


@pytest.mark.parametrize("argv,msg", [
    (["--scheduler", "somewhere"], "give 'local'"),
    (["--scheduler", "local", "--cluster", "slurm"], "give one of them"),
    (["--jobs", "0"], "give 1 or more"),
])
def test_bad_executor_options_are_named(argv, msg, capsys):
    assert main(["sweep", "schedule", "--smoke", *argv]) == 2
    assert msg in capsys.readouterr().err


def test_a_missing_jobqueue_is_named(monkeypatch, capsys):
    import builtins
    real = builtins.__import__

    def no_jobqueue(name, *a, **k):
        if name == "dask_jobqueue":
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_jobqueue)
    assert main(["sweep", "schedule", "--smoke", "--cluster", "slurm", "--jobs", "2"]) == 2
    assert "dask-jobqueue" in capsys.readouterr().err


def _marked(marker: str) -> list[int]:
    """The processes whose environment holds ``marker`` (a sweep and the workers it spawned)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker.encode() in (p / "environ").read_bytes():
                    out.append(int(p.name))
            except OSError:
                pass
    return out


def test_a_terminated_sweep_ends_its_worker_processes(tmp_path):
    """SIGTERM to `sweep --jobs 2` stops it like Ctrl-C (exit 130, one line) and ends its workers, which would
    otherwise go on computing for nobody (seen: two orphaned workers of a killed sweep at full CPU)."""
    import signal
    import subprocess
    import sys
    import time
    import uuid
    marker = f"MOT_TEST_MARKER={uuid.uuid4().hex}"
    env = {**os.environ, "MOT_TEST_MARKER": marker.split("=")[1], "MOT_PROGRESS": "0",
           "MOT_CACHE": str(tmp_path / "cache")}
    p = subprocess.Popen([sys.executable, "-m", "mot_lib", "sweep", "schedule", "--fresh", "--jobs", "2",
                          "--out", str(tmp_path / "out")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while len(_marked(marker)) < 3 and time.time() - t0 < 60:     # the sweep and its two workers
        time.sleep(0.2)
    assert len(_marked(marker)) >= 3, "the sweep did not start its workers"
    time.sleep(4.0)          # the workers are inside their first full-size job (tens of seconds each)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted:")
    t0 = time.time()
    while _marked(marker) and time.time() - t0 < 15:
        time.sleep(0.2)
    assert _marked(marker) == [], "worker processes outlived the terminated sweep"


def test_chapter_jobs_reads_its_variable_and_names_it_when_wrong(monkeypatch):
    """``chapter_jobs``: MOT_CHAPTER_JOBS when set, else the cores up to 2; a bad value is refused, naming it."""
    from mot_lib.experiments.executor import chapter_jobs
    monkeypatch.setenv("MOT_CHAPTER_JOBS", "3")
    assert chapter_jobs() == 3
    monkeypatch.delenv("MOT_CHAPTER_JOBS")
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert chapter_jobs() == 2
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert chapter_jobs() == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("MOT_CHAPTER_JOBS", bad)
        with pytest.raises(ValueError, match=f"MOT_CHAPTER_JOBS={bad!r}"):
            chapter_jobs()
