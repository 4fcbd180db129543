// tests/test_deps.c: scripts/deps.sh, the check that `make test` runs before building.
//
// Each test builds a sandbox: a copy of the Makefile and scripts/, and a PATH made of links to
// every program on this machine except valgrind, sudo and apt-get, so valgrind is "missing".
// Stand-ins for apt-get (which logs its arguments and "installs" valgrind as a stub) and sudo
// (which runs its command) let the install paths run without touching the system. Non-root
// cases run as uid 65534 (setpriv) when the suite runs as root, and as root ones in a user
// namespace (unshare -r) when it does not.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static char box[512];  // the sandbox: bin/ (PATH), repo/, apt.log

// Creates the sandbox tmp_file(name); with_sudo adds a sudo that works without a password.
static void make_box(const char *name, int with_sudo) {
    snprintf(box, sizeof box, "%s", tmp_file(name));
    char *err = NULL;
    int rc = run_cmd(NULL, &err,
        "(set -e; B=%s; rm -rf $B; mkdir -p $B/bin $B/repo/scripts; "
        "cp Makefile $B/repo/ && cp scripts/deps.sh $B/repo/scripts/; "
        "for d in /usr/local/bin /usr/bin /bin /usr/sbin /sbin; do [ -d $d ] || continue; "
        "  for f in $d/*; do n=${f##*/}; case $n in valgrind|sudo|apt-get) continue;; esac; "
        "    if [ -e $f ] && [ ! -d $f ] && [ ! -L $B/bin/$n ]; then ln -s $f $B/bin/$n; fi; done; done; "
        "printf '#!/bin/sh\\necho \"$*\" >> %s/apt.log\\ncase \"$*\" in *install*valgrind*) "
        "printf \"#!/bin/sh\\\\nexit 0\\\\n\" > %s/bin/valgrind; chmod +x %s/bin/valgrind;; esac\\n' "
        "  > $B/bin/apt-get; "
        "if [ %d = 1 ]; then printf '#!/bin/sh\\n[ \"$1\" = -n ] && shift\\nexec \"$@\"\\n' "
        "  > $B/bin/sudo; fi; "
        "chmod a+x $B/bin/apt-get; [ ! -e $B/bin/sudo ] || chmod a+x $B/bin/sudo; "
        "chmod -R a+rwX $B; chmod a+x %s)",
        box, box, box, box, with_sudo, tmp_dir());
    cr_assert_eq(rc, 0, "sandbox: %s", err);
    free(err);
}

// Runs a command in the sandbox's repo with only its PATH, as a non-root user or as root.
static int in_box(char **out, char **err, int as_root, const char *cmd) {
    const char *who = "";
    if (as_root && geteuid() != 0) who = "unshare -r";
    if (!as_root && geteuid() == 0) who = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    return run_cmd(out, err, "cd %s/repo && %s env -i PATH=%s/bin HOME=/nonexistent %s", box, who,
                   box, cmd);
}

static char *apt_log(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/apt.log", box);
    char *log = read_all(p, NULL);
    return log ? log : strdup("");
}

Test(deps, nonroot_without_sudo_prints_the_apt_line_and_make_test_exits_2) {
    make_box("deps-nosudo", 0);
    char *out, *err;
    int rc = in_box(&out, &err, 0, "make test");
    cr_assert_eq(rc, 2, "make test exits 2: rc %d, stdout %s, stderr %s", rc, out, err);
    cr_assert(strstr(err, "missing valgrind"), "names what is missing: %s", err);
    cr_assert(strstr(err, "\n    apt-get install -y valgrind\n"), "the exact line: %s", err);
    char build[600];
    snprintf(build, sizeof build, "%s/repo/build", box);
    cr_assert(!file_exists(build), "nothing was built before the check failed");
    char *log = apt_log();
    cr_assert_str_empty(log, "apt-get was not run: %s", log);
    free(out), free(err), free(log);
}

Test(deps, as_root_installs_with_apt_get_saying_so_on_one_line) {
    make_box("deps-root", 0);
    char *out, *err;
    int rc = in_box(&out, &err, 1, "bash scripts/deps.sh test");
    cr_assert_eq(rc, 0, "stdout %s, stderr %s", out, err);
    cr_assert_str_eq(out, "deps.sh: installing valgrind (apt-get)\n");
    cr_assert_str_empty(err);
    char *log = apt_log();
    cr_assert_str_eq(log, "update -qq\ninstall -y -qq valgrind\n");
    free(out), free(err), free(log);
    // the check now passes, and installs nothing more
    rc = in_box(&out, &err, 1, "bash scripts/deps.sh test");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_empty(out);
    free(out), free(err);
}

Test(deps, nonroot_with_passwordless_sudo_installs_through_it) {
    make_box("deps-sudo", 1);
    char *out, *err;
    int rc = in_box(&out, &err, 0, "bash scripts/deps.sh test");
    cr_assert_eq(rc, 0, "stdout %s, stderr %s", out, err);
    cr_assert_str_eq(out, "deps.sh: installing valgrind (apt-get via sudo)\n");
    char *log = apt_log();
    cr_assert_str_eq(log, "update -qq\ninstall -y -qq valgrind\n");
    free(out), free(err), free(log);
}

Test(deps, unknown_group_is_refused) {
    char *out, *err;
    int rc = run_cmd(&out, &err, "bash scripts/deps.sh tset");
    cr_assert_eq(rc, 2);
    cr_assert_str_eq(err, "deps.sh: unknown group 'tset' (build, test, fuzz or arm)\n");
    free(out), free(err);
}
