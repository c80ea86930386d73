"""The benchmark's latency proxy: it adds its latency to every request, overlaps concurrent ones,
forwards requests byte for byte (they are SigV4-signed) and names the operations it forwards; a
behaviour may answer in the emulator's place or replace its answers."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from benchmarks.proxy import Answer, LatencyProxy, Request, operation_of, s3_operation

LATENCY = 0.1
BODY = bytes(range(256)) * 40  # every byte value, over several TCP segments


class Echo(BaseHTTPRequestHandler):
    """Answers with what it received, the body as raw as it came (chunk framing included)."""

    protocol_version = "HTTP/1.1"
    url: str
    connections: set[int]
    # requests being answered now, and the most at once
    busy: dict[str, int]
    busy_lock: threading.Lock

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _raw_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") == "chunked":
            raw = b""
            while not raw.endswith(b"0\r\n\r\n"):
                raw += self.rfile.readline()
            return raw
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self) -> None:
        self.connections.add(self.client_address[1])
        if self.path == "/slow":
            with self.busy_lock:
                self.busy["now"] += 1
                self.busy["peak"] = max(self.busy["peak"], self.busy["now"])
            time.sleep(0.05)
            with self.busy_lock:
                self.busy["now"] -= 1
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": list(self.headers.items()),
            "body": self._raw_body().hex(),
        }
        payload = json.dumps(seen).encode()
        self.send_response(200)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(payload), 1000):
                piece = payload[start : start + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer


@pytest.fixture
def echo() -> Iterator[type[Echo]]:
    handler = type(
        "EchoHandler",
        (Echo,),
        {"connections": set(), "busy": {"now": 0, "peak": 0}, "busy_lock": threading.Lock()},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def proxy(echo: type[Echo]) -> Iterator[LatencyProxy]:
    with LatencyProxy(echo.url, LATENCY) as running:
        yield running


def _connect(proxy: LatencyProxy) -> http.client.HTTPConnection:
    host, port = proxy.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


def _exchange(
    connection: http.client.HTTPConnection, method: str, path: str, **kwargs: Any
) -> tuple[http.client.HTTPResponse, bytes]:
    connection.request(method, path, **kwargs)
    response = connection.getresponse()
    return response, response.read()


def test_every_request_waits_the_latency(proxy: LatencyProxy) -> None:
    with closing(_connect(proxy)) as connection:
        for _ in range(3):
            started = time.perf_counter()
            response, _ = _exchange(connection, "GET", "/")
            assert response.status == 200
            assert time.perf_counter() - started >= LATENCY


def test_concurrent_requests_wait_concurrently(proxy: LatencyProxy) -> None:
    """Five requests on five connections: one after another they would take 5 latencies at the
    very least; at once, about one."""
    proxy.latency = 0.3
    answers: list[int] = []

    def one() -> None:
        with closing(_connect(proxy)) as connection:
            answers.append(_exchange(connection, "GET", "/")[0].status)

    elapsed = _at_once(5, one)
    assert answers == [200] * 5
    assert proxy.latency <= elapsed < 5 * proxy.latency
    assert proxy.peak_in_flight > 1


def _at_once(count: int, work: Callable[[], None]) -> float:
    threads = [threading.Thread(target=work) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def test_a_serialized_upstream_gets_one_request_at_a_time(echo: type[Echo]) -> None:
    """moto is not thread-safe: latencies are waited at once, the emulator is asked in turn."""
    answers: list[int] = []
    with LatencyProxy(echo.url, 0.3, serialize_upstream=True) as proxy:

        def one() -> None:
            with closing(_connect(proxy)) as connection:
                answers.append(_exchange(connection, "GET", "/slow")[0].status)

        elapsed = _at_once(4, one)
        assert proxy.peak_in_flight > 1
    assert answers == [200] * 4
    assert echo.busy["peak"] == 1
    assert elapsed < 4 * 0.3  # the latencies overlapped all the same


def test_requests_are_forwarded_byte_for_byte(proxy: LatencyProxy) -> None:
    headers = {
        # Signed by botocore: it must reach the emulator as the client sent it.
        "Host": "s3.example.test:4566",
        "X-Amz-Date": "20240101T000000Z",
        "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc",
        "Content-Type": "application/octet-stream",
        "Expect": "100-continue",
    }
    with closing(_connect(proxy)) as connection:
        connection.putrequest("PUT", "/bucket/a%20key?x-id=PutObject", skip_host=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(BODY)))
        connection.endheaders()
        # The proxy answers 100 Continue itself before reading the body.
        connection.send(BODY)
        response = connection.getresponse()
        seen = json.loads(response.read())
    assert response.status == 200
    assert seen["method"] == "PUT"
    assert seen["path"] == "/bucket/a%20key?x-id=PutObject"
    assert bytes.fromhex(seen["body"]) == BODY
    forwarded = [(name, value) for name, value in seen["headers"] if name != "Accept-Encoding"]
    expected = [(n, v) for n, v in headers.items() if n != "Expect"]
    assert forwarded == [*expected, ("Content-Length", str(len(BODY)))]
    assert proxy.calls() == {"s3:PutObject": 1}


def test_chunked_bodies_keep_their_framing(proxy: LatencyProxy) -> None:
    with closing(_connect(proxy)) as connection:
        connection.request("POST", "/chunked", body=iter([BODY[:300], BODY[300:]]))
        response = connection.getresponse()
        seen = json.loads(response.read())  # relayed chunked, as it came
    assert response.status == 200
    assert ("Transfer-Encoding", "chunked") in [tuple(pair) for pair in seen["headers"]]
    # http.client writes chunk sizes in upper-case hex; they arrive so.
    framed = b"12C\r\n" + BODY[:300] + b"\r\n%X\r\n" % (len(BODY) - 300) + BODY[300:]
    assert bytes.fromhex(seen["body"]) == framed + b"\r\n0\r\n\r\n"


def test_one_upstream_connection_per_kept_alive_client(
    proxy: LatencyProxy, echo: type[Echo]
) -> None:
    with closing(_connect(proxy)) as connection:
        head, body = _exchange(connection, "HEAD", "/bucket")
        assert head.status == 200
        assert body == b""
        assert int(head.getheader("Content-Length") or 0) > 0
        for _ in range(3):
            assert _exchange(connection, "GET", "/bucket/key")[0].status == 200
    assert len(echo.connections) == 1
    assert proxy.calls() == {"s3:HeadBucket": 1, "s3:GetObject": 3}


def test_query_protocol_calls_are_named_by_action() -> None:
    headers = {
        "authorization": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/iam/"
        "aws4_request, SignedHeaders=host, Signature=abc",
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
    }
    body = b"Action=CreateUser&Version=2010-05-08&UserName=job-x-writer"
    assert operation_of("POST", "/", headers, body) == "iam:CreateUser"
    target = {**headers, "x-amz-target": "AWSSecurityTokenServiceV20110615.GetCallerIdentity"}
    assert operation_of("POST", "/", target, b"{}") == "iam:GetCallerIdentity"
    assert operation_of("POST", "/moto-api/reset", {}, b"") == "moto-api"


@pytest.mark.parametrize(
    ("method", "target", "operation"),
    [
        ("GET", "/", "ListBuckets"),
        ("PUT", "/b", "CreateBucket"),
        ("HEAD", "/b", "HeadBucket"),
        ("DELETE", "/b", "DeleteBucket"),
        ("PUT", "/b?tagging", "PutBucketTagging"),
        ("GET", "/b?tagging", "GetBucketTagging"),
        ("PUT", "/b?publicAccessBlock", "PutPublicAccessBlock"),
        ("PUT", "/b?ownershipControls", "PutBucketOwnershipControls"),
        ("PUT", "/b?encryption", "PutBucketEncryption"),
        ("PUT", "/b?policy", "PutBucketPolicy"),
        ("GET", "/b?versions", "ListObjectVersions"),
        ("GET", "/b?uploads", "ListMultipartUploads"),
        ("POST", "/b?delete", "DeleteObjects"),
        ("GET", "/b?list-type=2&max-keys=1", "ListObjectsV2"),
        ("PUT", "/b/probe/k.txt", "PutObject"),
        ("GET", "/b/probe/k.txt", "GetObject"),
        ("HEAD", "/b/probe/k.txt", "HeadObject"),
        ("DELETE", "/b/probe/k.txt", "DeleteObject"),
        ("DELETE", "/b/k?uploadId=1", "AbortMultipartUpload"),
        ("GET", "/b/k?x-id=GetObject", "GetObject"),
    ],
)
def test_s3_operations_are_named_from_the_request(method: str, target: str, operation: str) -> None:
    path, _, query = target.partition("?")
    parsed = dict(
        (name, [value]) for name, _, value in (part.partition("=") for part in query.split("&"))
    )
    assert s3_operation(method, path, parsed if query else {}, {}) == operation


class Recorder:
    """A behaviour that keeps what it saw, answers paths under /refuse itself and turns the
    emulator's answers for /replace into a 418."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.answers: list[Answer] = []

    def before(self, request: Request) -> Answer | None:
        self.seen.append(request)
        if request.path.startswith("/refuse"):
            return Answer(403, [("Content-Type", "text/plain")], b"refused here")
        return None

    def after(self, request: Request, answer: Answer) -> Answer | None:
        self.answers.append(answer)
        if request.path.startswith("/replace"):
            return Answer(418, [], b"short and stout")
        return None


S3_SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=abc",
    "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD",
}


@pytest.fixture
def behaving(echo: type[Echo]) -> Iterator[tuple[LatencyProxy, Recorder]]:
    recorder = Recorder()
    with LatencyProxy(echo.url, 0, behaviour=recorder) as running:
        yield running, recorder


def test_a_behaviour_sees_each_request_parsed(behaving: tuple[LatencyProxy, Recorder]) -> None:
    proxy, recorder = behaving
    with closing(_connect(proxy)) as connection:
        response, body = _exchange(
            connection, "PUT", "/bucket/a/key?tagging&x=1", body=b"<Tagging/>", headers=S3_SIGNED
        )
    assert response.status == 200
    assert json.loads(body)["body"] == b"<Tagging/>".hex()  # forwarded, answered whole
    [request] = recorder.seen
    assert (request.method, request.path, request.body) == ("PUT", "/bucket/a/key", b"<Tagging/>")
    assert request.query == {"tagging": [""], "x": ["1"]}
    assert request.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert request.operation == "s3:PutObjectTagging"
    assert (request.service, request.access_key_id, request.bucket) == (
        "s3",
        "AKIAEXAMPLE",
        "bucket",
    )
    [answer] = recorder.answers
    assert answer.status == 200
    assert json.loads(answer.body)["path"] == "/bucket/a/key?tagging&x=1"


def test_a_behaviour_answers_without_the_emulator(
    behaving: tuple[LatencyProxy, Recorder], echo: type[Echo]
) -> None:
    proxy, recorder = behaving
    with closing(_connect(proxy)) as connection:
        response, body = _exchange(connection, "GET", "/refuse", headers=S3_SIGNED)
        assert (response.status, body) == (403, b"refused here")
        # The connection stays usable: the made-up answer carried its length.
        head, nothing = _exchange(connection, "HEAD", "/refuse/it", headers=S3_SIGNED)
        assert (head.status, nothing, head.getheader("Content-Length")) == (403, b"", "0")
    assert echo.connections == set()
    assert recorder.answers == []
    assert proxy.calls() == {"s3:ListObjects": 1, "s3:HeadObject": 1}


def test_a_behaviour_replaces_the_emulators_answer(
    behaving: tuple[LatencyProxy, Recorder],
) -> None:
    proxy, recorder = behaving
    with closing(_connect(proxy)) as connection:
        response, body = _exchange(connection, "GET", "/replace", headers=S3_SIGNED)
        assert (response.status, body) == (418, b"short and stout")
        # HEAD keeps the emulator's Content-Length (that of the body a GET would get), and no
        # body is sent: the next answer on this connection is read correctly.
        head, nothing = _exchange(connection, "HEAD", "/bucket", headers=S3_SIGNED)
        assert (head.status, nothing) == (200, b"")
        assert int(head.getheader("Content-Length") or 0) > 0
        chunked, whole = _exchange(connection, "GET", "/chunked", headers=S3_SIGNED)
    assert chunked.status == 200
    assert chunked.getheader("Transfer-Encoding") is None  # re-sent whole, with a length
    assert json.loads(whole)["path"] == "/chunked"
    assert [answer.status for answer in recorder.answers] == [200, 200, 200]


def test_unsigned_requests_name_no_key_and_no_service(
    behaving: tuple[LatencyProxy, Recorder],
) -> None:
    proxy, recorder = behaving
    with closing(_connect(proxy)) as connection:
        _exchange(connection, "POST", "/moto-api/reset")
    [request] = recorder.seen
    assert (request.operation, request.service, request.access_key_id, request.bucket) == (
        "moto-api",
        "unsigned",
        None,
        None,
    )


def test_a_client_killed_on_a_kept_alive_connection_leaves_no_traceback(
    proxy: LatencyProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    """The crash tests SIGKILL clients that hold connections to the AWS-like layer: the kernel
    resets them, and the proxy says nothing of it (it printed a traceback per reset)."""
    connection = _connect(proxy)
    assert _exchange(connection, "GET", "/")[0].status == 200
    sock = connection.sock
    assert sock is not None
    # What a killed process's socket does: closed with unread data or linger 0, it is reset.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    time.sleep(0.5)  # the proxy's thread, waiting on the next request, meets the reset
    assert "Traceback" not in capsys.readouterr().err
    with closing(_connect(proxy)) as another:  # and it serves on
        assert _exchange(another, "GET", "/")[0].status == 200
