"""The arrivals look of the scheduler runs when nudged, not only at its interval."""

from __future__ import annotations

import threading

from gateway.service.scheduler import _Nudged


def test_a_nudge_runs_the_job_without_waiting_for_the_interval() -> None:
    ran = threading.Event()
    loop = _Nudged(ran.set, longest=3600.0, shortest=0.0, name="test-nudged")
    loop.start()
    try:
        assert not ran.wait(0.3)  # an hour's interval: nothing yet
        loop.nudge()
        assert ran.wait(10)
    finally:
        loop.stop()
    assert not loop.is_alive()


def test_nudges_during_a_run_bring_one_more_run_not_one_each() -> None:
    inside, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            inside.set()
            assert release.wait(10)

    loop = _Nudged(job, longest=3600.0, shortest=0.0, name="test-nudged")
    loop.start()
    try:
        loop.nudge()
        assert inside.wait(10)
        for _ in range(50):
            loop.nudge()
        release.set()
        for _ in range(100):  # bounded: the second run follows at once
            if len(runs) >= 2:
                break
            threading.Event().wait(0.05)
        threading.Event().wait(0.3)
    finally:
        loop.stop()
    assert len(runs) == 2


def test_stop_ends_the_loop_while_it_waits() -> None:
    loop = _Nudged(lambda: None, longest=3600.0, shortest=3600.0, name="test-nudged")
    loop.start()
    loop.nudge()  # the second look would wait an hour for `shortest`
    loop.nudge()
    loop.stop()
    assert not loop.is_alive()
