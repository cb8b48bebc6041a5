#!/bin/bash
# test-crash-check-sqlite: test-crash-check-fs with SQLite commits
# (synchronous=FULL) instead of fsynced files: every explored crash state
# passes PRAGMA integrity_check and holds every commit acknowledged
# before its epoch.
KIND=sqlite . "$(dirname "$0")/test-crash-check-fs.sh"
