"""Classifier heads on cached embeddings, and one scoring interface for every checkpoint.

A *head* is a logistic regression (``Linear(d, C)``) or a small MLP
(``Linear(d, h)–ReLU–Linear(h, C)``) trained with torch on a recipe's embeddings. Training
is deterministic given the seed: the seed drives a ``torch.Generator`` for the initial
weights and the minibatch order, and a numpy generator for the label noise and the training
subsample, so the same recipe and seed give bit-identical weights on the same machine.

A head is saved as ``model.safetensors`` + ``config.json`` (kind, dimensions, classes,
training settings, seed, fingerprints of the training data and the embedding model).
:func:`load_scorer` loads either such a folder or a fine-tuned Hugging Face
``AutoModelForSequenceClassification`` checkpoint in any common format (scored on texts;
see :mod:`embedforensics.compare.hf_checkpoints` for the formats and the tokenizer rule);
both return a :class:`Scorer` whose ``logits`` are ``[n, C]`` with columns in the order of
``scorer.classes``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedforensics.errors import UserError, first_line
from embedforensics.fileio import atomic_write, file_sha256

HEAD_FORMAT = "embedforensics-head-v1"


def files_fingerprint(*paths: Path) -> str:
    """sha256 over the given files' sha256 digests, in order (a checkpoint's fingerprint)."""
    return hashlib.sha256("".join(file_sha256(p) for p in paths).encode()).hexdigest()


def build_head(kind: str, input_dim: int, n_classes: int, hidden: int = 64) -> Any:
    """An untrained head module (torch ``nn.Sequential``)."""
    from torch import nn

    if kind == "logistic":
        return nn.Sequential(nn.Linear(input_dim, n_classes))
    if kind == "mlp":
        return nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(),
                             nn.Linear(hidden, n_classes))
    raise ValueError(f"unknown head kind {kind!r}")


def prepare_training_labels(y: np.ndarray, n_classes: int, *, label_noise: float,
                            train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices to train on (seeded, stratified subsample) and their (noised) labels.

    Label noise replaces the label of a seeded ``label_noise`` fraction of the kept rows by a
    different class drawn uniformly, so the noise level is exact, not expected.
    """
    rng = np.random.default_rng([int(seed), 0x4EAD])
    keep: list[np.ndarray] = []
    for c in range(n_classes):
        rows = np.flatnonzero(y == c)
        k = max(1, int(round(train_fraction * rows.size))) if rows.size else 0
        keep.append(np.sort(rng.permutation(rows)[:k]))
    idx = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    labels = y[idx].astype(np.int64).copy()
    n_noisy = int(round(label_noise * idx.size))
    if n_noisy and n_classes > 1:
        flip = rng.choice(idx.size, size=n_noisy, replace=False)
        shift = rng.integers(1, n_classes, size=n_noisy)
        labels[flip] = (labels[flip] + shift) % n_classes
    return idx, labels


def train_head(X: np.ndarray, y: np.ndarray, n_classes: int, settings: dict[str, Any],
               seed: int) -> tuple[Any, dict[str, Any]]:
    """Train one head on embeddings ``X`` with integer labels ``y``; returns (module, info).

    ``settings`` is :meth:`HeadGroupSpec.training_settings` (kind, hidden, optimizer, lr,
    momentum, epochs, batch_size, weight_decay, label_noise, train_fraction).
    """
    import torch

    threads = torch.get_num_threads()
    # heads are tiny: one thread is faster than several, and far faster on a busy machine
    torch.set_num_threads(1)
    try:
        return _train_head(X, y, n_classes, settings, seed)
    finally:
        torch.set_num_threads(threads)


def _train_head(X: np.ndarray, y: np.ndarray, n_classes: int, settings: dict[str, Any],
                seed: int) -> tuple[Any, dict[str, Any]]:
    import torch
    from torch import nn

    idx, labels = prepare_training_labels(
        y, n_classes, label_noise=settings["label_noise"],
        train_fraction=settings["train_fraction"], seed=seed)
    xt = torch.from_numpy(np.ascontiguousarray(X[idx], dtype=np.float32))
    yt = torch.from_numpy(labels)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        module = build_head(settings["kind"], X.shape[1], n_classes, settings["hidden"])
    loss_fn = nn.CrossEntropyLoss()
    wd = float(settings["weight_decay"])
    params = list(module.parameters())
    name = settings["optimizer"]
    module.train()
    losses: list[float] = []
    if name == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=settings["lr"], max_iter=20,
                                line_search_fn="strong_wolfe")

        def closure() -> Any:
            opt.zero_grad()
            loss = loss_fn(module(xt), yt)
            if wd:
                loss = loss + 0.5 * wd * sum((p ** 2).sum() for p in params)
            loss.backward()
            return loss

        for _ in range(settings["epochs"]):
            losses.append(float(opt.step(closure).detach()))
    else:
        if name == "adam":
            opt = torch.optim.Adam(params, lr=settings["lr"], weight_decay=wd)
        else:
            opt = torch.optim.SGD(params, lr=settings["lr"], momentum=settings["momentum"],
                                  weight_decay=wd)
        bs = int(settings["batch_size"])
        for _ in range(settings["epochs"]):
            order = torch.randperm(xt.shape[0], generator=gen)
            total = 0.0
            for start in range(0, xt.shape[0], bs):
                batch = order[start:start + bs]
                opt.zero_grad()
                loss = loss_fn(module(xt[batch]), yt[batch])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * batch.numel()
            losses.append(total / max(1, xt.shape[0]))
    module.eval()
    with torch.no_grad():
        train_acc = float((module(xt).argmax(1) == yt).float().mean()) if len(yt) else 0.0
    return module, {"n_train": int(idx.size), "final_loss": losses[-1] if losses else None,
                    "train_accuracy_on_noised_labels": train_acc,
                    "n_noisy_labels": int(np.count_nonzero(labels != y[idx]))}


def save_head(directory: str | Path, module: Any, config: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (each atomically) into ``directory``."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    atomic_write(out / "model.safetensors",
                  lambda tmp: save_file(state, tmp, metadata={"format": HEAD_FORMAT}))
    full = {"format": HEAD_FORMAT, **config}
    atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(
        json.dumps(full, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"))
    return out


@dataclass
class Scorer:
    """A loaded model that returns logits ``[n, C]`` (columns in ``classes`` order).

    ``input`` says what it scores: ``"embeddings"`` (a head) or ``"texts"`` (a Hugging Face
    checkpoint, which tokenizes the texts). ``fingerprint`` is the sha256 of the files that
    make its function (weights, config, and for a checkpoint its tokenizer and adapter
    files), used for the soft-output cache key.
    """

    path: Path
    kind: str
    classes: list[str]
    fingerprint: str
    input: str
    config: dict[str, Any] = field(default_factory=dict)
    _module: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)
    _load: Any = field(default=None, repr=False)

    def torch_module(self) -> tuple[Any, Any]:
        """``(module, tokenizer)`` (tokenizer None for a head), loading the weights if needed."""
        if self._module is None and self._load is not None:
            self._module, self._tokenizer = self._load()
        return self._module, self._tokenizer

    def logits(self, *, X: np.ndarray | None = None, texts: list[str] | None = None,
               batch_size: int = 32, max_length: int | None = None) -> np.ndarray:
        import torch

        if self._module is None and self._load is not None:
            # loaded on first use, so a cached comparison never loads the weights
            self._module, self._tokenizer = self._load()
        with torch.no_grad():
            if self.input == "embeddings":
                if X is None:
                    raise ValueError("a head scores embeddings; pass X")
                out = self._module(torch.from_numpy(np.ascontiguousarray(X, np.float32)))
                return out.numpy().astype(np.float32)
            if texts is None:
                raise ValueError("a checkpoint scores texts; pass texts")
            parts = []
            for start in range(0, len(texts), batch_size):
                enc = self._tokenizer(texts[start:start + batch_size], padding=True,
                                      truncation=True, max_length=max_length,
                                      return_tensors="pt")
                parts.append(self._module(**enc).logits.float().numpy())
            if not parts:
                return np.zeros((0, len(self.classes)), dtype=np.float32)
            return np.concatenate(parts).astype(np.float32)


HEAD_KINDS = ("logistic", "mlp")


def load_head(directory: str | Path, *, file: str | None = None, key: str | None = None
              ) -> Scorer:
    """Load a head saved by :func:`save_head`; a malformed one (an unknown kind, a missing
    or wrong ``input_dim``, ``classes`` that are not a list of names, weights that are not
    safetensors or do not fit the config) is a one-sentence UserError naming the folder."""
    path = Path(directory)

    def bad(message: str) -> UserError:
        return UserError(f"the head checkpoint '{path}' {message}", file=file, key=key)

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise bad(f"has an unreadable config.json ({first_line(exc)}).") from None
    if not isinstance(config, dict):
        raise bad("has a config.json that is not a JSON object.")
    kind = config.get("kind")
    if kind not in HEAD_KINDS:
        raise bad(f"has kind {kind!r} in its config.json; expected one of "
                  f"{', '.join(HEAD_KINDS)}.")
    input_dim = config.get("input_dim")
    if not _positive_int(input_dim):
        raise bad(f"has input_dim {input_dim!r} in its config.json; expected a positive "
                  "integer (the embedding dimension).")
    classes = config.get("classes")
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes)
            or len({str(c) for c in classes}) != len(classes)):
        raise bad(f"has classes {_short(classes)} in its config.json; expected a list of "
                  "distinct class names.")
    training = config.get("training", {})
    hidden = training.get("hidden", 64) if isinstance(training, dict) else None
    if not _positive_int(hidden):
        raise bad(f"has training.hidden {_short(hidden)} in its config.json; expected a "
                  "positive integer.")
    module = build_head(kind, int(input_dim), len(classes), int(hidden))
    weights = path / "model.safetensors"
    try:
        from safetensors.torch import load_file

        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type, OSError, ...
        raise bad(f"has an unreadable model.safetensors ({first_line(exc)}).") from None
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise bad(f"has weights that do not fit a {kind} head with input_dim {input_dim} "
                  f"and {len(classes)} classes ({first_line(exc)}).") from None
    module.eval()
    return Scorer(path, kind, [str(c) for c in classes],
                  files_fingerprint(weights, path / "config.json"), "embeddings", config,
                  module)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_head(directory: Path) -> bool:
    """Whether a folder holds a head saved by :func:`save_head` (it scores embeddings)."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == HEAD_FORMAT


def is_checkpoint(directory: Path) -> bool:
    """Whether a folder looks like a saved head or a Hugging Face checkpoint: a
    ``config.json`` (heads, full and sharded checkpoints) or a PEFT ``adapter_config.json``.
    Which weights it holds is checked when it is loaded, so a folder with a config but no
    weights is reported rather than silently skipped."""
    return directory.is_dir() and ((directory / "config.json").is_file()
                                   or (directory / "adapter_config.json").is_file())


def load_scorer(directory: str | Path, *, file: str | None = None, key: str | None = None
                ) -> Scorer:
    """Load a head folder or a Hugging Face classifier checkpoint (any format of
    :mod:`embedforensics.compare.hf_checkpoints`) as a :class:`Scorer`.

    ``directory`` may be a :class:`~embedforensics.compare.hf_checkpoints.CheckpointPath`
    from ``resolve_models``, which carries the recipe's base model and ``model:`` for
    checkpoints without tokenizer files.
    """
    path = Path(directory)
    if not is_checkpoint(path):
        raise UserError(f"'{path}' is not a checkpoint folder (no config.json or "
                        "adapter_config.json).", file=file, key=key)
    if is_head(path):
        return load_head(path, file=file, key=key)
    # imported here: hf_checkpoints builds on this module's Scorer
    from embedforensics.compare.hf_checkpoints import load_hf_checkpoint

    return load_hf_checkpoint(directory, file=file, key=key)
