#!/usr/bin/python3
"""powercut-sqlite: does SQLite keep every commit it acknowledged across a
power cut?  The harness of test-powercut-sqlite and bench/powercut-fs.sh
(issue 11), with Python's sqlite3 module.

  run DB MANIFEST SYNC SEED CUT_AFTER CUTCMD...
      Create the database DB (its directory is created and fsynced) in
      journal_mode=WAL, with one table, under synchronous=FULL, with
      wal_autocheckpoint=64 pages (a checkpoint every few dozen commits,
      so that cuts also meet checkpoints and WAL restarts); then set
      synchronous=SYNC (FULL or OFF) and run transactions, each inserting
      row N (N = 1, 2, ...) with a payload drawn from a generator seeded
      by (SEED, N).  After COMMIT returned, "N PHASE" is appended to
      MANIFEST (outside the device under test) and the manifest fsynced.
      PHASE says where the commit stands against the cut: once commit
      CUT_AFTER has been recorded, a thread runs CUTCMD (e.g. "rumpblk
      ctl CTL power-cut model=subset seed=7") while transactions go on:
          pre     acknowledged before CUTCMD started
          racing  acknowledged while CUTCMD ran
          post    acknowledged after CUTCMD returned
      The run ends at the first error (expected once the power is gone),
      or 20 transactions after the cut returned, or after 60 s.  Prints
      one JSON line (counts, the error, CUTCMD's output); exit 0 if the
      cut was made, 2 if not.

  verify DB MANIFEST SEED
      Open DB (SQLite recovers the WAL) and check it: PRAGMA
      integrity_check, then every row against the generator and the
      manifest.  Prints one JSON line:
          integrity      "ok", or what integrity_check or opening said
          acknowledged   commits of the manifest, by phase
          lost           acknowledged commits missing, by phase
          corrupt        rows present with the wrong payload
          rows, unacknowledged
                         rows in the table, and those of them absent
                         from the manifest (their COMMIT failed or was
                         cut short: they may or may not persist)
          sync           SYNC of the run
      Exit 0 if the database kept its promises: integrity ok, nothing
      corrupt, and no acknowledged commit lost; for SYNC=FULL, whatever
      the phase (COMMIT returns only after fsync returned, and no fsync
      can succeed once the device is gone), for SYNC=OFF, of the pre
      commits only (the racing and post ones are acknowledged by a
      machine that was, or was being, cut off).  Exit 1 otherwise: for
      SYNC=OFF that is the expected finding, acknowledged commits lost.

With a write log (issue 12, test-crash-check-sqlite), two variables
tie the manifest to the log's entries:
  POWERCUT_MARK   (run) a command: after commit N is recorded in the
                  manifest, "$POWERCUT_MARK c-N" runs (e.g. "rumpblk ctl
                  CTL mark"), so the log has a mark after every commit
  POWERCUT_MARKS  (verify) "rumpblk log info --json" of that log; with
                  $epoch_end (crash-check sets it), a commit whose mark
                  is at or past that entry was not yet acknowledged when
                  the state's epoch ended, and is not required: counted
                  as "later", not lost

Why WAL: in journal_mode=DELETE a transaction commits by unlinking its
rollback journal, and with synchronous=FULL SQLite does not fsync the
directory after that unlink (only synchronous=EXTRA does), so a correct
device may legitimately lose the last acknowledged commit to a power cut:
the test would blame the device for SQLite's documented choice.  In WAL
mode with synchronous=FULL each COMMIT ends with an fsync of the WAL
(whose directory entry SQLite fsyncs when it creates the file), so an
acknowledged commit is a durable one, and WAL recovery (salted,
checksummed frames) must cope with torn and reordered writes.
"""
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time

from powercut_util import durable_dir, fsync_path

TIME_LIMIT = 60.0
AFTER_CUT = 20
MAX_COMMITS = 100000


def payload(seed, n):
    rng = random.Random(f"powercut-sqlite/{seed}/{n}")
    return rng.randbytes(rng.randrange(200, 6001))


def run(db, manifest, sync, seed, cut_after, cutcmd):
    if sync not in ("FULL", "OFF"):
        print(f"powercut-sqlite: SYNC is FULL or OFF, not {sync}",
              file=sys.stderr)
        return 2
    d = os.path.dirname(os.path.abspath(db))
    durable_dir(d)
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        print(f"powercut-sqlite: journal_mode is {mode}, not wal",
              file=sys.stderr)
        return 2
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA wal_autocheckpoint=64")
    con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, "
                "payload BLOB NOT NULL)")
    fsync_path(d)
    con.execute(f"PRAGMA synchronous={sync}")

    cut = {"started": threading.Event(), "done": threading.Event(),
           "out": None, "status": None}

    def cutter():
        try:
            p = subprocess.run(cutcmd, capture_output=True, text=True,
                               timeout=60)
            cut["out"] = (p.stdout + p.stderr).strip()
            cut["status"] = p.returncode
        except (OSError, subprocess.TimeoutExpired) as e:
            cut["out"] = str(e)
            cut["status"] = -1
        cut["done"].set()

    markcmd = os.environ.get("POWERCUT_MARK", "").split()
    thread = threading.Thread(target=cutter, daemon=True)
    counts = {"pre": 0, "racing": 0, "post": 0}
    error = None
    after = 0
    deadline = time.monotonic() + TIME_LIMIT
    with open(manifest, "a") as man:
        man.write(f"# sync={sync} seed={seed} cut_after={cut_after}\n")
        man.flush()
        os.fsync(man.fileno())
        for n in range(1, MAX_COMMITS + 1):
            if time.monotonic() > deadline:
                error = f"time limit at commit {n}"
                break
            if cut["done"].is_set():
                after += 1
                if after > AFTER_CUT:
                    break
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("INSERT INTO t (n, payload) VALUES (?, ?)",
                            (n, payload(seed, n)))
                con.execute("COMMIT")
            except sqlite3.Error as e:
                error = f"commit {n}: {e}"
                break
            phase = ("post" if cut["done"].is_set() else
                     "racing" if cut["started"].is_set() else "pre")
            counts[phase] += 1
            man.write(f"{n} {phase}\n")
            man.flush()
            os.fsync(man.fileno())
            if markcmd:
                subprocess.run(markcmd + [f"c-{n}"], check=True,
                               stdout=subprocess.DEVNULL, timeout=60)
            if n == cut_after:
                cut["started"].set()
                thread.start()
    if cut["started"].is_set():
        thread.join(90)
    try:
        con.close()
    except sqlite3.Error:
        pass
    made = cut["status"] == 0
    print(json.dumps({"sync": sync, "acknowledged": counts,
                      "error": error, "cut": cut["out"]}))
    if not made:
        print(f"powercut-sqlite: the cut was not made: {cut['out']}",
              file=sys.stderr)
    return 0 if made else 2


def verify(db, manifest, seed):
    acked = {}
    sync = None
    with open(manifest) as man:
        for line in man:
            if line.startswith("#"):
                sync = line.split()[1].split("=")[1]
                continue
            n, phase = line.split()
            acked[int(n)] = phase
    phases = ("pre", "racing", "post")
    report = {"sync": sync,
              "acknowledged": {p: sum(1 for v in acked.values() if v == p)
                               for p in phases},
              "integrity": None, "lost": {p: 0 for p in phases},
              "corrupt": 0, "rows": 0, "unacknowledged": 0}
    rows = {}
    later = set()
    if os.environ.get("POWERCUT_MARKS") and os.environ.get("epoch_end"):
        with open(os.environ["POWERCUT_MARKS"]) as f:
            at = {m["name"]: m["entry"] for m in json.load(f)["marks"]}
        end = int(os.environ["epoch_end"])
        later = {n for n in acked if at.get(f"c-{n}", end) >= end}
        report["later"] = len(later)
    if not os.path.exists(db):
        report["integrity"] = "the database file is missing"
    else:
        try:
            con = sqlite3.connect(db, isolation_level=None, timeout=30)
            res = [r[0] for r in con.execute("PRAGMA integrity_check")]
            report["integrity"] = "ok" if res == ["ok"] else \
                "; ".join(res[:5])
            try:
                for n, p in con.execute("SELECT n, payload FROM t"):
                    rows[n] = p
            except sqlite3.OperationalError as e:
                # A crash state from before the table was made durable
                # (write log only): consistent while nothing is owed.
                if not (str(e) == "no such table: t" and
                        os.environ.get("POWERCUT_MARKS") and
                        set(acked) <= later):
                    raise
            con.close()
        except sqlite3.Error as e:
            if report["integrity"] in (None, "ok"):
                report["integrity"] = f"error: {e}"
    report["rows"] = len(rows)
    for n, phase in acked.items():
        if n not in rows and n not in later:
            report["lost"][phase] += 1
    for n, p in rows.items():
        if p != payload(seed, n):
            report["corrupt"] += 1
        if n not in acked or n in later:
            report["unacknowledged"] += 1
    print(json.dumps(report))
    counted = phases if sync == "FULL" else ("pre",)
    kept = (report["integrity"] == "ok" and report["corrupt"] == 0 and
            all(report["lost"][p] == 0 for p in counted))
    return 0 if kept else 1


def main(argv):
    if len(argv) >= 8 and argv[1] == "run":
        return run(argv[2], argv[3], argv[4], int(argv[5]), int(argv[6]),
                   argv[7:])
    if len(argv) == 5 and argv[1] == "verify":
        return verify(argv[2], argv[3], int(argv[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
