"""The shared NATS client's header parser gives what nats-py's own gives, for
the header blocks real messages carry and for malformed ones."""

from __future__ import annotations

import pytest
from nats.aio.client import Client as NatsPyClient

from murmur_core.nats import Client

BLOCKS = [
    # What a stream's RePublish delivers, with the pipeline's own headers.
    b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
    b"Nats-Msg-Id: e1.bob\r\nNats-Stream: MURMUR_USER\r\n"
    b"Nats-Subject: murmur.user.bob.post.created\r\nNats-Sequence: 42\r\n"
    b"Nats-Time-Stamp: 2026-12-01T21:00:00.123456789Z\r\nNats-Last-Sequence: 41\r\n\r\n",
    b"a:b\r\nc:\tvalue with spaces \r\n\r\n",
    b"Empty:\r\nNo-Colon-Line\r\n: no name\r\n\r\n",
    b"Bad Name: x\r\nBad\tTab: y\r\nGood: z\r\n\r\n",
    b"Caf\xc3\xa9: non-ascii name\r\nValue: caf\xc3\xa9 \xff\r\n\r\n",
    b"Dup: 1\r\nDup: 2\r\n\r\n",
    b"",
]


@pytest.mark.parametrize("block", BLOCKS)
def test_header_blocks_parse_as_nats_py_parses_them(block: bytes) -> None:
    assert Client._parse_header_lines(block) == NatsPyClient._parse_header_lines(block)


def test_a_republished_block_keeps_every_header() -> None:
    headers = Client._parse_header_lines(BLOCKS[0])
    assert headers["Nats-Sequence"] == "42"
    assert headers["Nats-Msg-Id"] == "e1.bob"
    assert len(headers) == 7
