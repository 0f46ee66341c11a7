"""Derived sources and transforms: contrast data made from other sources' rows.

A source with ``from: <id>`` starts from the rows an earlier source selected (after its
``where``, ``limit`` and ``sample``): its columns are that source's ``text``, its metadata
columns and ``from_id`` (the row's id there), so ``text_column`` may pick another column
(e.g. the ``parallel_text`` of an html source) and ``where``/``sample`` may narrow the rows
further. Its ids are ``<this source id>:<id in the parent>``, so a derived row always
points back at the row it came from.

Any source may list ``transform:`` steps; they run in order on the selected texts, through
the transform cache, and their settings, engine identity and cache use go into the
source's ``origin.transforms`` (and so into ``results.json``). The text before the
transforms is kept in the metadata column ``source_text``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from embedforensics.errors import UserError
from embedforensics.recipe.schema import SourceSpec
from embedforensics.sources.base import SourceData

log = logging.getLogger(__name__)


def load_derived_source(spec: SourceSpec, parent: SourceData, *, seed: int,
                        file: str | None, key: str) -> SourceData:
    """The parent's selected rows as a new source (before any transform)."""
    from embedforensics.sources.hf import build_source_data

    # from_id first: metadata keeps at most 20 columns, and the ids below need this one
    table: dict[str, list[Any]] = {"from_id": list(parent.ids), "text": list(parent.texts)}
    table.update({k: list(v) for k, v in parent.meta.items() if k not in table})
    origin = {"description": f"rows of source '{parent.source_id}'", "builder": "derived",
              "from": parent.source_id, "files": parent.origin.get("files", [])}
    data = build_source_data(spec, table, seed=seed, file=file, key=key, origin=origin)
    if spec.id_column is None:
        data.ids = [f"{spec.id}:{pid}" for pid in data.meta["from_id"]]
    return data


def apply_transforms(spec: SourceSpec, data: SourceData, *, base_dir: Path,
                     cache_dir: Path | None, file: str | None, key: str) -> SourceData:
    """Run the source's transforms in order; return a new SourceData with their outputs."""
    from embedforensics.transforms import apply_transform, build_transform

    texts = list(data.texts)
    infos = []
    for j, tspec in enumerate(spec.transform):
        tkey = f"{key}.transform[{j}]"
        transform = build_transform(tspec.name, tspec.params, base_dir=base_dir, file=file,
                                    key=tkey)
        transform.check()
        log.info("%s: %s over %d texts", tkey, tspec.name, len(texts))
        texts, info = apply_transform(transform, texts, cache_dir=cache_dir, progress=True)
        infos.append(info)
    keep = list(range(len(texts)))
    removed = 0
    if spec.drop_empty:
        keep = [i for i, t in enumerate(texts) if t.strip()]
        removed = len(texts) - len(keep)
        if removed:
            log.warning("%s: %s: dropped %d empty transform outputs", file or "<recipe>", key,
                        removed)
    elif any(not t.strip() for t in texts):
        i = next(i for i, t in enumerate(texts) if not t.strip())
        raise UserError(f"the transforms made an empty text from row {data.ids[i]} (set "
                        "drop_empty: true to drop such rows).", file=file, key=f"{key}.transform")
    if not keep:
        raise UserError("every transform output is empty.", file=file, key=f"{key}.transform")
    meta = {k: [v[i] for i in keep] for k, v in data.meta.items()}
    meta["source_text"] = [data.texts[i] for i in keep]
    stats = {**data.stats, "removed_empty_after_transform": removed, "rows_kept": len(keep)}
    origin = {**data.origin, "transforms": infos}
    return SourceData(source_id=data.source_id, label=data.label,
                      ids=[data.ids[i] for i in keep], texts=[texts[i] for i in keep],
                      meta=meta, stats=stats, origin=origin)
