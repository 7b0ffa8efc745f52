"""Quantity / unit normalisation (itemrep.concepts.units)."""

from decimal import Decimal

import pytest

from itemrep.concepts.units import format_number, load_units, normalize_quantity, parse_number


@pytest.mark.parametrize(
    "text, expected",
    [
        # volume -> litres; decimal comma; Chinese unit
        ("500ml", "0.5 l"),
        ("500 ML", "0.5 l"),
        ("0,5 L", "0.5 l"),
        ("0.5 liter", "0.5 l"),
        ("500毫升", "0.5 l"),
        ("1.5L", "1.5 l"),
        ("250 cc", "0.25 l"),
        # mass -> kilograms; Indonesian gram/gr/ons; thousands separator
        ("1kg", "1 kg"),
        ("1000 gr", "1 kg"),
        ("1.000 gr", "1 kg"),
        ("1000 gram", "1 kg"),
        ("5 ons", "0.5 kg"),
        ("54g", "0.054 kg"),
        ("1,5 kg", "1.5 kg"),
        ("2斤", "1 kg"),
        # ranges
        ("5-20KG", "5-20 kg"),
        ("2-8 tahun", "2-8 years"),
        # length -> centimetres; dimensions
        ("10 x 20 cm", "10 x 20 cm"),
        ("15x10x5 cm", "15 x 10 x 5 cm"),
        ("100x200mm", "10 x 20 cm"),
        ("10cm x 20cm", "10 x 20 cm"),
        ("1.5 meter", "150 cm"),
        ("32 inch", "32 in"),
        # kept units
        ("64GB", "64 gb"),
        ("5000mAh", "5000 mah"),
        ("12V", "12 v"),
        ("3ply", "3 ply"),
    ],
)
def test_normalize_quantity(text, expected):
    assert normalize_quantity(text) == expected


@pytest.mark.parametrize("text", ["3 in 1", "Seri V", "kaos polos", "", "A52s"])
def test_no_quantity(text):
    assert normalize_quantity(text) is None


def test_equal_quantities_compare_equal():
    assert len({normalize_quantity(s) for s in ["500ml", "500 ML", "0,5 L", "0.5 liter", "500毫升"]}) == 1
    assert len({normalize_quantity(s) for s in ["1kg", "1000 gr", "1.000 gram", "10 ons"]}) == 1


@pytest.mark.parametrize(
    "s, expected",
    [("0,5", "0.5"), ("1.5", "1.5"), ("1.000", "1000"), ("1,250.5", "1250.5"), ("1.250,5", "1250.5"), ("0.500", "0.5"), ("12", "12")],
)
def test_parse_number(s, expected):
    assert parse_number(s) == Decimal(expected)


def test_parse_number_error():
    with pytest.raises(ValueError, match="not a number"):
        parse_number("1..2x")


def test_format_number():
    assert format_number(Decimal("100")) == "100"
    assert format_number(Decimal("0.5000")) == "0.5"
    assert format_number(Decimal("1E+3")) == "1000"


def test_load_units_error(tmp_path):
    bad = tmp_path / "units.tsv"
    bad.write_text("ml\tl\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"units.tsv:1"):
        load_units(bad)
