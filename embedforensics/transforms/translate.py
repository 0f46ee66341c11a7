"""``translate``: machine-translate texts, with apertium or a Hugging Face model.

- ``engine: apertium`` runs the Debian ``apertium`` command line with a language pair
  (``pair: eng-spa``), many texts per call: each text is HTML-escaped and wrapped in its own
  numbered ``<div>``, translated with ``apertium -f html`` (markup passes through
  untouched), and the outputs are matched back by number, so a text can never bleed into its
  neighbour and a lost or reordered block is an error, not a silent shift.
- ``engine: hf`` uses any Hugging Face translation model (an encoder-decoder such as Marian
  or NLLB, prompted with ``prompt``) or a causal LM (prompted with ``prompt``, e.g. ``"English:
  {text}\\nSpanish:"``; the first line of the greedy continuation is the translation).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from embedforensics.errors import UserError
from embedforensics.transforms.base import Transform, TransformParams
from embedforensics.transforms.lm import LanguageModelUser, check_template, resolve

APT_HINT = "install it with 'apt-get install -y apertium apertium-{pair}' (Debian/Ubuntu)"
_BLOCK = re.compile(r'<div id="ef(\d+)">(.*?)</div>', re.DOTALL)
_SPACES = re.compile(r"[ \t]{2,}")


class TranslateParams(TransformParams):
    engine: Literal["apertium", "hf"] = "apertium"
    pair: str | None = Field(None, description="apertium: a mode such as eng-spa, spa-eng.")
    unknown_marks: bool = Field(False, description="apertium: keep the '*' marks on unknown "
                                "words (default: drop them, apertium -u).")
    normalize_space: bool = Field(True, description="Collapse runs of spaces and tabs in "
                                  "the output to one space (apertium leaves double spaces where "
                                  "it drops a word, a trivial surface cue).")
    model: str | None = Field(None, description="hf: a model id, bundled:NAME or a folder.")
    revision: str | None = None
    prompt: str = Field("{text}", description="hf: the input built from each text.")
    max_new_tokens: int = Field(256, ge=1)
    batch_size: int = Field(8, ge=1)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return check_template(value, {"text"})

    @model_validator(mode="after")
    def _engine_needs(self) -> TranslateParams:
        if self.engine == "apertium" and not self.pair:
            raise ValueError("the apertium engine needs 'pair' (e.g. eng-spa)")
        if self.engine == "hf" and not self.model:
            raise ValueError("the hf engine needs 'model' (a model id or folder)")
        return self


def wrap_blocks(texts: list[str]) -> str:
    """One HTML document with each text escaped in its own numbered block."""
    return "\n".join(f'<div id="ef{i}">{html.escape(t, quote=False)}</div>'
                     for i, t in enumerate(texts)) + "\n"


def unwrap_blocks(output: str, n: int) -> list[str]:
    """The texts of blocks 0..n-1 from apertium's output; an error if any is missing."""
    found = {int(m.group(1)): html.unescape(m.group(2)) for m in _BLOCK.finditer(output)}
    if sorted(found) != list(range(n)):
        missing = sorted(set(range(n)) - set(found))[:5]
        raise RuntimeError(f"apertium output lost the block structure (missing blocks "
                           f"{missing} of {n})")
    return [found[i].strip() for i in range(n)]


class Translate(LanguageModelUser, Transform):
    """Machine-translate texts (apertium language pair, or a Hugging Face model)."""

    name = "translate"
    Params = TranslateParams
    chunk_size = 128
    params: TranslateParams

    # -- availability ---------------------------------------------------------------
    def _apertium(self) -> str:
        exe = shutil.which("apertium")
        if exe is None:
            raise UserError("the translate transform's apertium engine needs the Debian package "
                            f"'apertium'; {APT_HINT.format(pair=self.params.pair)}.",
                            file=self.file, key=self.key)
        return exe

    def _modes(self) -> list[str]:
        run = subprocess.run([self._apertium(), "-l"], capture_output=True, text=True,
                             timeout=60)
        return [m.strip() for m in run.stdout.split() if m.strip()]

    def check(self) -> None:
        if self.params.engine == "apertium":
            modes = self._modes()
            if self.params.pair not in modes:
                from embedforensics.errors import did_you_mean

                pkg = "-".join(str(self.params.pair).split("-")[:2])
                raise UserError(
                    f"apertium has no language pair '{self.params.pair}'"
                    f"{did_you_mean(str(self.params.pair), modes)}; installed: "
                    f"{', '.join(modes) or 'none'}; install the pair with 'apt-get install -y "
                    f"apertium-{pkg}' (or its reverse, e.g. apertium-eng-spa for spa-eng).",
                    file=self.file, key=f"{self.key}.pair" if self.key else None)
        else:
            resolve(str(self.params.model), self.base_dir, file=self.file,
                    key=f"{self.key}.model" if self.key else None, fingerprint=False)

    def identity(self) -> dict[str, Any]:
        if self.params.engine == "apertium":
            return {"apertium": _debian_version("apertium"),
                    "pair_package": _debian_version(
                        "apertium-" + "-".join(str(self.params.pair).split("-")[:2]))}
        return self._model_identity(str(self.params.model))

    def settings(self) -> dict[str, Any]:
        p = self.params
        if p.engine == "apertium":
            return {"engine": "apertium", "pair": p.pair, "unknown_marks": p.unknown_marks,
                    "normalize_space": p.normalize_space}
        return {"engine": "hf", "model": p.model, "revision": p.revision, "prompt": p.prompt,
                "max_new_tokens": p.max_new_tokens, "dtype": p.dtype, "decoding": "greedy",
                "normalize_space": p.normalize_space}

    # -- work -----------------------------------------------------------------------------
    def run(self, texts: list[str]) -> list[str]:
        out = self._run_apertium(texts) if self.params.engine == "apertium" \
            else self._run_hf(texts)
        if self.params.normalize_space:
            out = [_SPACES.sub(" ", t).strip() for t in out]
        return out

    def _run_apertium(self, texts: list[str]) -> list[str]:
        cmd = [self._apertium(), "-f", "html"]
        if not self.params.unknown_marks:
            cmd.append("-u")
        cmd.append(str(self.params.pair))
        run = subprocess.run(cmd, input=wrap_blocks(texts), capture_output=True, text=True,
                             timeout=600)
        if run.returncode != 0:
            raise UserError(f"apertium {self.params.pair} failed (exit {run.returncode}): "
                            f"{run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ''}",
                            file=self.file, key=self.key)
        return unwrap_blocks(run.stdout, len(texts))

    def _run_hf(self, texts: list[str]) -> list[str]:
        p = self.params
        generator = self._language_model(str(p.model), p.dtype, p.device)
        prompts = [p.prompt.format(text=t) for t in texts]
        outs = generator.generate(prompts, batch_size=p.batch_size, seed=0,
                                  max_new_tokens=p.max_new_tokens, do_sample=False)
        if not generator.seq2seq:  # a causal LM keeps talking: keep the first line
            outs = [o.strip().split("\n", 1)[0] for o in outs]
        return [o.strip() for o in outs]


def _debian_version(package: str) -> str | None:
    exe = shutil.which("dpkg-query")
    if exe is None:
        return None
    run = subprocess.run([exe, "-W", "-f=${Version}", package], capture_output=True, text=True,
                         timeout=30)
    return run.stdout.strip() or None if run.returncode == 0 else None
