"""A small OpenAI-compatible server on 127.0.0.1, for tests, benchmarks and trying ESIM offline.

It answers ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` (and ``GET /v1/models``).
By default a chat answer states the user's interests from the labels of the items in the prompt
(deterministic JSON), and an embedding is a hashed bag of character trigrams. A *responder*
function can script any other behaviour per request: prose, code fences, garbage, empty answers,
HTTP errors with ``Retry-After``, delays, a connection held open past the client's timeout, or a
dropped connection; :class:`Reply`'s constructors name the fault modes (``garbage``, ``empty``,
``null_content``, ``html``, ``error``, ``hanging``) and :func:`closed_port_url` gives an address
where nothing listens (connection refused). It binds to the loopback interface only and refuses requests past
``max_requests``; it is a test double for the HTTP path, not an LLM.

    python tests/support/loopback.py --port 8000 --delay 0.2
    python run_recbole_eimf.py --stage=esim --dataset=ml-100k --llm_base_url=http://127.0.0.1:8000/v1 \\
        --llm_model=loopback --llm_api_key_env=None
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Union

HOST = "127.0.0.1"
_ITEMS = re.compile(r"<items>\s*\n(.*?)\n\s*</items>", re.S)


@dataclass
class Request:
    index: int                 # 0-based order of arrival
    path: str
    body: dict
    headers: Dict[str, str]

    @property
    def user_message(self) -> str:
        messages = self.body.get("messages") or []
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        return users[-1] if users else ""


@dataclass
class Reply:
    """What the server does with one request."""

    content: Optional[str] = None          # chat: the assistant message (None: the default answer)
    status: int = 200
    body: Optional[Union[dict, str]] = None  # overrides the whole response body
    headers: Dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                     # seconds to wait before answering
    hang: float = 0.0                      # seconds to hold the connection, then close it unanswered
    drop: bool = False                     # close the connection at once, unanswered
    content_type: str = "application/json"

    @classmethod
    def garbage(cls) -> "Reply":
        return cls(content="I'd rather talk about the weather.")

    @classmethod
    def empty(cls) -> "Reply":
        return cls(content="")

    @classmethod
    def null_content(cls) -> "Reply":
        """A well-formed completion whose message content is null (as after a refusal)."""
        message = {"role": "assistant", "content": None}
        return cls(body={"id": "chatcmpl-null", "object": "chat.completion", "created": 0, "model": "loopback",
                         "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    @classmethod
    def html(cls) -> "Reply":
        """A proxy's login or error page, sent with HTTP 200."""
        return cls(body="<html><body><h1>Please sign in</h1></body></html>", content_type="text/html")

    @classmethod
    def error(cls, status: int = 500, **headers: str) -> "Reply":
        return cls(status=status, headers=dict(headers))

    @classmethod
    def hanging(cls, seconds: float = 10.0) -> "Reply":
        return cls(hang=seconds)


Responder = Callable[[Request], Optional[Reply]]


def default_interests(prompt: str, max_interests: int = 3) -> str:
    """A JSON answer naming the most frequent labels of the items in ``prompt`` (or their titles)."""
    match = _ITEMS.search(prompt)
    lines = match.group(1).splitlines() if match else []
    labels: Counter = Counter()
    titles = []
    for line in lines:
        fields = [f.strip() for f in re.sub(r"^\s*\d+\.\s*", "", line).split(" | ")]
        titles.append(fields[0])
        for extra in fields[1:]:
            labels.update(x.strip() for x in extra.split(",") if x.strip())
    names = [name for name, _ in sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))][:max_interests]
    names = names or titles[-max_interests:]
    interests = [{"name": f"{name} fan", "description": f"Returns to {name} again and again."} for name in names]
    return json.dumps({"interests": interests})


def hashed_embedding(text: str, dim: int = 32) -> List[float]:
    vector = [0.0] * dim
    padded = f"  {text.lower()}  "
    for k in range(len(padded) - 2):
        bucket = int(hashlib.md5(padded[k:k + 3].encode()).hexdigest()[:8], 16) % dim
        vector[bucket] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: every request is refused at once."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    return f"http://{HOST}:{port}/v1"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client that went away is no news
        pass


class LoopbackLLMServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 (module doc). Use as a context manager."""

    def __init__(
        self,
        responder: Optional[Responder] = None,
        delay: float = 0.0,
        max_requests: int = 10_000,
        max_hold: float = 10.0,
        embedding_dim: int = 32,
        port: int = 0,
    ) -> None:
        self.responder = responder
        self.delay = delay
        self.max_requests = max_requests
        self.max_hold = max_hold
        self.embedding_dim = embedding_dim
        self.requests: List[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _QuietServer((HOST, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def chat_requests(self) -> List[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> "LoopbackLLMServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "LoopbackLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- request handling ---------------------------------------------------------------------

    def _record(self, path: str, body: dict, headers: Dict[str, str]) -> Optional[Request]:
        with self._lock:
            if len(self.requests) >= self.max_requests:
                return None
            request = Request(index=len(self.requests), path=path, body=body, headers=headers)
            self.requests.append(request)
            return request

    def _default_reply(self, request: Request) -> Reply:
        return Reply(delay=self.delay)

    def _body_for(self, request: Request, reply: Reply) -> Union[dict, str]:
        if reply.body is not None:
            return reply.body
        if reply.status != 200:
            return {"error": {"message": f"loopback error {reply.status}", "type": "loopback", "code": reply.status}}
        model = request.body.get("model", "loopback")
        if request.path.endswith("/embeddings"):
            inputs = request.body.get("input", [])
            inputs = [inputs] if isinstance(inputs, str) else list(inputs)
            data = [{"object": "embedding", "index": k, "embedding": hashed_embedding(str(t), self.embedding_dim)}
                    for k, t in enumerate(inputs)]
            tokens = sum(len(str(t)) // 4 + 1 for t in inputs)
            return {"object": "list", "data": data, "model": model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        content = reply.content if reply.content is not None else default_interests(request.user_message)
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 + 1 for m in request.body.get("messages", []))
        completion_tokens = len(content) // 4 + 1
        return {
            "id": f"chatcmpl-loopback-{request.index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: Union[dict, str], headers: Dict[str, str],
                      content_type: str = "application/json") -> None:
                payload = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "loopback", "object": "model"}]}, {})
                else:
                    self._send(404, {"error": {"message": "not found"}}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if len(raw) < length:  # the client went away mid-request
                    self.close_connection = True
                    return
                try:
                    body = json.loads(raw.decode("utf-8") or "{}")
                except ValueError:
                    self._send(400, {"error": {"message": "body is not JSON"}}, {})
                    return
                if not (self.path.endswith("/chat/completions") or self.path.endswith("/embeddings")):
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                request = server._record(self.path, body, {k.lower(): v for k, v in self.headers.items()})
                if request is None:
                    self._send(503, {"error": {"message": "loopback request budget spent"}}, {})
                    return
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(request)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, request: Request) -> None:
                try:
                    reply = (server.responder(request) if server.responder else None) or server._default_reply(request)
                except Exception as err:  # a broken test responder shows up as a 500
                    self._send(500, {"error": {"message": f"responder failed: {err}"}}, {})
                    return
                if reply.drop:
                    self.close_connection = True
                    return
                if reply.hang:
                    time.sleep(min(reply.hang, server.max_hold))
                    self.close_connection = True
                    return
                if reply.delay:
                    time.sleep(min(reply.delay, server.max_hold))
                self._send(reply.status, server._body_for(request, reply), reply.headers, reply.content_type)

        return Handler


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="A loopback OpenAI-compatible server (tests and offline trials)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--max_requests", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    args = parser.parse_args(argv)
    with LoopbackLLMServer(delay=args.delay, max_requests=args.max_requests, port=args.port) as server:
        print(f"loopback OpenAI-compatible server at {server.url} (stops after {args.seconds:.0f}s; Ctrl-C stops it)",
              flush=True)
        try:
            time.sleep(args.seconds)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
