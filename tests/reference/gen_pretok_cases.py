#!/usr/bin/env python3
"""gen_pretok_cases.py: writes tests/reference/pretok_cases.txt, the GPT-2
pre-splitting of random strings by GPT-2's own pattern (run with the `regex`
module, as GPT-2's encoder.py does), for the C splitter to be checked
against without Python at test time.

Each line: the UTF-8 string in hex, a tab, the byte lengths of its pieces
separated by commas. Run: python3 tests/reference/gen_pretok_cases.py
(needs `pip install regex`).
"""
import os
import random

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
POOL = (list("abcXYZ019 '  \t\n\r.,!?-_\"()") + ["'s", "'re", "'ll", "'d", "'ve", "'m", "'t"] +
        ["é", "ñ", "ß", "Ω", "ж", "中", "文", "ひ", "ا", "١", "٣", "²", "½", "Ⅻ",
         "\u0301", "\u00a0", "\u2003", "\u3000", "\u200b", "😀", "\u0085", "\u000b", "\u001c",
         "Ǆ", "ǅ", "ʰ", "〇"])


def main():
    rng = random.Random(20261122)
    pat = regex.compile(GPT2_PATTERN)
    here = os.path.dirname(os.path.abspath(__file__))
    fixed = ["Hello world", "  hello   world  ", "don't stop", "It's 2026!!", "a\n\nb", "x \t y",
             "café ñandú", "数字123abc", "   ", "'", "''s", "ab'", "😀😀 ok"]
    cases = fixed + ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 24)))
                     for _ in range(400)]
    with open(os.path.join(here, "pretok_cases.txt"), "w") as f:
        for s in cases:
            pieces = pat.findall(s)
            assert "".join(pieces) == s
            f.write("%s\t%s\n" % (s.encode().hex(), ",".join(str(len(p.encode())) for p in pieces)))
    print("wrote %d cases" % len(cases))


if __name__ == "__main__":
    main()
