"""Helpers of the power-cut harnesses (powercut-fs-workload.py,
powercut-sqlite.py): what makes their own files durable on the device
under test."""

import os


def fsync_path(path):
    """fsync a file or a directory by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_dir(d):
    """Create directory d (if it is not there) and make its entry and
    itself durable: fsync it and its parent."""
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    fsync_path(d)
    fsync_path(os.path.dirname(d))
