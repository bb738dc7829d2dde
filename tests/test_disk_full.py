"""The data directory's disk full (SQLite there): 451 meanwhile, everything back after.

The data directory is a tmpfs of 8 MB, filled up by a file of the test's until writing
fails with ENOSPC, as a log file or a backup filling the disk would. Needs the right to
mount (root, as on the development and CI machines); elsewhere it says so and skips.
"""

from __future__ import annotations

import contextlib
import errno
import os
import smtplib
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from relay.models import State
from tests.conftest import message
from tests.test_relay_flow import Gateway


@pytest.fixture
def small_disk(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        # As root (CI, the development machines) a failing mount is a failure; only a
        # developer running the suite as an ordinary user is excused.
        if os.geteuid() == 0:
            pytest.fail(f"cannot mount a small tmpfs as root: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): "
                    "the disk-full test needs root")
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the disk is full; the file is returned to free the space."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    # The last bytes too, so that not even a small page fits.
    with open(filler, "ab", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 512)
    return filler


def big_mail(number: int) -> bytes:
    # 300 KB: more than any page SQLite could still have spare in its files.
    return message(body=(b"x" * 76 + b"\r\n") * 3900, extra=f"X-Number: {number}\r\n".encode())


def test_disk_full_answers_451_and_recovers_when_space_returns(tmp_path, small_disk):
    gw = Gateway(tmp_path, f"sqlite:///{small_disk / 'sealgate.db'}")
    try:
        gw.send_out(big_mail(1))  # accepted before the disk fills: must not be lost
        filler = fill(small_disk)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            gw.send_out(big_mail(2))
        assert refused.value.smtp_code == 451
        assert b"try again later" in refused.value.smtp_error
        # The worker cannot write either; it must not give up on the message it holds.
        with contextlib.suppress(OperationalError):
            gw.work()
        assert State.PARKED not in {row.state for row in gw.rows()}

        os.unlink(filler)  # space returns
        gw.send_out(big_mail(2))  # the client's retry is accepted now
        gw.now += gw.worker.lease + timedelta(seconds=1)  # a claim that failed runs out
        gw.work()
        delivered = sorted(m.data.split(b"X-Number: ", 1)[1][:1] for m in gw.internet.messages)
        assert delivered == [b"1", b"2"]
        assert {row.state for row in gw.rows()} <= {State.SPLIT, State.DELIVERED}
    finally:
        gw.close()
