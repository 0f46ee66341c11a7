"""``generate``: continue a prompt built from each record with a causal language model.

The prompt is a template over the record: ``{text}`` (the whole text) and ``{start}`` (its
first ``prompt_words`` words), e.g. ``prompt: "{start}"`` asks the model to carry on a human
text from the same opening, which gives content-matched human/model pairs. Sampling is
seeded (``seed``, ``temperature``, ``top_p``, ``top_k``); the output is the new text only
(``output: continuation``) or prompt plus new text (``output: full``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from embedforensics.transforms.base import Transform, TransformParams
from embedforensics.transforms.lm import LanguageModelUser, check_template, resolve


def first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


class GenerateParams(TransformParams):
    model: str = Field(description="A causal LM: bundled:NAME, a hub id or a local folder.")
    revision: str | None = None
    prompt: str = Field("{start}", description="Template over {text} and {start}.")
    prompt_words: int = Field(30, ge=1, description="How many words {start} holds.")
    max_new_tokens: int = Field(40, ge=1)
    do_sample: bool = True
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    output: Literal["continuation", "full"] = "continuation"
    batch_size: int = Field(8, ge=1)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "auto"

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return check_template(value, {"text", "start"})


class Generate(LanguageModelUser, Transform):
    """Continue a prompt built from each text with a causal LM (seeded sampling)."""

    name = "generate"
    Params = GenerateParams
    chunk_size = 32
    params: GenerateParams

    def check(self) -> None:
        resolve(self.params.model, self.base_dir, file=self.file, key=self._model_key(),
                fingerprint=False)

    def identity(self) -> dict[str, Any]:
        return self._model_identity(self.params.model)

    def settings(self) -> dict[str, Any]:
        # batch_size stays in: each batch's sampling seed derives from its prompts, so the
        # batching changes the outputs; the device does not name a different computation
        return self.params.model_dump(mode="json", exclude={"device"})

    def prompts(self, texts: list[str]) -> list[str]:
        n = self.params.prompt_words
        return [self.params.prompt.format(text=t, start=first_words(t, n)) for t in texts]

    def run(self, texts: list[str]) -> list[str]:
        p = self.params
        generator = self._language_model(p.model, p.dtype, p.device)
        prompts = self.prompts(texts)
        outs = generator.generate(
            prompts, batch_size=p.batch_size, seed=p.seed, max_new_tokens=p.max_new_tokens,
            do_sample=p.do_sample, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
            repetition_penalty=p.repetition_penalty)
        if p.output == "full":
            return [f"{q}{'' if q.endswith((' ', chr(10))) or o.startswith(' ') else ' '}{o}"
                    .strip() for q, o in zip(prompts, outs, strict=True)]
        return [o.strip() for o in outs]
