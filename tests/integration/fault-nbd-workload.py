#!/usr/bin/python3
# Workloads of test-fault-nbd.sh, run by "rumpblk serve --run".
#
#   fault-nbd-workload.py det URI NCONN
#       NCONN libnbd handles, one per thread, each really used: the 4 KiB
#       blocks of the first MiB are dealt to the handles round-robin and
#       each handle goes through its blocks in a shuffled order, writing
#       every block twice (generations 0 and 1) and reading it back.
#       Every request must succeed (the rules used do not fail requests).
#   fault-nbd-workload.py ctl URI RUMPBLK CTLSOCK
#       one handle reads while `rumpblk ctl` arms a read-error rule and
#       disarms it again: no errors before, errors while armed, none
#       after; the socket's stats agree with what the client saw.
import json
import random
import subprocess
import sys
import threading

import nbd

BLK = 4096
NBLK = (1 << 20) // BLK


def data(block, gen):
    return bytes((block * 31 + gen * 101 + i) & 0xff for i in range(BLK))


def det(uri, nconn):
    handles = []
    for _ in range(nconn):
        h = nbd.NBD()
        h.connect_uri(uri)
        handles.append(h)
    done = [0] * nconn
    errors = []

    def work(t):
        blocks = list(range(t, NBLK, nconn))
        random.Random(1000 + 7 * t + nconn).shuffle(blocks)
        h = handles[t]
        try:
            for b in blocks:
                for gen in (0, 1):
                    h.pwrite(data(b, gen), b * BLK)
                    done[t] += 1
                h.pread(BLK, b * BLK)
                done[t] += 1
        except nbd.Error as e:
            errors.append("handle %d: %s" % (t, e))

    threads = [threading.Thread(target=work, args=(t,))
               for t in range(nconn)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for h in handles:
        h.shutdown()
    if errors:
        sys.exit("FAIL: " + "; ".join(errors))
    # Every connection carried its share.
    if min(done) == 0:
        sys.exit("FAIL: a connection did no I/O: %s" % done)


def ctl(rumpblk, sock, *cmd):
    p = subprocess.run([rumpblk, "ctl", sock] + list(cmd),
                       capture_output=True, text=True, timeout=60)
    answer = json.loads(p.stdout)
    if p.returncode != 0 or not answer["ok"]:
        sys.exit("FAIL: ctl %s: rc %d, %s %s" % (" ".join(cmd),
                 p.returncode, p.stdout, p.stderr))
    return answer


def read_phase(h, first):
    """200 reads of distinct sectors; the number that failed."""
    failed = 0
    for i in range(first, first + 200):
        try:
            h.pread(512, (i % 2048) * 512)
        except nbd.Error as e:
            if e.errnum != 5:       # EIO
                sys.exit("FAIL: read %d: %s" % (i, e))
            failed += 1
    return failed


def control(uri, rumpblk, sock):
    h = nbd.NBD()
    h.connect_uri(uri)
    before = read_phase(h, 0)
    added = ctl(rumpblk, sock, "fault", "add",
                "error,op=read,p=0.5,seed=11,id=live")
    if added["id"] != "live":
        sys.exit("FAIL: fault add answered %s" % added)
    during = read_phase(h, 200)
    listed = ctl(rumpblk, sock, "fault", "list")
    firings = [r["firings"] for r in listed["rules"] if r["id"] == "live"]
    ctl(rumpblk, sock, "fault", "del", "live")
    after = read_phase(h, 400)
    stats = ctl(rumpblk, sock, "stats")["stats"]
    h.shutdown()
    print("errors before/during/after: %d/%d/%d; firings %s; stats %s" %
          (before, during, after, firings, stats["faults"]))
    if before != 0 or after != 0:
        sys.exit("FAIL: errors outside the armed window")
    if during == 0:
        sys.exit("FAIL: no error while the rule was armed")
    if firings != [during] or stats["faults"]["by_class"]["error"] != during:
        sys.exit("FAIL: counters disagree with the client")
    # The socket's counters are serve --stats' (cli/stats-json.c).
    if (stats["faults_class"]["error"] != during or
            stats["io_errors"] < during or
            stats["io_total"] < 600 or "lat_read" not in stats):
        sys.exit("FAIL: stats counters disagree with the client: %s" % stats)


if __name__ == "__main__":
    if sys.argv[1] == "det":
        det(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "ctl":
        control(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: fault-nbd-workload.py det|ctl ...")
