"""Small JPEG thumbnails as ``data:`` URIs, so the report carries its pictures inside one file."""

from __future__ import annotations

import base64
import io
from pathlib import Path

#: Longest side of a thumbnail, pixels.
THUMB_SIDE = 96
#: JPEG quality of a thumbnail.
THUMB_QUALITY = 70


class Thumbnails:
    """Make and remember thumbnails of catalog images, up to a budget.

    Args:
        max_count: the most thumbnails made for one report (past it items show their title only),
            so a catalog of large photos cannot blow up the file size.
        side: longest side in pixels.
        quality: JPEG quality.
    """

    def __init__(self, max_count: int = 2000, side: int = THUMB_SIDE, quality: int = THUMB_QUALITY) -> None:
        self.max_count = int(max_count)
        self.side = int(side)
        self.quality = int(quality)
        self._done: dict[str, tuple[str, int, int] | None] = {}
        self.made = 0
        self.failed = 0
        self.bytes = 0

    def get(self, path: str | Path | None) -> tuple[str, int, int] | None:
        """``(data URI, width, height)`` of the image at ``path``, or ``None`` when there is no
        path, the file cannot be read as an image, or the budget is spent."""
        if path is None or (isinstance(path, float) and path != path) or str(path) == "":
            return None
        key = str(path)
        if key in self._done:
            return self._done[key]
        if self.made >= self.max_count:
            return None
        from itemrep.images import ImageLoadError, load_image

        try:
            im = load_image(key, max_side=self.side, min_side=self.side)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=self.quality, optimize=True)
            data = buf.getvalue()
            res = ("data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"), im.size[0], im.size[1])
            self.made += 1
            self.bytes += len(res[0])
        except (ImageLoadError, OSError, ValueError):
            res = None
            self.failed += 1
        self._done[key] = res
        return res
