#!/usr/bin/env bash
# scripts/deps.sh: the one place that knows which packages the build, the tests and the
# fuzzers need. `make test` and `make fuzz` run it before building anything; .ci/run runs it
# with every group. `make` and `make run` never do: they need only a C compiler and make.
#
#   scripts/deps.sh [build] [test] [fuzz] [arm]     (no argument: build, test and fuzz)
#
# arm is what make test-arm needs: the ARM64 cross compiler (its libc included) and qemu's
# user-mode emulator, which runs the static arm64 binaries.
#
# Each package is checked by what the build actually uses (a header that compiles and a
# library that links, a program on PATH), not by asking dpkg, so a package installed any other
# way counts. What is missing is installed with apt-get when running as root, or through
# `sudo -n` when that needs no password, with one line saying what. Otherwise the script
# prints the apt-get line that would fix it and exits with status 2. The package names are
# Debian's; README.md ("Testing") names the Fedora and Homebrew equivalents.
set -uo pipefail

scratch=$(mktemp -d "${TMPDIR:-/tmp}/sl-deps.XXXXXX") || exit 2
trap 'rm -rf "$scratch"' EXIT
CC=${CC:-cc}

# compiles: does this C program compile and link with these flags?
compiles() {  # compiler, source, flags...
    local cc=$1 src=$2; shift 2
    printf '%s\n' "$src" > "$scratch/t.c" && "$cc" "$scratch/t.c" -o "$scratch/t" "$@" >/dev/null 2>&1
}
have() { command -v "$1" >/dev/null 2>&1; }

# check GROUP: appends the Debian package of each missing dependency to $missing
missing=()
check() {
    case $1 in
    build)
        if ! have "$CC"; then missing+=(gcc)
        elif ! compiles "$CC" $'#include <stdio.h>\n#include <pthread.h>\nint main(void) { return puts("") < 0; }' \
                -lm -lpthread; then missing+=(libc6-dev)  # a compiler without libc's headers
        fi
        have make || missing+=(make)
        ;;
    test)
        # the Criterion suites (Criterion supplies main) and the attention map test's libpng
        have "$CC" && { compiles "$CC" $'#include <criterion/criterion.h>\nTest(deps, ok) {}' \
            -lcriterion || missing+=(libcriterion-dev); }
        have "$CC" && { compiles "$CC" \
            $'#include <png.h>\nint main(void) { return png_access_version_number() == 0; }' \
            -lpng || missing+=(libpng-dev); }
        # make test-isa: the AVX-512 kernels emulated on machines without AVX-512
        have "$CC" && { compiles "$CC" $'#include <simde/x86/avx512.h>\nint main(void) { return 0; }' \
            || missing+=(libsimde-dev); }
        have valgrind || missing+=(valgrind)   # make test-valgrind
        have chromium || missing+=(chromium)   # renders the --attn-map page headless
        have curl || missing+=(curl)           # the server suite's client (tests/test_server.c)
        ;;
    fuzz)
        # libFuzzer comes with clang; Debian ships its runtime separately
        if ! have clang; then
            missing+=(clang libclang-rt-14-dev)
        elif ! compiles clang $'#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; return (int)n & 0; }' \
                -fsanitize=fuzzer,address,undefined; then
            missing+=(libclang-rt-14-dev)
        fi
        ;;
    arm)
        # make test-arm: cross-compiles build/arm64 (static) and runs it under qemu-aarch64
        if ! have aarch64-linux-gnu-gcc; then missing+=(gcc-aarch64-linux-gnu)
        elif ! compiles aarch64-linux-gnu-gcc $'#include <stdio.h>\n#include <pthread.h>\nint main(void) { return puts("") < 0; }' \
                -static -lm -lpthread; then missing+=(libc6-dev-arm64-cross)
        fi
        have qemu-aarch64 || missing+=(qemu-user)
        ;;
    *)
        echo "deps.sh: unknown group '$1' (build, test, fuzz or arm)" >&2
        exit 2
        ;;
    esac
}

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(build test fuzz)
for g in "${groups[@]}"; do check "$g"; done
[ ${#missing[@]} -eq 0 ] && exit 0

pkgs=
for p in "${missing[@]}"; do case " $pkgs " in *" $p "*) ;; *) pkgs=${pkgs:+$pkgs }$p ;; esac; done

sudo=
if [ "$(id -u)" -ne 0 ]; then
    if have sudo && sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
fi
if [ "$sudo" = none ] || ! have apt-get; then
    echo "deps.sh: missing ${pkgs}. Install them (as root) with:" >&2
    echo "    apt-get install -y ${pkgs}" >&2
    have apt-get || echo "(Debian's package names; README.md, \"Testing\", names Fedora's and Homebrew's)" >&2
    exit 2
fi

echo "deps.sh: installing ${pkgs} (apt-get${sudo:+ via sudo})"
log=$scratch/apt.log
export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq ${pkgs}; } > "$log" 2>&1; then
    tail -20 "$log" >&2
    echo "deps.sh: apt-get install ${pkgs} failed (its last lines above)" >&2
    exit 2
fi

# what apt-get installed must now pass the same checks
missing=()
for g in "${groups[@]}"; do check "$g"; done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps.sh: still missing after apt-get: ${missing[*]}" >&2
    exit 2
fi
