"""Fixtures of the LLM back-end tests."""

from __future__ import annotations

import pytest
from llmtestlib import ChatServer

from itemrep.catalog import Item


@pytest.fixture
def chat_server():
    with ChatServer() as s:
        yield s


@pytest.fixture
def items() -> list[Item]:
    return [
        Item(item_id="a", title="Botol Minum Tupperware 500ml Merah READY STOCK", row=1),
        Item(item_id="b", title="Samsung Galaxy A52 8/128GB Hitam garansi resmi", row=2),
        Item(item_id="c", title="不锈钢保温杯 500ml 包邮", row=3),
    ]
