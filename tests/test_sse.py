"""The shared server-sent-events reader: the format's rules and the liberties real services take."""

from __future__ import annotations

import json

import pytest

from deployflow import RemoteError
from deployflow.targets._sse import ServerSentEvent, iter_events, iter_json_events


def lines(text: str) -> list[bytes]:
    """The body split as requests' iter_lines splits it (line ends removed)."""
    return [line.encode() for line in text.splitlines()]


def test_events_with_and_without_a_space_after_data():
    body = 'data: {"a": 1}\n\ndata:{"a": 2}\n\ndata:  {"a": 3}\n\n'
    assert [e.data for e in iter_events(lines(body))] == ['{"a": 1}', '{"a": 2}', ' {"a": 3}']
    assert list(iter_json_events(lines(body))) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_keep_alives_and_comments_are_skipped():
    body = ': ping\n\n\n\ndata: {"n": 1}\n\n: keep-alive\n\n\n\ndata: {"n": 2}\n\n'
    assert list(iter_json_events(lines(body))) == [{"n": 1}, {"n": 2}]


def test_done_ends_the_stream_and_later_events_are_not_read():
    body = 'data: {"n": 1}\n\ndata: [DONE]\n\ndata: {"n": 2}\n\n'
    assert list(iter_json_events(lines(body))) == [{"n": 1}]
    assert list(iter_json_events(lines('data:[DONE]\n\n'))) == []


def test_multi_line_data_is_joined_and_a_json_value_may_span_lines():
    body = 'data: {"text":\ndata:  "two lines"}\n\n'
    assert list(iter_json_events(lines(body))) == [{"text": "two lines"}]
    assert [e.data for e in iter_events(lines("data: a\ndata: b\n\n"))] == ["a\nb"]


def test_events_without_blank_lines_between_them_are_split():
    body = 'data: {"n": 1}\ndata: {"n": 2}\ndata: [DONE]\n'
    assert list(iter_json_events(lines(body))) == [{"n": 1}, {"n": 2}]


def test_crlf_and_bare_cr_line_ends_and_a_byte_order_mark():
    raw = b'\xef\xbb\xbfdata: {"n": 1}\r\n\r\ndata: {"n": 2}\r\rdata: [DONE]\r\n\r\n'
    assert list(iter_json_events([raw])) == [{"n": 1}, {"n": 2}]


def test_a_last_event_without_its_blank_line_is_still_delivered():
    assert list(iter_json_events(lines('data: {"n": 1}'))) == [{"n": 1}]


def test_event_type_and_id_fields_and_unknown_fields():
    body = "id: 7\nevent: delta\nretry: 100\nfoo: bar\ndata: {}\n\ndata: {}\n\n"
    events = list(iter_events(lines(body)))
    assert events == [ServerSentEvent("{}", "delta", "7"), ServerSentEvent("{}", "message", "7")]


def test_newline_delimited_json_is_read_too():
    body = '{"n": 1}\n{"n": 2}\n'
    assert list(iter_json_events(lines(body))) == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize(
    "error_event, message",
    [
        ('data: {"error": {"message": "The server had an error", "type": "server_error"}}', "The server had an error"),
        ('data: {"error_code": "INTERNAL_ERROR", "message": "model crashed"}', "model crashed"),
        ('event: error\ndata: {"detail": "provider failed"}', "provider failed"),
        ("event: error\ndata: plain words", "plain words"),
    ],
)
def test_an_error_event_mid_stream_raises_after_the_chunks_before_it(error_event, message):
    body = f'data: {{"n": 1}}\n\n{error_event}\n\ndata: {{"n": 2}}\n\n'
    seen = []
    with pytest.raises(RemoteError, match=message) as caught:
        for chunk in iter_json_events(lines(body), what="POST /x"):
            seen.append(chunk)
    assert seen == [{"n": 1}]
    assert "POST /x" in str(caught.value)
    assert not caught.value.retryable


def test_a_null_error_field_is_not_an_error():
    assert list(iter_json_events(lines('data: {"error": null, "n": 1}\n\n'))) == [{"error": None, "n": 1}]


def test_data_that_is_not_json_raises_with_an_excerpt():
    with pytest.raises(RemoteError, match="not JSON: 'hello there'"):
        list(iter_json_events(lines("data: hello there\n\n")))


def test_an_error_message_never_shows_a_registered_secret():
    from deployflow.redaction import register_secret

    secret = "sk-streamsecret0123456789abcdef"
    register_secret(secret)
    body = "data: " + json.dumps({"error": {"message": f"bad key {secret}"}}) + "\n\n"
    with pytest.raises(RemoteError) as caught:
        list(iter_json_events(lines(body)))
    assert secret not in str(caught.value) and secret not in repr(caught.value)
    assert secret not in (caught.value.body or "")
