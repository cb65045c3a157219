"""An OpenAI-compatible API beside dept-vl's own, so that any OpenAI client talks to the server:

    POST /v1/chat/completions   {"model": ADAPTER, "messages": [{"role": "user", "content": [{"type": "text", ...},
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}]}],
                                "max_tokens": N, "temperature": 0, "top_p": 1, "seed": S,
                                "n": 1, "stream": false}
    GET  /v1/models             the adapters, as OpenAI lists models

Images come only as data URLs (the server fetches nothing). Decoding is greedy for ``temperature`` 0 (or left
out), else sampled at that temperature with ``top_p`` (a ``seed`` makes it reproducible); ``n`` must be 1.
``stream: true`` answers with server-sent events, as OpenAI sends them: a delta per piece of text as the
batch generates it (beam search: the answer whole, in one delta). Errors have OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from .inputs import Question, RequestError, Sampling, decode_image, image_bytes, json_object, sampling_of
from .streaming import rest_of


ROLES = ("system", "user", "assistant")  # the roles a conversation's messages may have


class OpenAIError(RequestError):
    """A RequestError answered in OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(status, message)
        self.param, self.code = param, code

    def body(self) -> dict:
        kind = {401: "authentication_error", 404: "invalid_request_error", 413: "invalid_request_error"}.get(
            self.status, "invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def parse_chat(body: bytes) -> tuple[Question, dict]:
    """The question a chat completion request asks (its last user message), the conversation before it (a system
    turn, earlier exchanges: the model reads them as in training), and the request's own fields (model, stream)."""
    try:
        data = json_object(body)
    except RequestError as err:
        raise OpenAIError(err.status, err.message) from None
    model, messages = data.get("model"), data.get("messages")
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "model: the name of an adapter this server serves (GET /v1/models)", "model")
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "messages must be a non-empty list", "messages")
    sampling = _sampling(data)
    last = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"), default=None)
    if last is None:
        raise OpenAIError(400, "messages hold no user message", "messages")
    context, images = [], []
    for message in messages[:last]:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise OpenAIError(400, f"a message's role must be one of {', '.join(ROLES)}", "messages")
        text, pictures = _content(message.get("content"))
        images += pictures  # images of earlier turns count too (the conversation is about them)
        context.append((message["role"], text))
    text, pictures = _content(messages[last].get("content"))
    max_tokens = data.get("max_tokens", data.get("max_completion_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise OpenAIError(400, "max_tokens must be a positive integer", "max_tokens")
    return Question(images + pictures, text or None, adapter=model, max_tokens=max_tokens, sampling=sampling,
                    context=tuple(context)), data


def _sampling(data: dict) -> Sampling | None:
    """Greedy (temperature 0 or left out), else sampled at the request's temperature, top_p and seed."""
    if data.get("n") not in (None, 1):
        raise OpenAIError(400, "this server returns one choice: n must be 1", "n")
    try:
        return sampling_of(data.get("temperature"), data.get("top_p"), data.get("seed"))
    except RequestError as err:
        raise OpenAIError(400, err.message, err.message.split(" ", 1)[0]) from None


def _content(content) -> tuple[str, list]:
    """A message's text and decoded images (text, or parts of type text / image_url with a data URL)."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise OpenAIError(400, "a message's content must be text or a list of content parts", "messages")
    texts, images = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(_data_url(part.get("image_url"), len(images) + 1))
        else:
            raise OpenAIError(400, f"unsupported content part {str(part)[:60]}: use text and image_url", "messages")
    return " ".join(texts), images


def _data_url(image_url, number: int):
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url.startswith("data:"):
        raise OpenAIError(400, f"image {number}: only data URLs (data:image/png;base64,...) are accepted; this server "
                               "fetches nothing", "messages")
    try:
        return decode_image(image_bytes(url, number), f"image {number}")
    except RequestError as err:
        raise OpenAIError(err.status, err.message, "messages") from None


def completion(answer: str, model: str, created: int, ident: str, usage: dict) -> dict:
    return {"id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop",
                         "logprobs": None}], "usage": usage}


def usage_of(question: Question, answer: str, model) -> dict:
    """OpenAI's ``usage``, counted by the adapter's tokenizer: the prompt as the model read it (template, earlier
    turns, image tokens where their number is known), the answer's tokens, their sum."""
    completion_tokens = model.count_tokens(answer)
    return {"prompt_tokens": question.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": question.prompt_tokens + completion_tokens}


def _chunk(delta: dict, finish: str | None, model: str, created: int, ident: str) -> str:
    return "data: " + json.dumps({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                               "logprobs": None}]}) + "\n\n"


async def stream(question: Question, submit, created: int, ident: str) -> StreamingResponse:
    """The server-sent events of an answer streamed as it is generated: the role, a delta per new piece of text,
    the end, [DONE]. The response starts once the first piece (or the whole answer) is there, so a request the
    server refuses still gets its 4xx."""
    loop, pieces = asyncio.get_running_loop(), asyncio.Queue()
    question.stream = lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece)
    answer, waiting = asyncio.ensure_future(submit(question)), asyncio.ensure_future(pieces.get())
    await asyncio.wait({answer, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if answer.done() and answer.exception() is not None:
        waiting.cancel()
        answer.result()  # raised here, before any event is sent

    def chunk(delta: dict, finish: str | None = None) -> str:
        return _chunk(delta, finish, question.adapter, created, ident)

    async def events():
        nonlocal waiting
        yield chunk({"role": "assistant", "content": ""})
        sent = ""
        try:
            while True:
                await asyncio.wait({answer, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if not waiting.done():  # the answer is complete; every piece of it is queued already
                    break
                sent += waiting.result()
                yield chunk({"content": waiting.result()})
                waiting = asyncio.ensure_future(pieces.get())
        finally:  # also when the client goes away mid-stream
            waiting.cancel()
        while not pieces.empty():
            piece = pieces.get_nowait()
            sent += piece
            yield chunk({"content": piece})
        try:
            rest = rest_of(answer.result(), sent)
        except RequestError as err:  # failed after it had begun: said in the stream, in OpenAI's error shape
            yield "data: " + json.dumps(OpenAIError(err.status, err.message).body()) + "\n\n"
            return
        if rest:
            yield chunk({"content": rest})
        yield chunk({}, "stop")
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def add_openai_routes(app: FastAPI, submit, adapters, check_key, read_body) -> None:
    """``POST /v1/chat/completions`` (answered by ``submit(question)``) and ``GET /v1/models``."""

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            check_key(request)
            body = await (await read_body(request)).body()
            question, data = await asyncio.get_running_loop().run_in_executor(None, parse_chat, body)
            if question.adapter not in adapters.adapters:
                raise OpenAIError(404, f"the model {question.adapter!r} does not exist: this server serves "
                                       f"{', '.join(adapters.adapters)}", "model", "model_not_found")
            created, ident = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"
            if data.get("stream"):
                return await stream(question, submit, created, ident)
            answer = await submit(question)
        except OpenAIError:
            raise
        except RequestError as err:  # the server's own checks, answered in OpenAI's shape here
            raise OpenAIError(err.status, err.message) from None
        model = adapters.adapters[question.adapter].predictor.model
        return completion(answer, question.adapter, created, ident, usage_of(question, answer, model))

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "dept-vl"}
                                           for name in adapters.adapters]}

    @app.exception_handler(OpenAIError)
    async def openai_error(_request, err: OpenAIError):
        return JSONResponse(err.body(), status_code=err.status)
