"""What a request to ``POST /v1/predict`` may hold, read and checked: image bytes (multipart files or base64 in
JSON), never a path; a question. Anything wrong is a ``RequestError`` with the HTTP status and a sentence saying what
and why; the server answers it as ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from ..errors import InputError
from ..io import parse_json
from ..models.images import open_image

IMAGE_FIELDS = ("image", "images")


class RequestError(Exception):
    """A request the server answers with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Sampling:
    """Sampled decoding instead of greedy: ``temperature`` > 0, nucleus ``top_p``, and a ``seed`` that makes the
    answer reproducible (a seeded request is generated on its own, so its batch-mates cannot change it)."""

    temperature: float
    top_p: float = 1.0
    seed: int | None = None

    def options(self) -> dict:
        """``generate``'s options (one beam: sampling replaces beam search)."""
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "num_beams": 1}


def decoding_key(sampling: Sampling | None, own) -> tuple:
    """What requests must share to be generated together: their sampling, and for a seeded one ``own`` (it is
    generated alone, so its batch-mates cannot change its answer)."""
    return sampling, (own if sampling is not None and sampling.seed is not None else None)


def sampling_of(temperature=None, top_p=None, seed=None) -> Sampling | None:
    """The request's ``Sampling`` (None: greedy, for no temperature or 0), checked as OpenAI checks them:
    temperature in [0, 2], top_p in (0, 1], seed an integer."""
    def number(value, name: str, low: float, high: float, low_open: bool = False):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                low < value <= high if low_open else low <= value <= high):
            raise RequestError(400, f"{name} must be a number {'above' if low_open else 'from'} {low:g} "
                                    f"{'up ' if low_open else ''}to {high:g}, got {value!r:.40}")
        return float(value)

    temperature = 0.0 if temperature is None else number(temperature, "temperature", 0, 2)
    top_p = 1.0 if top_p is None else number(top_p, "top_p", 0, 1, low_open=True)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise RequestError(400, f"seed must be a non-negative integer, got {seed!r:.40}")
    return Sampling(temperature, top_p, seed) if temperature > 0 else None


@dataclass
class Question:
    """One request's inputs: decoded RGB images, the question (None: a caption), the task if it named one, the
    adapter it asks (None: the server's first), the longest answer it wants (None: the adapter's own), how to
    decode it (None: greedily), and where its pieces go while it is generated (None: it is wanted whole)."""

    images: list
    question: str | None
    task: str | None = None
    adapter: str | None = None
    max_tokens: int | None = None
    sampling: Sampling | None = None
    stream: Callable[[str], None] | None = None  # takes the answer's pieces as they are generated (model's thread)
    context: tuple = ()  # the conversation's earlier turns, (role, text) pairs: a system turn, earlier exchanges
    prompt_tokens: int = 0  # set once answered: the tokens the model read for it (its usage)


async def read_body(request: Request, limit: int) -> Request:
    """The request with its body read, at most ``limit`` bytes (413 beyond), so that parsing it cannot run away."""
    too_large = RequestError(413, f"the request is larger than the upload limit of {limit / 2**20:g} MB "
                                  "(the server's --max-upload-mb)")
    if int(request.headers.get("content-length") or 0) > limit:  # declared too large: refused before reading
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(499, f"the client disconnected after {size} bytes of its request") from None
    body = b"".join(chunks)

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, replay)


async def parse_question(request: Request, decoder: Executor) -> Question:
    """A multipart form (``image`` file(s), ``question``, optional ``task``) or JSON (``{"image": <base64>}`` or
    ``{"images": [...]}``, ``question``, optional ``task``); both may name an ``adapter`` and ask for sampling
    (``temperature``, ``top_p``, ``seed``). Images are decoded on ``decoder``, off the event loop:
    a pool of a few threads (every thread that allocates may get a malloc arena of its own, which keeps the memory
    freed in it: with the default pool of up to 40 threads the server's memory grew twice as much)."""
    kind = request.headers.get("content-type", "")
    loop = asyncio.get_running_loop()
    if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):  # the latter: no files
        return await _from_form(request, lambda data, name: loop.run_in_executor(decoder, decode_image, data, name))
    if kind.startswith("application/json"):
        return await loop.run_in_executor(decoder, _from_json, await request.body())
    raise RequestError(415, "send multipart/form-data (image file(s) + question) or application/json "
                            '({"image": <base64>, "question": ...})')


async def _from_form(request: Request, decode) -> Question:
    try:
        form = await request.form()
    except Exception as err:  # noqa: BLE001 - whatever the multipart parser refuses is the client's doing
        raise RequestError(400, f"cannot read the multipart form: {err}") from None
    files = [value for key, value in form.multi_items() if key in IMAGE_FIELDS]
    if any(not isinstance(value, UploadFile) for value in files):
        raise RequestError(400, "the image field must hold a file (image bytes), not text")
    images = [await decode(await f.read(), f"image {f.filename or i + 1}") for i, f in enumerate(files)]
    numbers = {name: _form_number(form.get(name), name, int if name == "seed" else float)
               for name in ("temperature", "top_p", "seed")}
    return Question(images, _text(form.get("question"), "question"), _text(form.get("task"), "task"),
                    _text(form.get("adapter"), "adapter"), sampling=sampling_of(**numbers))


def json_object(body: bytes) -> dict:
    """The request body as a JSON object; a 400 saying why for anything else."""
    try:
        data = parse_json(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, f"the body is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise RequestError(400, "the JSON body must be an object")
    return data


def _from_json(body: bytes) -> Question:
    data = json_object(body)
    encoded = data.get("images", [data["image"]] if "image" in data else [])
    if not isinstance(encoded, list):
        raise RequestError(400, '"images" must be a list of base64 strings')
    images = [decode_image(image_bytes(value, i + 1), f"image {i + 1}") for i, value in enumerate(encoded)]
    return Question(images, _text(data.get("question"), "question"), _text(data.get("task"), "task"),
                    _text(data.get("adapter"), "adapter"),
                    sampling=sampling_of(data.get("temperature"), data.get("top_p"), data.get("seed")))


def image_bytes(value, number: int) -> bytes:
    """The bytes of image ``number``, sent as base64 or as a ``data:`` URL; a 400 for anything else."""
    if not isinstance(value, str):
        raise RequestError(400, f"image {number} must be a base64 string of image bytes")
    try:
        return base64.b64decode(value.split(",", 1)[-1] if value.startswith("data:") else value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"image {number} is not base64 (the server reads image bytes, never a path or "
                                "a URL)") from None


def _form_number(value, name: str, kind: type):
    """A form field's number (forms hold text), None where the field is absent or empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise RequestError(400, f"{name} must be {'an integer' if kind is int else 'a number'}, got "
                                f"{str(value)!r:.40}") from None


def _text(value, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise RequestError(400, f"{name} must be text, got {type(value).__name__}")


def decode_image(data: bytes, name: str) -> Image.Image:
    """RGB image from ``data`` (``models.images.open_image``: the one opening path, EXIF orientation applied): 400
    for nothing, a non-image, a truncated image, or more pixels than Pillow allows."""
    try:
        return open_image(data, name)
    except InputError as err:
        raise RequestError(400, str(err)) from None
