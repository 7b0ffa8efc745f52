"""Download ``http(s)://`` images named in a catalog into a local cache, bounded in every way.

Real catalogs often give an image URL instead of a file. :func:`fetch_images` turns each URL into a
local file under ``cache_dir`` (one file per URL, named by the SHA-256 of the URL) so the rest of
itemrep only ever sees paths. A URL already in the cache is not fetched again.

Bounds, so that one bad server cannot stall or exhaust a run:

* ``concurrency`` requests at a time (one shared connection pool);
* a **total** deadline of ``timeout_s`` per URL (connect + headers + body), not a per-read
  timeout: a server that sends one byte per second is cut off at the deadline;
* a size cap ``max_bytes`` checked on ``Content-Length`` and again on the bytes received;
* at most ``max_redirects`` redirects, ``http``/``https`` only;
* after ``host_failures`` connection failures in a row to one host with no success, the remaining
  URLs of that host are skipped (an offline machine does not wait ``N x timeout``).

A failure never raises: it is returned as a one-line reason (URL credentials and query strings
are left out of it), which the catalog records as a per-item failure. A body is written to a
``.part`` file and renamed into place only when complete.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from itemrep.images import MAX_FILE_BYTES

#: Requests in flight at once.
DEFAULT_CONCURRENCY: int = 8
#: Total seconds allowed per URL (connect, headers and body together).
DEFAULT_TIMEOUT_S: float = 20.0
#: Largest body accepted, bytes (the image reader's own limit).
DEFAULT_MAX_BYTES: int = MAX_FILE_BYTES
#: Redirects followed per URL.
DEFAULT_MAX_REDIRECTS: int = 5
#: Consecutive connection failures to one host after which its other URLs are skipped.
DEFAULT_HOST_FAILURES: int = 5

URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic"}


@dataclass(frozen=True)
class FetchResult:
    """The outcome for one URL.

    Attributes:
        url: the URL as given.
        path: the cached file, or ``None`` on failure.
        error: one-line reason on failure (no credentials, no query string), else ``None``.
        cached: True when the file came from the cache without a request.
    """

    url: str
    path: Path | None
    error: str | None = None
    cached: bool = False


def is_url(s: str) -> bool:
    """True when ``s`` starts with a URL scheme (``scheme://``)."""
    return bool(URL_RE.match(s))


def display_url(url: str, limit: int = 160) -> str:
    """The URL for messages: user name/password removed, query and fragment replaced by ``?…``."""
    try:
        u = urlsplit(url)
        host = u.hostname or ""
        if u.port:
            host = f"{host}:{u.port}"
        s = f"{u.scheme}://{host}{u.path}" + ("?…" if u.query or u.fragment else "")
    except ValueError:
        s = url.split("?")[0].split("#")[0]
        s = re.sub(r"//[^/@]*@", "//", s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def cache_path(url: str, cache_dir: str | Path) -> Path:
    """The cache file of ``url``: ``cache_dir/<sha256 of the URL>[.ext]`` (ext from the URL path)."""
    h = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
    try:
        ext = os.path.splitext(urlsplit(url).path)[1].lower()
    except ValueError:
        ext = ""
    return Path(cache_dir) / (h + (ext if ext in _IMAGE_EXTS else ""))


def fetch_images(
    urls,
    cache_dir: str | Path,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    host_failures: int = DEFAULT_HOST_FAILURES,
    transport=None,
) -> dict[str, FetchResult]:
    """Fetch each distinct URL once into ``cache_dir`` (see the module notes for the bounds).

    Args:
        urls: ``http://`` / ``https://`` URLs (duplicates are fetched once).
        cache_dir: where the files go; created when missing.
        concurrency: requests in flight at once (>= 1).
        timeout_s: total seconds per URL.
        max_bytes: largest body accepted.
        max_redirects: redirects followed per URL.
        host_failures: connection failures in a row after which a host's other URLs are skipped.
        transport: an ``httpx.AsyncBaseTransport`` (tests).

    Returns:
        ``{url: FetchResult}`` for every distinct URL.

    Raises:
        OSError: ``cache_dir`` cannot be created.
    """
    cache_dir = Path(cache_dir)
    unique = list(dict.fromkeys(urls))
    out: dict[str, FetchResult] = {}
    todo = []
    for u in unique:
        p = cache_path(u, cache_dir)
        try:
            hit = p.is_file() and p.stat().st_size > 0
        except (OSError, ValueError):
            hit = False
        if hit:
            out[u] = FetchResult(u, p, cached=True)
        else:
            todo.append(u)
    if not todo:
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    coro = _fetch_all(todo, cache_dir, max(1, int(concurrency)), float(timeout_s), int(max_bytes),
                      int(max_redirects), int(host_failures), transport)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        res = asyncio.run(coro)
    else:  # called from inside an event loop (a notebook): run ours in a thread
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            res = ex.submit(asyncio.run, coro).result()
    out.update(res)
    return out


class _Fail(Exception):
    def __init__(self, msg: str, connect: bool = False):
        super().__init__(msg)
        self.connect = connect


async def _fetch_all(todo, cache_dir: Path, concurrency: int, timeout_s: float, max_bytes: int,
                     max_redirects: int, host_failures: int, transport) -> dict[str, FetchResult]:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    fails: dict[str, int] = {}
    ok_hosts: set[str] = set()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    kw = {"transport": transport} if transport is not None else {}
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), follow_redirects=True, max_redirects=max_redirects,
                                 limits=limits, headers={"User-Agent": "itemrep (catalog image fetch)"}, **kw) as client:

        async def one(url: str) -> FetchResult:
            shown = display_url(url)
            try:
                host = (urlsplit(url).hostname or "").lower()
            except ValueError:
                host = ""
            async with sem:
                if host not in ok_hosts and fails.get(host, 0) >= host_failures:
                    return FetchResult(url, None, f"{shown}: not fetched, {host} failed {fails[host]} connections in a row")
                try:
                    path = await asyncio.wait_for(_get(client, url, cache_dir, max_bytes), timeout_s)
                except asyncio.TimeoutError:
                    return FetchResult(url, None, f"{shown}: no complete answer within {timeout_s:g} s")
                except _Fail as e:
                    if e.connect:
                        fails[host] = fails.get(host, 0) + 1
                    return FetchResult(url, None, f"{shown}: {e}")
                ok_hosts.add(host)
                fails.pop(host, None)
                return FetchResult(url, path)

        results = await asyncio.gather(*(one(u) for u in todo))
    return {r.url: r for r in results}


async def _get(client, url: str, cache_dir: Path, max_bytes: int) -> Path:
    import httpx

    final = cache_path(url, cache_dir)
    part = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        async with client.stream("GET", url) as r:
            if r.status_code != 200:
                raise _Fail(f"HTTP {r.status_code} {r.reason_phrase or ''}".rstrip())
            ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype.startswith("text/") or ctype in ("application/json", "application/xml"):
                raise _Fail(f"server sent {ctype}, not an image")
            clen = r.headers.get("content-length")
            if clen and clen.isdigit() and int(clen) > max_bytes:
                raise _Fail(f"body is {int(clen):,} bytes, more than the {max_bytes:,}-byte limit")
            n = 0
            try:
                with open(part, "wb") as fh:
                    async for chunk in r.aiter_bytes(65536):
                        n += len(chunk)
                        if n > max_bytes:
                            raise _Fail(f"body is more than the {max_bytes:,}-byte limit")
                        fh.write(chunk)
            except OSError as e:
                raise _Fail(f"cannot write the cache file {part.parent} ({e.strerror or e})") from None
            if n == 0:
                raise _Fail("empty body (0 bytes)")
            os.replace(part, final)
            return final
    except _Fail:
        raise
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        raise _Fail(f"cannot connect ({_reason(e)})", connect=True) from None
    except httpx.TooManyRedirects:
        raise _Fail("too many redirects") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
        raise _Fail(f"invalid URL ({_reason(e)})") from None
    except httpx.TimeoutException as e:
        raise _Fail(f"timed out ({type(e).__name__})") from None
    except httpx.HTTPError as e:
        raise _Fail(f"download failed ({type(e).__name__}: {_reason(e)})") from None
    except (ValueError, UnicodeError) as e:
        raise _Fail(f"invalid URL ({e})") from None
    finally:
        try:
            part.unlink(missing_ok=True)
        except OSError:
            pass


def _reason(e: Exception) -> str:
    s = str(e) or type(e).__name__
    s = re.sub(r"https?://\S+", lambda m: display_url(m.group(0)), s)
    return s[:200]
