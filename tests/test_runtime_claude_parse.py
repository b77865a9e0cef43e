"""OutputReader: line splitting, result detection and events, fed the way a pipe delivers output."""

from __future__ import annotations

import json
import random

from agent_dispatch.runtimes.claude.parse import OutputReader, StreamEvent


def lines(*objs) -> bytes:
    return b"".join(json.dumps(obj).encode() + b"\n" for obj in objs)


INIT = {"type": "system", "subtype": "init", "session_id": "s-1", "tools": []}
TEXT = {"type": "assistant", "message": {"content": [{"type": "text", "text": "thinking…"}]}}
TOOL = {"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "Read", "input": {"path": "/x"}}]}}
USER = {"type": "user", "message": {"content": [{"type": "tool_result", "content": "x" * 5000}]}}
RESULT = {"type": "result", "subtype": "success", "is_error": False, "result": "fine", "session_id": "s-1"}


def read(data: bytes, sizes, *, events: bool = True, keep_raw: bool = False):
    got: list[StreamEvent] = []
    reader = OutputReader(keep_raw=keep_raw, on_event=got.append if events else None)
    pos = 0
    rng = random.Random(7)  # noqa: S311 - reproducible chunk sizes, not security
    while pos < len(data):
        size = sizes if isinstance(sizes, int) else rng.randint(*sizes)
        reader.feed(data[pos : pos + size])
        pos += size
    reader.finish()
    return reader, got


def test_events_are_the_same_however_the_output_is_chunked():
    data = lines(INIT, TEXT, USER, TOOL, TEXT, RESULT)
    expected = ["init", "text", "tool_use", "text", "result"]
    for sizes in (1, 7, (1, 300), 64 * 1024, len(data)):
        reader, got = read(data, sizes)
        assert [e.kind for e in got] == expected, sizes
        assert reader.result["result"] == "fine" and reader.session_id == "s-1"
        assert got[2] == StreamEvent("tool_use", "/x", "Read")


def test_result_is_found_whatever_its_key_order_and_without_a_final_newline():
    reordered = {"session_id": "s-2", "result": "late type", "is_error": False, "type": "result"}
    nested = {"message": {"type": "message", "text": "x" * 50}, "type": "result", "result": "nested", "x": 1}
    for obj, text in ((reordered, "late type"), (nested, "nested")):
        reader, _ = read(lines(INIT, TEXT) + json.dumps(obj).encode(), (1, 50))
        assert reader.result is not None and reader.result["result"] == text


def test_a_result_split_over_lines_is_not_taken_from_a_batch():
    # Each line alone is malformed; joined into one JSON array they would parse as a result.
    data = b'{"type": "assistant", "x": "},{"\n{"type": "assistant", "y": [1\n2], "type": "result"}\n'
    reader, got = read(data, len(data))
    assert reader.result is None


def test_malformed_and_non_object_lines_are_skipped():
    data = b"garbage\n[1,2]\n\n" + lines(TEXT) + b'{"type": "assistant", "message": \n' + lines(RESULT)
    reader, got = read(data, 13)
    assert [e.kind for e in got] == ["text", "result"] and reader.result is not None


def test_without_on_event_the_last_text_is_still_known():
    reader, _ = read(lines(INIT, TEXT, USER, TOOL), (1, 100), events=False)
    assert reader.result is None and reader.last_text == "thinking…" and reader.session_id == "s-1"


def test_json_mode_reads_a_pretty_printed_result():
    data = json.dumps(RESULT, indent=2).encode()
    reader, _ = read(data, 5, events=False, keep_raw=True)
    assert reader.result == RESULT


def test_describe_is_one_short_line():
    event = StreamEvent("text", "a\n\nb   c " + "d" * 500)
    assert event.describe(20) == "a b c ddddddddddddd…"
    assert StreamEvent("tool_use", "ls -la", "Bash").describe() == "Bash: ls -la"
    assert StreamEvent("result", "ok", is_error=True).describe() == "error: ok"


def test_a_burst_of_assistant_lines_yields_its_newest_events_and_the_result():
    from agent_dispatch.runtimes.claude.parse import EVENT_LINES_MAX

    seen = []
    reader = OutputReader(keep_raw=False, on_event=seen.append)
    init = json.dumps({"type": "system", "subtype": "init", "session_id": "s-1"})
    lines = [json.dumps({"type": "assistant", "message": {"content": [{"type": "text", "text": f"step {n}"}]}})
             for n in range(500)]
    result = json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "fin",
                         "session_id": "s-1"})
    reader.feed(("\n".join([init, *lines, result]) + "\n").encode())
    reader.finish()
    texts = [e.text for e in seen if e.kind == "text"]
    assert texts == [f"step {n}" for n in range(500 - EVENT_LINES_MAX, 500)]
    assert reader.session_id == "s-1" and reader.result["result"] == "fin" and reader.last_text == "step 499"


# -- long lines (issue 8, point 16): parsed from their bytes, never decoded or kept twice ------------

LONG = "line of a long report, with \"quotes\" and é\n" * 80_000  # ~3.5 MB, over BIG_LINE


def test_a_long_result_line_is_found_whatever_the_mode_and_chunking():
    long_result = {**RESULT, "result": LONG}
    data = lines(INIT, {"type": "assistant", "message": {"content": [{"type": "text", "text": LONG}]}}, USER,
                 long_result)
    for keep_raw in (False, True):
        for events in (False, True):
            for sizes in (64 * 1024, (1, 1 << 20), len(data)):
                reader, got = read(data, sizes, events=events, keep_raw=keep_raw)
                assert reader.result is not None and reader.result["result"] == LONG, (keep_raw, events, sizes)
                assert reader.session_id == "s-1"
                if events:
                    assert [e.kind for e in got] == ["init", "text", "result"]
                    assert got[1].text.startswith("line of a long report") and len(got[1].text) <= 4000


def test_a_long_tool_result_line_is_skipped_and_a_long_assistant_text_is_the_last_text():
    huge_user = {"type": "user", "message": {"content": [{"type": "tool_result", "content": LONG}]}}
    text = {"type": "assistant", "message": {"content": [{"type": "text", "text": "before " + LONG}]}}
    reader, _ = read(lines(INIT, text, huge_user), 1 << 16, events=False)
    assert reader.result is None and reader.last_text.startswith("before line of a long report")


def test_a_long_line_with_a_lone_surrogate_or_bad_utf8_still_parses():
    line = json.dumps({**RESULT, "result": LONG + "\ud800"}).encode() + b"\n"
    reader, _ = read(line, 1 << 16, events=False, keep_raw=True)
    assert reader.result["result"].endswith("\ud800")
    raw = lines({**RESULT, "result": LONG}).replace(b"report", b"rep\xffrt", 1)
    reader, _ = read(raw, 1 << 16, events=False)
    assert reader.result["result"].startswith("line of a long rep\ufffdrt")


def test_json_mode_still_reads_a_pretty_printed_long_result():
    pretty = json.dumps({**RESULT, "result": LONG}, indent=2).encode()
    reader, _ = read(pretty, 1 << 16, events=False, keep_raw=True)
    assert reader.result is not None and reader.result["result"] == LONG
