"""Fail-safe catalog input (issue #11 items 2, 10, 16, 18, 20, 21, 22).

Every test builds a small input of its own; URL images are served by a loopback HTTP server.
"""

import gzip
import io
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from itemrep.catalog import DEFAULT_MISSING_VALUES, Catalog, csv_safe
from itemrep.errors import CatalogError
from itemrep.images import ImageLoadError, read_bytes


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(k, raising=False)


def _png(path: Path, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format="PNG")
    return path


def _png_bytes(color=(10, 200, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def _csv(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index=False)
    return path


def _fails(cat):
    return {(f.item_id, f.field): f.message for f in cat.failures}


# ------------------------------------------------------------------ item 2: path problems
def test_too_long_image_name_is_a_per_item_failure(tmp_path):
    _png(tmp_path / "ok.png")
    long_name = "x" * 300 + ".jpg"  # > 255 bytes: OSError [Errno 36] File name too long
    p = _csv(tmp_path / "c.csv", pd.DataFrame({"id": ["a", "b", "c"], "title": ["one", "two", "three"],
                                                "image": ["ok.png", long_name, "bad\0name.jpg"]}))
    cat = Catalog.load(p)
    assert len(cat) == 3
    assert cat[0].image == tmp_path / "ok.png"
    assert cat[1].image is None and cat[2].image is None
    msgs = _fails(cat)
    assert "cannot use image path" in msgs[("b", "image")] and "too long" in msgs[("b", "image")].lower()
    assert "cannot use image path" in msgs[("c", "image")]
    assert len(msgs[("b", "image")]) < 400  # the 300-byte name is shortened in the message


def test_too_long_image_name_with_images_off(tmp_path):
    p = _csv(tmp_path / "c.csv", pd.DataFrame({"id": ["a", "b"], "title": ["one", "two"], "image": ["y" * 300 + ".jpg", "z.jpg"]}))
    cat = Catalog.load(p, images="off")
    assert len(cat) == 2 and cat.failures == [] and cat.warnings == []


def test_too_long_catalog_path_is_a_catalog_error(tmp_path):
    with pytest.raises(CatalogError, match="catalog file"):
        Catalog.load(tmp_path / ("c" * 300 + ".csv"))


def test_read_bytes_path_problems_are_image_load_errors(tmp_path):
    with pytest.raises(ImageLoadError):
        read_bytes(tmp_path / ("x" * 300 + ".jpg"))
    with pytest.raises(ImageLoadError):
        read_bytes(str(tmp_path / "a\0b.jpg"))


def test_cli_dedup_long_image_name_images_off(tmp_path):
    from typer.testing import CliRunner

    from itemrep.cli import app

    df = pd.DataFrame({"id": [f"i{i}" for i in range(6)], "title": ["red cotton shirt", "red cotton shirt L", "blue mug",
                                                                      "blue mug 300ml", "usb cable", "usb-c cable 1m"],
                       "image": ["q" * 300 + ".jpg"] * 6})
    p = _csv(tmp_path / "c.csv", df)
    r = CliRunner().invoke(app, ["dedup", str(p), "--out", str(tmp_path / "out"), "--images", "off", "--text-encoder", "none", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output


# ------------------------------------------------------------------ item 10: placeholder titles
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_placeholder_titles_are_missing(tmp_path, fmt):
    titles = ["NaN", "nan", "-nan", "null", "None", "N/A", " n/a ", "NULL", "Nano SIM card"]
    df = pd.DataFrame({"id": [f"i{k}" for k in range(len(titles))], "title": titles, "label": ["nan"] * 8 + ["g1"]})
    if fmt == "csv":
        p = _csv(tmp_path / "c.csv", df)
    else:
        p = tmp_path / "c.jsonl"
        p.write_text("\n".join(json.dumps(r) for r in df.to_dict("records")))
    cat = Catalog.load(p, label_col="label")
    assert cat.titles == [""] * 8 + ["Nano SIM card"]
    assert cat.labels == [None] * 8 + ["g1"]


def test_missing_values_are_configurable(tmp_path):
    assert {"NaN", "nan", "-nan", "null", "None", "N/A"} <= set(DEFAULT_MISSING_VALUES)
    p = _csv(tmp_path / "c.csv", pd.DataFrame({"id": ["a", "b", "c"], "title": ["TBD", "nan", "real title"]}))
    assert Catalog.load(p, missing_values=["TBD"]).titles == ["", "nan", "real title"]
    assert Catalog.load(p, missing_values="TBD,nan").titles == ["", "", "real title"]
    assert Catalog.load(p, missing_values="").titles == ["TBD", "nan", "real title"]


def test_placeholder_titles_do_not_merge_unrelated_items(tmp_path):
    from itemrep.dedup.pipeline import FITRep

    p = tmp_path / "c.csv"
    p.write_text("id,title,phash\na,nan,0123456789abcdef\nb,nan,fedcba9876543210\nc,NaN,00ff00ff00ff00ff\n"
                 "d,N/A,1111222233334444\ne,Blue mug,a5a5a5a5a5a5a5a5\n")
    model = FITRep.default(images="off", text_encoder="none", progress=False)
    assert model.dedup(Catalog.load(p)).clusters["cluster_id"].nunique() == 5
    # the same file with placeholders read as text: the "nan" items merge (what the probe saw)
    assert model.dedup(Catalog.load(p, missing_values="")).clusters["cluster_id"].nunique() < 5


# ------------------------------------------------------------------ item 16: non-scalar ids
def test_list_typed_parquet_id_is_rejected_with_the_column(tmp_path):
    p = tmp_path / "c.parquet"
    pd.DataFrame({"sku": [["id1"], ["id2"]], "title": ["a", "b"]}).to_parquet(p)
    with pytest.raises(CatalogError, match=r"column 'sku'.*(list|single)"):
        Catalog.load(p)


def test_list_typed_jsonl_id_and_label_are_rejected(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": ["a"], "title": "x"}\n{"id": ["b"], "title": "y"}\n')
    with pytest.raises(CatalogError, match=r"column 'id'"):
        Catalog.load(p)
    p.write_text('{"id": "a", "title": "x", "grp": {"k": 1}}\n{"id": "b", "title": "y", "grp": "g"}\n')
    with pytest.raises(CatalogError, match=r"column 'grp'.*row 1"):
        Catalog.load(p, label_col="grp")


def test_scalar_parquet_ids_still_fine(tmp_path):
    p = tmp_path / "c.parquet"
    pd.DataFrame({"id": [12, 13], "title": [["red", "shirt"], ["mug"]]}).to_parquet(p)
    cat = Catalog.load(p)
    assert cat.ids == ["12", "13"] and cat.titles == ["red shirt", "mug"]


# ------------------------------------------------------------------ item 18: image root and URLs
def test_escaping_image_paths_allowed_by_default_and_confined_by_image_root(tmp_path):
    root = tmp_path / "shop"
    imgs = root / "imgs"
    _png(imgs / "in.png")
    _png(tmp_path / "outside.png")
    (imgs / "link.png").symlink_to(tmp_path / "outside.png")
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "title": ["w", "x", "y", "z"],
                       "image": ["imgs/in.png", "../outside.png", str(tmp_path / "outside.png"), "imgs/link.png"]})
    p = _csv(root / "c.csv", df)
    cat = Catalog.load(p)  # default: anywhere, relative to the catalog's folder
    assert cat.failures == [] and all(it.image is not None for it in cat)

    cat = Catalog.load(p, image_root=root)
    assert cat[0].image == imgs / "in.png"
    assert [it.image for it in cat.items[1:]] == [None, None, None]
    msgs = _fails(cat)
    for k in "bcd":
        assert "outside --image-root" in msgs[(k, "image")]

    # relative paths resolve under the image root
    p2 = _csv(root / "c2.csv", pd.DataFrame({"id": ["a"], "title": ["w"], "image": ["in.png"]}))
    assert Catalog.load(p2, image_root=imgs)[0].image == imgs / "in.png"


class _Server:
    """Loopback HTTP server: /img/N.png, /big.png, /slow.png, /missing.png, /page.html, /redirect."""

    def __init__(self, delay: float = 0.0):
        self.hits: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.delay = delay
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                with srv.lock:
                    srv.hits[path] = srv.hits.get(path, 0) + 1
                    srv.in_flight += 1
                    srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
                try:
                    if srv.delay:
                        time.sleep(srv.delay)
                    if path.startswith("/img/"):
                        body = _png_bytes()
                        self.send_response(200)
                        self.send_header("Content-Type", "image/png")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                    elif path == "/redirect":
                        self.send_response(302)
                        self.send_header("Location", "/img/r.png")
                        self.end_headers()
                    elif path == "/big.png":  # no Content-Length: the cap must hold on the stream
                        self.send_response(200)
                        self.send_header("Content-Type", "image/png")
                        self.end_headers()
                        for _ in range(64):
                            self.wfile.write(b"\0" * 4096)
                    elif path == "/slow.png":  # one byte at a time, slower than the deadline
                        self.send_response(200)
                        self.send_header("Content-Type", "image/png")
                        self.send_header("Content-Length", "1000")
                        self.end_headers()
                        for _ in range(1000):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.05)
                    elif path == "/page.html":
                        body = b"<html>sign in</html>"
                        self.send_response(200)
                        self.send_header("Content-Type", "text/html")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                    else:
                        self.send_error(404)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with srv.lock:
                        srv.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_http_images_are_fetched_capped_and_cached(tmp_path):
    with _Server() as s:
        u = s.url
        df = pd.DataFrame({
            "id": list("abcdefgh"),
            "title": list("abcdefgh"),
            "image": [f"{u}/img/1.png", f"{u}/img/1.png", f"{u}/redirect", f"{u}/big.png", f"{u}/slow.png",
                      f"{u}/missing.png", f"{u}/page.html", f"http://user:s3cret@127.0.0.1:{u.rsplit(':', 1)[1]}/missing.png?token=abc"],
        })
        p = _csv(tmp_path / "c.csv", df)
        cache = tmp_path / "cache"
        t0 = time.monotonic()
        cat = Catalog.load(p, cache_dir=cache, url_timeout_s=1.0, url_max_bytes=100_000)
        assert time.monotonic() - t0 < 10
        a, b, c = cat[0].image, cat[1].image, cat[2].image
        assert a is not None and a == b and a.read_bytes() == _png_bytes() and cache in a.parents
        assert c is not None and c.is_file()
        assert all(it.image is None for it in cat.items[3:])
        msgs = _fails(cat)
        assert "100,000" in msgs[("d", "image")] or "limit" in msgs[("d", "image")]
        assert "within 1 s" in msgs[("e", "image")]
        assert "404" in msgs[("f", "image")]
        assert "text/html" in msgs[("g", "image")]
        assert "s3cret" not in msgs[("h", "image")] and "token=abc" not in msgs[("h", "image")]
        assert s.hits["/img/1.png"] == 1  # same URL fetched once
        assert not any(x.name.endswith(".part") for x in cache.rglob("*"))

        # second load: served from the cache, no request
        before = dict(s.hits)
        cat2 = Catalog.load(p, cache_dir=cache, url_timeout_s=1.0, url_max_bytes=100_000)
        assert cat2[0].image == a and s.hits.get("/img/1.png") == before["/img/1.png"]


def test_http_fetch_concurrency_is_bounded(tmp_path):
    with _Server(delay=0.15) as s:
        df = pd.DataFrame({"id": [f"i{k}" for k in range(8)], "title": ["t"] * 8,
                           "image": [f"{s.url}/img/{k}.png" for k in range(8)]})
        cat = Catalog.load(_csv(tmp_path / "c.csv", df), cache_dir=tmp_path / "cache", url_concurrency=2)
        assert all(it.image is not None for it in cat) and cat.failures == []
        assert s.max_in_flight <= 2


def test_urls_not_fetched_with_images_off_and_other_schemes_fail(tmp_path):
    with _Server() as s:
        df = pd.DataFrame({"id": ["a", "b"], "title": ["x", "y"], "image": [f"{s.url}/img/1.png", "ftp://example.com/a.jpg"]})
        p = _csv(tmp_path / "c.csv", df)
        cat = Catalog.load(p, cache_dir=tmp_path / "cache", images="off")
        assert s.hits == {} and cat.failures == []
        cat = Catalog.load(p, cache_dir=tmp_path / "cache")
        assert cat[0].image is not None
        assert "unsupported URL scheme" in _fails(cat)[("b", "image")]


def _closed_port() -> int:
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def test_unreachable_host_is_skipped_and_said_once(tmp_path):
    from itemrep.fetch import fetch_images

    port = _closed_port()
    urls = [f"http://127.0.0.1:{port}/{k}.jpg" for k in range(12)]
    res = fetch_images(urls, tmp_path / "cache", concurrency=1, timeout_s=2, host_failures=3)
    errs = [res[u].error for u in urls]
    assert all(e and "cannot connect" in e for e in errs[:3])
    assert all(e and "not fetched" in e for e in errs[3:])
    df = pd.DataFrame({"id": [f"i{k}" for k in range(12)], "title": ["t"] * 12, "image": urls})
    cat = Catalog.load(_csv(tmp_path / "c.csv", df), cache_dir=tmp_path / "cache", url_timeout_s=2)
    assert cat.failures == [] and len(cat.warnings) == 1
    assert cat.warnings[0].startswith("none of the 12 image URLs could be fetched")


# ------------------------------------------------------------------ item 20: --images off / all absent
def test_images_off_never_touches_image_files(tmp_path, monkeypatch):
    import itemrep.catalog as catalog_mod

    p = _csv(tmp_path / "c.csv", pd.DataFrame({"id": ["a", "b", "c"], "title": ["x", "y", "z"], "image": ["1.jpg", "2.jpg", "3.jpg"]}))
    touched = []
    real_is_file, real_exists = Path.is_file, Path.exists

    def spy(real):
        def f(self, *a, **k):
            if self.suffix == ".jpg":
                touched.append(self)
            return real(self, *a, **k)
        return f

    monkeypatch.setattr(Path, "is_file", spy(real_is_file))
    monkeypatch.setattr(Path, "exists", spy(real_exists))
    monkeypatch.setattr(catalog_mod, "_stat", lambda p: touched.append(p) or os.stat(p), raising=False)
    cat = Catalog.load(p, images="off")
    assert touched == [] and cat.failures == [] and cat.warnings == []
    assert cat[0].image == tmp_path / "1.jpg"  # the path is kept as written, unchecked
    cat = Catalog.load(p, images="on")
    assert len(touched) == 3 and len(cat.failures) == 3  # "on": one failure per missing file


def test_all_images_absent_gives_one_message(tmp_path):
    n = 50
    p = _csv(tmp_path / "c.csv", pd.DataFrame({"id": [f"i{k}" for k in range(n)], "title": ["t"] * n,
                                                "image": [f"{k:04d}.jpg" for k in range(n)]}))
    cat = Catalog.load(p)
    assert cat.failures == []
    assert len(cat.warnings) == 1 and cat.warnings[0].startswith(f"none of the {n} images exists under {tmp_path}")
    assert all(it.image is None for it in cat)
    # some present: the absent ones are per-item failures as before
    _png(tmp_path / "0000.jpg")
    cat = Catalog.load(p)
    assert cat.warnings == [] and len(cat.failures) == n - 1


# ------------------------------------------------------------------ item 21: clear messages
def test_header_only_and_empty_files_say_0_rows(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id,title\n")
    with pytest.raises(CatalogError, match="0 rows"):
        Catalog.load(p)
    p.write_text("")
    with pytest.raises(CatalogError, match="0 rows"):
        Catalog.load(p)
    q = tmp_path / "c.jsonl"
    q.write_text("\n\n")
    with pytest.raises(CatalogError, match="0 rows"):
        Catalog.load(q)


def test_semicolon_delimiter_is_sniffed_or_hinted(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id;title;price\na;Tom, Jerry mug;3,50\nb;blue cup;2\n")
    cat = Catalog.load(p)
    assert cat.ids == ["a", "b"] and cat.titles == ["Tom, Jerry mug", "blue cup"]
    with pytest.raises(CatalogError, match="--sep"):
        Catalog.load(p, sep=",")
    assert Catalog.load(p, sep=";").ids == ["a", "b"]
    t = tmp_path / "t.csv"
    t.write_text("id\ttitle\na\tx\n")
    assert Catalog.load(t, sep="\\t").titles == ["x"]


def test_cp1252_file_names_the_line_and_offers_encoding(tmp_path):
    p = tmp_path / "c.csv"
    p.write_bytes("id,title\na,Mug\nb,Caf\u00e9 cr\u00e8me\n".encode("cp1252"))
    with pytest.raises(CatalogError, match=r"line 3.*--encoding"):
        Catalog.load(p)
    assert Catalog.load(p, encoding="cp1252").titles == ["Mug", "Café crème"]
    q = tmp_path / "c.jsonl"
    q.write_bytes('{"id": "a", "title": "x"}\n{"id": "b", "title": "Caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(CatalogError, match=r"line 2.*--encoding"):
        Catalog.load(q)
    assert Catalog.load(q, encoding="latin-1").titles == ["x", "Café"]


@pytest.mark.parametrize("name", ["c.csv.gz", "c.jsonl.gz", "c.tsv.gz"])
def test_gzipped_catalogs(tmp_path, name):
    df = pd.DataFrame({"id": ["0012", "b"], "title": ["x", "Café"]})
    if ".jsonl" in name:
        raw = "\n".join(json.dumps(r) for r in df.to_dict("records")).encode()
    else:
        raw = df.to_csv(index=False, sep="\t" if ".tsv" in name else ",").encode()
    (tmp_path / name).write_bytes(gzip.compress(raw))
    cat = Catalog.load(tmp_path / name)
    assert cat.ids == ["0012", "b"] and cat.titles == ["x", "Café"]
    (tmp_path / name).write_bytes(b"not gzip at all")
    with pytest.raises(CatalogError, match="gzip"):
        Catalog.load(tmp_path / name)


def test_require_labels_names_the_rows(tmp_path):
    p = _csv(tmp_path / "c.csv", pd.DataFrame({"id": list("abcd"), "title": list("wxyz"), "grp": ["g1", "", "g2", "nan"]}))
    cat = Catalog.load(p, label_col="grp")
    with pytest.raises(CatalogError, match=r"'grp'.*2 of 4 rows.*2, 4"):
        cat.require_labels()
    with pytest.raises(CatalogError, match="--label-col"):
        Catalog.load(p).require_labels()
    Catalog.load(p, label_col="grp").subset([0, 2]).require_labels()


# ------------------------------------------------------------------ item 22: formula injection
def test_csv_safe_escapes_formula_cells():
    df = pd.DataFrame({"item_id": ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "@SUM(A1)", "-cmd", "\tx", "-5", "2.5e3", "ok=1"],
                       "row": [1, 2, 3, 4, 5, 6, 7, 8], "message": ["m"] * 8})
    out = csv_safe(df)
    assert out["item_id"].tolist() == ["'=HYPERLINK(\"http://x\",\"y\")", "'+1+2", "'@SUM(A1)", "'-cmd", "'\tx", "-5", "2.5e3", "ok=1"]
    assert out["row"].tolist() == list(range(1, 9))
    assert df["item_id"][0].startswith("=")  # input left alone
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    assert "\n=" not in buf.getvalue() and ",=" not in buf.getvalue()
