#!/usr/bin/env bash
# tests/asan_check.sh LOG: make test-asan's verdict on the suite's output. Fails on any
# AddressSanitizer, UndefinedBehaviorSanitizer or LeakSanitizer report, except a leak whose
# allocation stack lies wholly in libcriterion: Criterion's own runner leaks 48 bytes now and
# then at its exit (an allocation in libcriterion.so, nothing of ours on the stack), which is
# listed and let pass. A leak in any test process has our code on its stack and fails.
set -euo pipefail
awk '
    function end_entry() { if (in_entry && !criterion_only) bad++; if (in_entry && criterion_only) ours++; in_entry = 0 }
    /(Direct|Indirect) leak of/ { end_entry(); in_entry = 1; criterion_only = 1; next }
    in_entry && /^ *#[0-9]+ / {
        if ($1 != "#0" && $0 !~ /libcriterion\.so/) criterion_only = 0
        next
    }
    in_entry && /^ *$/ { end_entry(); next }
    /runtime error|ERROR: AddressSanitizer|WARNING: .*Sanitizer/ { end_entry(); bad++; print "asan_check: " $0 }
    END {
        end_entry()
        if (ours) printf "asan_check: %d leak(s) in Criterion'\''s runner alone (libcriterion), let pass\n", ours
        if (bad) { printf "asan_check: %d sanitizer report(s) in our code\n", bad; exit 1 }
    }
' "$1"
