#!/usr/bin/python3
"""stats-watch-load.py URI STOPFILE: test-stats-watch's client.

Reads and writes 4 KiB blocks through libnbd, a write and a flush after
every fourth read, until STOPFILE exists, for at most 120 s and 20000
requests (a bound, not a timing: the test stops it much sooner).
"""
import os
import sys
import time

import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
buf = b"w" * 4096
deadline = time.monotonic() + 120
for i in range(20000):
    if os.path.exists(sys.argv[2]) or time.monotonic() > deadline:
        break
    h.pread(4096, (i % 64) * 4096)
    if i % 4 == 3:
        h.pwrite(buf, (i % 64) * 4096)
        h.flush()
h.shutdown()
