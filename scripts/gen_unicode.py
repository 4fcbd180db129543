"""scripts/gen_unicode.py: writes tokenizer/unicode_data.h, the character classes that the
pre-tokenizers' regexes use and the data of the NFC normalizer, from a pinned version of the
Unicode Character Database.

    python scripts/gen_unicode.py > tokenizer/unicode_data.h

The data comes from the unicodedata2 package pinned in tests/fixtures/requirements.txt
(Unicode 16.0.0: the version the `tokenizers` library 0.23.3 matches, checked on letters added
in 15.1, 16.0 and 17.0). Classes, as the regexes mean them:
  L  \\p{L}: general category Lu, Ll, Lt, Lm or Lo
  N  \\p{N}: Nd, Nl or No
  S  \\s:    U+0009..U+000D, U+0085, and categories Zs, Zl, Zp (Oniguruma's definition,
            which `tokenizers` uses; it equals the White_Space property)
The output is a sorted list of maximal ranges of code points with the same nonzero class;
everything else (unassigned code points included) has class 0. The C side (tokenizer/unicode.c)
searches it with a binary search.

NFC (tokenizer.json's "NFC" normalizer, tokenizer/unicode.c's unicode_nfc): the `tokenizers`
library normalizes with the tables of its unicode-normalization-alignments crate (0.1.12), which
are Unicode 9.0.0's, not 16.0's. Normalization data is stable (the combining class and the
decomposition of an assigned character never change, and a composite added later is excluded
from composition), so 9.0's tables are 16.0's restricted to the characters 9.0 had: marks and
composites added since are, to the library, unassigned characters (class 0, no decomposition).
unicodedata2 16.0.0 gives the data; the pinned `tokenizers` itself tells which characters it
knows (known_to_tokenizers: probes of its NFC on each candidate), and the result is checked
against its NFC on every code point by tests/fixtures/make_nfc.py's fixture. Three tables:
  unicode_ccc     maximal ranges of code points with one nonzero canonical combining class
  unicode_decomp  canonical decomposition mappings, one step (first, second; second 0 for a
                  singleton), by code point; the full decomposition applies them again to both
                  parts. Hangul syllables are algorithmic (no table)
  unicode_comp    the primary composites: indices into unicode_decomp of the two-part mappings
                  whose composite is not in Full_Composition_Exclusion (a composite c is
                  excluded exactly when NFC(c) != c), by (first, second)
Run by hand; make never runs Python.
"""
import sys

import unicodedata2 as ud
from tokenizers import normalizers

EXPECTED_VERSION = "16.0.0"
NFC_VERSION = "9.0.0"  # of the tables in `tokenizers` 0.23.3 (unicode-normalization-alignments)
TOKENIZERS_VERSION = "0.23.3"

L, N, S = 1, 2, 4


def cls(cp):
    if 0x09 <= cp <= 0x0D or cp == 0x85:
        return S
    cat = ud.category(chr(cp))
    if cat[0] == "L":
        return L
    if cat[0] == "N":
        return N
    if cat in ("Zs", "Zl", "Zp"):
        return S
    return 0


def ranges_of(value):
    """Maximal ranges (lo, hi, v) of code points with one nonzero value(cp)."""
    ranges = []
    start, cur = 0, value(0)
    for cp in range(1, 0x110000):
        v = value(cp)
        if v != cur:
            if cur:
                ranges.append((start, cp - 1, cur))
            start, cur = cp, v
    if cur:
        ranges.append((start, 0x10FFFF, cur))
    return ranges


def write_table(out, decl, items):
    out.write(decl + " = {\n")
    line = "   "
    for item in items:
        item = " " + item + ","
        if len(line) + len(item) > 99:
            out.write(line + "\n")
            line = "   "
        line += item
    out.write(line + "\n};\n")


TOK_NFC = normalizers.NFC().normalize_str


def known_to_tokenizers(cp, ccc, mapping):
    """Whether the library's NFC knows the 16.0 property of cp: its class ccc (nonzero) or its
    canonical mapping (a list; None when ccc is asked about)."""
    c = chr(cp)
    if mapping is None:
        if ud.decomposition(c):  # 0340, 0341, 0343, 0344, 0F73, 0F75, 0F81: Unicode 1.1 to 3.0
            return TOK_NFC(c) != c
        # a mark of class below 240 goes before U+0345 (240), one above 1 after U+0334 (1);
        # an unknown character is a starter, which no mark crosses
        return TOK_NFC("\u0345" + c) == c + "\u0345" or TOK_NFC(c + "\u0334") == "\u0334" + c
    if len(mapping) == 1 or ud.normalize("NFC", c) != c:  # a singleton or an excluded composite
        return TOK_NFC(c) != c
    return TOK_NFC(ud.normalize("NFD", c)) == c  # a primary composite: composed again


def nfc_tables():
    """unicode_ccc ranges, unicode_decomp rows (cp, first, second), unicode_comp indices."""
    ccc = {}
    for cp in range(0x110000):
        k = ud.combining(chr(cp))
        if k and known_to_tokenizers(cp, k, None):
            ccc[cp] = k
    decomp = []
    for cp in range(0x110000):
        d = ud.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        m = [int(x, 16) for x in d.split()]
        assert len(m) in (1, 2), hex(cp)
        if known_to_tokenizers(cp, 0, m):
            decomp.append((cp, m[0], m[1] if len(m) == 2 else 0))
    comp = [i for i, (cp, a, b) in enumerate(decomp)
            if b and ud.normalize("NFC", chr(cp)) == chr(cp)]
    comp.sort(key=lambda i: decomp[i][1:])
    assert len(decomp) < 65536
    for i in comp:  # the library composes exactly these pairs
        cp, a, b = decomp[i]
        assert TOK_NFC(chr(a) + chr(b)) == chr(cp), hex(cp)
    return ranges_of(lambda cp: ccc.get(cp, 0)), decomp, comp


def main():
    if ud.unidata_version != EXPECTED_VERSION:
        sys.exit(f"unicodedata2 has Unicode {ud.unidata_version}, expected {EXPECTED_VERSION}")
    import tokenizers
    if tokenizers.__version__ != TOKENIZERS_VERSION:
        sys.exit(f"tokenizers {tokenizers.__version__}, expected {TOKENIZERS_VERSION}")
    ranges = ranges_of(cls)
    ccc, decomp, comp = nfc_tables()
    out = sys.stdout
    out.write("// tokenizer/unicode_data.h: generated by scripts/gen_unicode.py from Unicode "
              f"{EXPECTED_VERSION}; do not edit.\n")
    out.write("// Maximal ranges of code points with one class (UNI_LETTER 1, UNI_NUMBER 2, "
              "UNI_SPACE 4),\n// sorted; code points in no range have class 0.\n")
    out.write(f'#define UNICODE_DATA_VERSION "{EXPECTED_VERSION}"\n')
    out.write(f"#define UNICODE_N_RANGES {len(ranges)}\n")
    write_table(out, "static const struct { uint32_t lo, hi; uint8_t cls; } unicode_ranges[]",
                (f"{{0x{lo:X}, 0x{hi:X}, {c}}}" for lo, hi, c in ranges))
    out.write(f"\n// NFC, as the `tokenizers` library computes it: Unicode {NFC_VERSION}'s data "
              f"(that of its\n// unicode-normalization-alignments crate), which is {EXPECTED_VERSION}'s "
              "restricted to the characters\n"
              f"// {NFC_VERSION} had. Canonical combining classes: maximal ranges of code points "
              "with one nonzero\n// class, sorted; everything else has class 0.\n")
    out.write(f'#define UNICODE_NFC_VERSION "{NFC_VERSION}"\n')
    out.write(f"#define UNICODE_N_CCC {len(ccc)}\n")
    write_table(out, "static const struct { uint32_t lo, hi; uint8_t ccc; } unicode_ccc[]",
                (f"{{0x{lo:X}, 0x{hi:X}, {c}}}" for lo, hi, c in ccc))
    out.write("// Canonical decomposition mappings, one step, sorted by code point: cp -> first "
              "second, or\n// first alone (second 0, a singleton). Hangul syllables are "
              "algorithmic.\n")
    out.write(f"#define UNICODE_N_DECOMP {len(decomp)}\n")
    write_table(out, "static const struct { uint32_t cp, first, second; } unicode_decomp[]",
                (f"{{0x{cp:X}, 0x{a:X}, 0x{b:X}}}" for cp, a, b in decomp))
    out.write("// The primary composites: indices into unicode_decomp of the two-part mappings "
              "whose\n// composite is not excluded from composition, sorted by (first, "
              "second).\n")
    out.write(f"#define UNICODE_N_COMP {len(comp)}\n")
    write_table(out, "static const uint16_t unicode_comp[]", (str(i) for i in comp))


if __name__ == "__main__":
    main()
