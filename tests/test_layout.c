// tests/test_layout.c: the README's "Where things are" list matches the tree. Every name the
// list gives exists, and every top-level file and folder that git tracks is named in it.
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

// A word of the list's left column: a folder ("tests/"), a file with an extension or a path.
static int is_name(const char *w) {
    size_t n = strlen(w);
    if (n == 0) return 0;
    if (strcmp(w, "Makefile") == 0 || w[n - 1] == '/') return 1;
    const char *dot = strrchr(w, '.');
    return dot && dot > w && islower((unsigned char)dot[1]) && !strchr(w, ',');
}

// Collects the names at the start of each line of the list's code block: names two spaces
// apart, then three or more spaces and the description ("run.c  export.c     main() of ..."
// gives run.c and export.c); a line that starts with spaces continues a description.
static int list_names(char names[][64], int max) {
    char *readme = read_all("README.md", NULL);
    cr_assert(readme, "README.md not readable from the repository root");
    char *s = strstr(readme, "\n## Where things are\n");
    cr_assert(s, "README.md has no \"Where things are\" section");
    s = strstr(s, "\n```\n");
    cr_assert(s, "the section has no code block");
    s += 5;
    char *end = strstr(s, "\n```");
    cr_assert(end, "the code block is not closed");
    *end = '\0';
    int n = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        for (char *w = line; *w && *w != ' ';) {
            size_t len = strcspn(w, " ");
            char word[64];
            cr_assert(len < sizeof word);
            memcpy(word, w, len), word[len] = '\0';
            if (!is_name(word)) break;
            cr_assert(n < max);
            strcpy(names[n++], word);
            w += len;
            size_t gap = strspn(w, " ");
            if (gap >= 3) break;  // the description starts after a wider gap
            w += gap;
        }
    }
    free(readme);
    return n;
}

Test(layout, readme_where_things_are_matches_the_tree) {
    static char names[64][64];
    int n = list_names(names, 64);
    cr_assert_geq(n, 10, "only %d names found in the list", n);
    for (int i = 0; i < n; i++)
        cr_assert(file_exists(names[i]), "README lists %s, which does not exist", names[i]);

    // top-level entries that git tracks (a fresh clone's tree), hidden ones aside
    char *out, *err;
    int rc = run_cmd(&out, &err, "git ls-files | sed 's,/.*,/,' | sort -u | grep -v '^\\.'");
    cr_assert_eq(rc, 0, "git ls-files: %s", err);
    int entries = 0;
    for (char *e = strtok(out, "\n"); e; e = strtok(NULL, "\n"), entries++) {
        int found = 0;
        for (int i = 0; i < n && !found; i++) found = strcmp(names[i], e) == 0;
        cr_assert(found, "%s is in the tree but not in the README's \"Where things are\"", e);
    }
    cr_assert_geq(entries, 10);
    free(out), free(err);
}
