"""Catalog loading and validation."""

import json

import pandas as pd
import pytest

from itemrep.catalog import Catalog, clean_text
from itemrep.errors import CatalogError

FIX = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures"


def test_clean_text_decodes_byte_escapes_and_entities():
    assert clean_text(r"Nescafe \xc3\x89clair Latte") == "Nescafe Éclair Latte"
    assert clean_text("Tom &amp; Jerry &#39;mug&#39;") == "Tom & Jerry 'mug'"
    assert clean_text("  ＡＢＣ　１２３  ") == "ABC 123"
    assert clean_text(None) == ""


def test_load_csv_defaults_and_cleaning():
    cat = Catalog.load(FIX / "catalog_small.csv", label_col="label")
    assert len(cat) == 43
    assert cat.columns["id"] == "item_id" and cat.columns["phash"] == "phash"
    it = {i.item_id: i for i in cat}["p042"]
    assert it.title == "Nescafe Éclair Latte 220ml"
    assert it.label == "g21" and it.row == 42
    assert {i.item_id: i for i in cat}["p043"].title.endswith("kaleng & botol")
    assert cat.has_labels


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_load_other_formats_same_items(tmp_path, suffix):
    df = pd.read_csv(FIX / "catalog_small.csv", dtype=str, keep_default_na=False)
    p = tmp_path / f"cat{suffix}"
    if suffix == ".jsonl":
        p.write_text("\n".join(json.dumps(r) for r in df.to_dict("records")))
    else:
        df.to_parquet(p)
    a = Catalog.load(p, label_col="label")
    b = Catalog.load(FIX / "catalog_small.csv", label_col="label")
    assert a.ids == b.ids and a.titles == b.titles and a.labels == b.labels


def test_missing_file_and_column_errors(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        Catalog.load(tmp_path / "nope.csv")
    with pytest.raises(CatalogError, match=r"column 'grp' \(--label-col\) not found.*item_id"):
        Catalog.load(FIX / "catalog_small.csv", label_col="grp")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(CatalogError, match="unknown catalog extension"):
        Catalog.load(tmp_path / "x.txt")


def test_duplicate_and_empty_ids(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id,title\na,x\nb,y\na,z\n")
    with pytest.raises(CatalogError, match=r"duplicate ids.*'a' \(rows 1 and 3\)"):
        Catalog.load(p)
    p.write_text("id,title\na,x\n,y\n")
    with pytest.raises(CatalogError, match=r"empty id.*row\(s\) 2"):
        Catalog.load(p)


def test_bad_jsonl_names_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "a", "title": "x"}\n{"id": "b", "title": \n')
    with pytest.raises(CatalogError, match=r"c.jsonl:2: invalid JSON"):
        Catalog.load(p)


def test_malformed_phash_and_missing_image_are_per_item_failures(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id,title,phash,image\na,x,zz12,\nb,y,0123456789abcdef,missing.jpg\n")
    cat = Catalog.load(p)
    assert len(cat) == 2  # nobody dropped
    assert cat[0].phash is None and cat[1].phash == "0123456789abcdef"
    assert cat[1].image is None
    msgs = {(f.item_id, f.field): f.message for f in cat.failures}
    assert "malformed phash" in msgs[("a", "phash")]
    assert "image file not found" in msgs[("b", "image")]
    assert all(f.row for f in cat.failures)


def test_ids_stay_strings(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id,title\n0012,x\n12,y\n")
    assert Catalog.load(p).ids == ["0012", "12"]
