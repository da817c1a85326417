"""The output folder runs out of space while a worker writes a clean instance.

pydicom re-raises a failed write as a new OSError that names the tag and has no errno. That
must still count as the disk's trouble: the error is raised (the round is tried again once
space returns) and the instance is not held in the quarantine as if its data could not be
encoded. Seen in CI as one acknowledged instance missing at the archive. Every way of writing
the output is tried: the whole instance through pydicom, and a large instance's pixel data
copied after its header.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from service_harness import small_tmpfs

import gateway.pipeline.pixel_tail as pixel_tail
from gateway.deid.profile import default_profile
from gateway.offline import EngineSettings
from gateway.pipeline.files import DeidResult, deidentify_file, init_worker
from gateway.pipeline.instance import disk_error, is_environment_error
from gateway.tools.synthetic import make_ct_study, random_patient

SECRET = b"output-disk-full-test-secret-012"


@pytest.fixture
def full_output(tmp_path: Path) -> Path:
    # 64 KiB: a 256 x 256 CT slice (128 KiB of pixels) cannot fit.
    with small_tmpfs(tmp_path / "out", "64k") as mounted:
        yield mounted


@pytest.mark.parametrize("large", [False, True], ids=["whole", "pixel-tail"])
def test_a_full_output_folder_is_raised_not_quarantined(
    tmp_path: Path, full_output: Path, large: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_ct_study(
        tmp_path / "in", instances=1, rows=256, columns=256, patient=random_patient(5), seed=5
    )[0]
    storage = tmp_path / "storage"
    init_worker(EngineSettings(default_profile(), SECRET, "SITE", storage))
    if large:
        monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 10)

    def target(result: DeidResult) -> Path:
        return full_output / f"{result.sop_instance_uid}.dcm"

    with pytest.raises(OSError) as raised:
        deidentify_file(source, target, "gateway", tmp_path / "claims")
    assert raised.value.errno == errno.ENOSPC, repr(raised.value)
    assert [p.name for p in full_output.rglob("*")] == []
    held = storage / "quarantine"
    assert not held.exists() or list(held.iterdir()) == []
    assert source.exists()


def test_an_errno_wrapped_by_a_library_is_the_disks() -> None:
    """What pydicom raises on a full disk (`tag_in_exception`): a new OSError, errno lost."""
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise OSError(f"With tag (7FE0,0010) got exception: {exc}") from exc
    except OSError as wrapped:
        assert wrapped.errno is None
        assert is_environment_error(wrapped)
        found = disk_error(wrapped)
        assert found is not None and found.errno == errno.ENOSPC
    # A library's own complaint about data, with no errno anywhere, stays the instance's.
    assert not is_environment_error(OSError("cannot identify image file"))
    assert not is_environment_error(ValueError("bad value"))
