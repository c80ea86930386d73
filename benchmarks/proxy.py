"""A reverse proxy that makes a local AWS emulator answer as slowly as AWS does, and counts calls.

moto answers in about a millisecond; AWS takes tens to hundreds. Against moto, doing calls one
after another or several at once makes little difference; behind this proxy, each request waits
`latency` seconds before it is forwarded, so the wall time of a program becomes a function of how
many of its calls depend on each other, as it is on AWS.

Requests are SigV4-signed over the Host header, the path, the query and the body, and the moto
server of the tests checks those signatures: everything is forwarded byte for byte, the Host
header (still naming this proxy) included. Only what concerns this hop is not: `Connection`,
`Keep-Alive` and `Expect` (the proxy has already answered `100 Continue` itself; botocore never
signs `Expect`).

Each client connection gets its own thread and its own kept-alive connection to the emulator, so
concurrent requests wait out their latency concurrently, as they would on AWS. With
`serialize_upstream`, they then reach the emulator one at a time: moto is not thread-safe (5.2's
AttachUserPolicy iterates the managed policies while a concurrent CreatePolicy adds one, and
answers an HTML 500), and one moto process runs one request at a time anyway, its GIL held.

Calls are counted by operation ("iam:CreateUser", "s3:PutObject"): from the `Action` parameter
for the query protocol (IAM, STS), from `X-Amz-Target` for the JSON protocol, and from the
method, path and query for S3's REST protocol; the service is the one named in the signature's
credential scope.

A `behaviour` makes the proxy more than a delay: it sees every request (a `Request`) and may answer
it itself (`before`) or replace the emulator's answer (`after`), which is how the tests make moto
behave more like AWS (tests/awslike.py). With a behaviour, the emulator's answers are read whole
before they are relayed; without one, they are streamed as they come.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

# Headers about this hop only, never forwarded. Transfer-Encoding is forwarded (with the body's
# chunk framing as it came): botocore may have signed it.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "expect"}
# Response headers the proxy sets itself when relaying a body.
_RESPONSE_OWN = {"connection", "keep-alive", "transfer-encoding"}
_MAX_LINE = 65536
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/[0-9]{8}/[^/,\s]+/([^/,\s]+)/aws4_request")
_ACCESS_KEY_ID = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class Request:
    """What a behaviour sees of a request. `query` is the URL's, parsed; `headers` are keyed in
    lower case; `body` is as it came (chunk framing included, if it came chunked)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    operation: str  # "s3:GetObject", "iam:CreateAccessKey", "moto-api"
    service: str  # from the signature's credential scope; "unsigned" without one
    access_key_id: str | None  # whose key signed it
    bucket: str | None  # S3 only, from the path-style path /bucket/key


@dataclass(frozen=True)
class Answer:
    """A whole HTTP response. A Content-Length among `headers` is only kept for HEAD (where it
    describes the body a GET would have); otherwise the proxy sets it from `body`."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class Behaviour(Protocol):
    """Called from the proxy's threads, several at once: must be thread-safe."""

    def before(self, request: Request) -> Answer | None:
        """An answer to send instead of asking the emulator, or None to forward the request."""

    def after(self, request: Request, answer: Answer) -> Answer | None:
        """An answer to send instead of the emulator's `answer`, or None to send it as it is."""


class LatencyProxy:
    """Forward every request to `upstream` (an http:// URL) after `latency` seconds.

    Use as a context manager; `url` is where clients connect. `latency` may be changed while it
    runs; it applies to requests that arrive afterwards.
    """

    def __init__(
        self,
        upstream: str,
        latency: float,
        *,
        serialize_upstream: bool = False,
        host: str = "127.0.0.1",
        behaviour: Behaviour | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"upstream must be an http:// URL, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.latency = latency
        self.behaviour = behaviour
        self._lock = threading.Lock()
        # Held while a request is with the emulator, when it must have one at a time.
        self.upstream_lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if serialize_upstream else contextlib.nullcontext()
        )
        self._calls: Counter[str] = Counter()
        self._in_flight = 0
        self._peak_in_flight = 0
        self._server = _Server((host, 0), _Handler)
        self._server.proxy = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LatencyProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="latency-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Counting

    def calls(self) -> Counter[str]:
        """Requests answered since the last reset, by operation (those a behaviour answered
        itself included: on AWS, a refusal is a call too)."""
        with self._lock:
            return Counter(self._calls)

    @property
    def peak_in_flight(self) -> int:
        """The most requests this proxy held at once since the last reset."""
        with self._lock:
            return self._peak_in_flight

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._peak_in_flight = self._in_flight

    @contextlib.contextmanager
    def _tracking(self, operation: str) -> Iterator[None]:
        with self._lock:
            self._calls[operation] += 1
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: LatencyProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client gone in the middle of its connection (the crash tests SIGKILL theirs) is not
        # the proxy's error: no traceback for it on the test run's output.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1: keep-alive, as boto3 expects; every response we send carries a length or chunks.
    protocol_version = "HTTP/1.1"
    # An idle client connection is closed after this long; urllib3 reconnects transparently.
    timeout = 120
    # Headers and body leave in separate writes: with Nagle's algorithm on, the body would wait
    # for the client's delayed ACK of the headers (40 ms on Linux), a latency nobody asked for.
    disable_nagle_algorithm = True
    server: _Server
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a benchmark makes thousands of requests."""

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None

    def _forward(self) -> None:
        try:
            body = _read_body(self.rfile, self.headers)
        except (ConnectionError, ValueError):  # a broken request: nothing sensible to forward
            self.close_connection = True
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        operation = operation_of(self.command, self.path, headers, b"" if chunked else body)
        proxy = self.server.proxy
        with proxy._tracking(operation):
            time.sleep(proxy.latency)
            if proxy.behaviour is None:
                with proxy.upstream_lock:
                    self._forward_upstream(body)
            else:
                request = _request(self.command, self.path, headers, body, operation)
                self._behave(proxy.behaviour, request)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _forward

    def _behave(self, behaviour: Behaviour, request: Request) -> None:
        try:
            answer = behaviour.before(request)
            if answer is None:
                with self.server.proxy.upstream_lock:
                    answer = self._ask_upstream(request.body)
                if answer is None:
                    return  # the upstream failed; the client has its 502
                answer = behaviour.after(request, answer) or answer
        except Exception as error:
            # A bug in a behaviour must surface as such, not as a dropped connection that the
            # client would retry and then report as a network fault.
            self.send_error(500, f"proxy behaviour failed: {error!r}")
            raise
        self._send(answer)

    def _ask_upstream(self, body: bytes) -> Answer | None:
        """The emulator's whole answer (small, here), or None once the client has a 502."""
        try:
            response = self._exchange(body)
            content = response.read()
        except (OSError, http.client.HTTPException) as error:
            # Half a response may still be in flight on this connection: never reuse it.
            self._drop_upstream()
            self.send_error(502, f"upstream failed: {error}")
            return None
        if response.will_close:
            self._drop_upstream()
        return Answer(response.status, response.getheaders(), content)

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _send(self, answer: Answer) -> None:
        no_body = self.command == "HEAD" or answer.status in (204, 304) or answer.status < 200
        self.send_response_only(answer.status)
        length: str | None = None
        for name, value in answer.headers:
            lowered = name.lower()
            if lowered == "content-length":
                length = value
            elif lowered not in _RESPONSE_OWN:
                self.send_header(name, value)
        if self.command == "HEAD":
            self.send_header("Content-Length", length or "0")
        elif not no_body:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if not no_body:
            self.wfile.write(answer.body)

    def _forward_upstream(self, body: bytes) -> None:
        try:
            response = self._exchange(body)
        except (OSError, http.client.HTTPException) as error:
            self.send_error(502, f"upstream failed: {error}")
            return
        try:
            self._relay(response)
        finally:
            response.close()
            if response.will_close and self._upstream is not None:
                self._upstream.close()
                self._upstream = None

    def _exchange(self, body: bytes) -> http.client.HTTPResponse:
        """Send the request upstream as it came. A kept-alive connection the emulator has closed
        meanwhile fails on first use; then the request is sent once more on a new one (it never
        reached the emulator, so this is not a retry of anything it saw)."""
        while True:
            reused = self._upstream is not None
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(
                    *self.server.proxy.upstream, timeout=300
                )
            connection = self._upstream
            try:
                connection.putrequest(
                    self.command, self.path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in self.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        connection.putheader(name, value)
                connection.endheaders(body or None)
                return connection.getresponse()
            except (ConnectionError, http.client.BadStatusLine):
                connection.close()
                self._upstream = None
                if not reused:
                    raise

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        for name, value in response.getheaders():
            if name.lower() not in _RESPONSE_OWN:
                self.send_header(name, value)
        if no_body:
            self.end_headers()
            return
        if response.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while piece := response.read1(_MAX_LINE):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        if response.getheader("Content-Length") is None:
            # Delimited by the upstream closing its connection: give the client a length instead.
            rest = response.read()
            self.send_header("Content-Length", str(len(rest)))
            self.end_headers()
            self.wfile.write(rest)
            return
        self.end_headers()
        while piece := response.read(_MAX_LINE):
            self.wfile.write(piece)


def _read_body(stream: io.BufferedIOBase, headers: Message) -> bytes:
    """The request body exactly as sent, chunk framing and trailers included."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        raw = bytearray()
        while True:
            line = _read_line(stream)
            raw += line
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            raw += _read_exactly(stream, size + 2)  # the data and its CRLF
        while True:  # trailers, then the empty line that ends the body
            line = _read_line(stream)
            raw += line
            if line in (b"\r\n", b"\n"):
                return bytes(raw)
    length = int(headers.get("Content-Length") or 0)
    return _read_exactly(stream, length)


def _read_line(stream: io.BufferedIOBase) -> bytes:
    line = stream.readline(_MAX_LINE)
    if not line.endswith(b"\n"):
        raise ConnectionError("client closed the connection inside a chunked body")
    return line


def _read_exactly(stream: io.BufferedIOBase, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ConnectionError(f"client sent {len(data)} of {size} body bytes")
    return data


def _request(
    method: str, target: str, headers: Mapping[str, str], body: bytes, operation: str
) -> Request:
    parts = urlsplit(target)
    authorization = headers.get("authorization", "")
    scope = _CREDENTIAL_SCOPE.search(authorization)
    key = _ACCESS_KEY_ID.search(authorization)
    service = scope.group(1) if scope else "unsigned"
    bucket = None
    if operation.startswith("s3:"):
        bucket = parts.path.lstrip("/").partition("/")[0] or None
    return Request(
        method=method,
        path=parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=headers,
        body=body,
        operation=operation,
        service=service,
        access_key_id=key.group(1) if key else None,
        bucket=bucket,
    )


# Operation names


def operation_of(method: str, target: str, headers: Mapping[str, str], body: bytes) -> str:
    """ "service:Operation" for a request; `headers` keyed in lower case."""
    parts = urlsplit(target)
    if parts.path.startswith("/moto-api/"):
        return "moto-api"
    scope = _CREDENTIAL_SCOPE.search(headers.get("authorization", ""))
    service = scope.group(1) if scope else "unsigned"
    amz_target = headers.get("x-amz-target")
    if amz_target:
        return f"{service}:{amz_target.rsplit('.', 1)[-1]}"
    query = parse_qs(parts.query, keep_blank_values=True)
    action = query.get("Action")
    if action is None and headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    if action:
        return f"{service}:{action[0]}"
    if service in ("s3", "unsigned"):
        return f"s3:{s3_operation(method, parts.path, query, headers)}"
    return f"{service}:{method} {parts.path}"


# (sub-resource in the query, method) -> operation, for a bucket and for an object.
_BUCKET_OPERATIONS = {
    ("tagging", "PUT"): "PutBucketTagging",
    ("tagging", "GET"): "GetBucketTagging",
    ("tagging", "DELETE"): "DeleteBucketTagging",
    ("policy", "PUT"): "PutBucketPolicy",
    ("policy", "GET"): "GetBucketPolicy",
    ("policy", "DELETE"): "DeleteBucketPolicy",
    ("publicAccessBlock", "PUT"): "PutPublicAccessBlock",
    ("publicAccessBlock", "GET"): "GetPublicAccessBlock",
    ("publicAccessBlock", "DELETE"): "DeletePublicAccessBlock",
    ("ownershipControls", "PUT"): "PutBucketOwnershipControls",
    ("ownershipControls", "GET"): "GetBucketOwnershipControls",
    ("ownershipControls", "DELETE"): "DeleteBucketOwnershipControls",
    ("encryption", "PUT"): "PutBucketEncryption",
    ("encryption", "GET"): "GetBucketEncryption",
    ("encryption", "DELETE"): "DeleteBucketEncryption",
    ("versioning", "PUT"): "PutBucketVersioning",
    ("versioning", "GET"): "GetBucketVersioning",
    ("acl", "PUT"): "PutBucketAcl",
    ("acl", "GET"): "GetBucketAcl",
    ("location", "GET"): "GetBucketLocation",
    ("versions", "GET"): "ListObjectVersions",
    ("uploads", "GET"): "ListMultipartUploads",
    ("delete", "POST"): "DeleteObjects",
}
_BUCKET_PLAIN = {
    "PUT": "CreateBucket",
    "DELETE": "DeleteBucket",
    "HEAD": "HeadBucket",
    "GET": "ListObjects",
}
_OBJECT_OPERATIONS = {
    ("uploadId", "PUT"): "UploadPart",
    ("uploadId", "POST"): "CompleteMultipartUpload",
    ("uploadId", "DELETE"): "AbortMultipartUpload",
    ("uploadId", "GET"): "ListParts",
    ("uploads", "POST"): "CreateMultipartUpload",
    ("tagging", "PUT"): "PutObjectTagging",
    ("tagging", "GET"): "GetObjectTagging",
    ("tagging", "DELETE"): "DeleteObjectTagging",
    ("acl", "PUT"): "PutObjectAcl",
    ("acl", "GET"): "GetObjectAcl",
}
_OBJECT_PLAIN = {
    "PUT": "PutObject",
    "GET": "GetObject",
    "HEAD": "HeadObject",
    "DELETE": "DeleteObject",
}


def s3_operation(
    method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]
) -> str:
    """S3's operation from a path-style REST request (what an emulator endpoint gets)."""
    if "x-id" in query:  # botocore names some operations outright
        return query["x-id"][0]
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{method} /"
    if key:
        for (subresource, verb), operation in _OBJECT_OPERATIONS.items():
            if subresource in query and verb == method:
                return operation
        if method == "PUT" and "x-amz-copy-source" in headers:
            return "CopyObject"
        return _OBJECT_PLAIN.get(method, f"{method} object")
    for (subresource, verb), operation in _BUCKET_OPERATIONS.items():
        if subresource in query and verb == method:
            return operation
    if method == "GET" and query.get("list-type") == ["2"]:
        return "ListObjectsV2"
    if query:
        return f"{method} bucket?{'&'.join(sorted(query))}"
    return _BUCKET_PLAIN.get(method, f"{method} bucket")
