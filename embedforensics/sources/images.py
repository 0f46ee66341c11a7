"""Image rows: references to image files or bytes, fingerprinted by content.

An image source keeps one :class:`ImageRef` per row: a path (image folders, lists of file
paths, a column of paths) or the encoded bytes (HF datasets that store images inline).
Every image is read once when the source loads: its sha256 goes into the source
fingerprint (so the embedding cache and provenance follow the pixels, not the file names)
and its header is checked, so a file that is not an image fails before any model loads.
Pixels are decoded only when a batch is embedded.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedforensics.errors import UserError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif",
                              ".tiff"})


@dataclass(frozen=True)
class ImageRef:
    """One image: where it came from (``path``), its bytes when not on disk, its sha256."""

    path: str | None
    sha256: str
    data: bytes | None = None

    @property
    def name(self) -> str:
        """A short display name: the file name, else the first 12 hex digits of the hash."""
        return Path(self.path).name if self.path else f"image-{self.sha256[:12]}"

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        return Path(str(self.path)).read_bytes()

    def open_rgb(self, *, file: str | None = None, key: str | None = None) -> Any:
        """Decode to an RGB ``PIL.Image``; a UserError names the image if it cannot be read."""
        from PIL import Image, UnidentifiedImageError

        where = f"'{self.path}'" if self.path else f"image {self.name}"
        try:
            with Image.open(io.BytesIO(self.read_bytes())) as im:
                im.load()
                return im.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise UserError(f"cannot read the image {where}: {exc}.", file=file,
                            key=key) from None


def _check_header(data: bytes, where: str, *, file: str | None, key: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)):
            pass
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{where} is not a readable image ({exc}).", file=file,
                        key=key) from None


def make_image_ref(value: Any, *, base_dir: Path | None, row: int, file: str | None,
                   key: str) -> ImageRef:
    """An ImageRef from a path string, a ``{'bytes', 'path'}`` dict (HF ``Image(decode=
    False)``) or a ``PIL.Image``; reads the bytes once to hash them and check the header."""
    path: str | None = None
    data: bytes | None = None
    keep_bytes = False
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        keep_bytes = data is not None
    elif isinstance(value, (str, Path)):
        path = str(value)
    elif value is not None and hasattr(value, "save"):  # a decoded PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        data, keep_bytes = buf.getvalue(), True
    else:
        raise UserError(f"row {row} holds {type(value).__name__} {value!r:.60}, not an image or "
                        "an image path.", file=file, key=key)
    if data is None:
        if not path:
            raise UserError(f"row {row} has no image (no bytes and no path).", file=file,
                            key=key)
        p = Path(path).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        path = str(p)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read the image file '{p}' (row {row}): "
                            f"{exc.strerror or exc}.", file=file, key=key) from None
    where = f"the file '{path}'" if path else f"row {row}"
    _check_header(data, where, file=file, key=key)
    return ImageRef(path=path, sha256=hashlib.sha256(data).hexdigest(),
                    data=data if keep_bytes else None)


def image_fingerprint(images: list[ImageRef]) -> str:
    """sha256 over the images' own sha256s, tagged so it never equals a text fingerprint."""
    h = hashlib.sha256(b"embedforensics-images-v1")
    for ref in images:
        h.update(bytes.fromhex(ref.sha256))
    return h.hexdigest()



def thumbnail_png(path: str, size: int = 72) -> bytes | None:
    """A small PNG of the image at ``path`` for reports; None if it cannot be read now."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            return buf.getvalue()
    except (OSError, ValueError):
        return None
