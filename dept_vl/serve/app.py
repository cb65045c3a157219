"""``dept-vl serve``: one loaded model behind a web page and an HTTP API.

    GET  /             the page: choose or drop an image, ask, see the answer and the latency
    POST /v1/predict   multipart (image file(s) + question) or JSON ({"image": <base64>, "question": ...})
                       -> {"answer": ..., "latency_ms": ...}
    GET  /v1/model     what the model is: task, method, backbones, trainable parameters
    GET  /health       {"status": "ok"} and how the requests were batched
    GET  /docs         the OpenAPI page FastAPI makes

Requests are answered in batches (``DynamicBatcher``) on the one thread that owns the model. Whatever a client
can get wrong is a 4xx with ``{"error": "<what and why>"}``; nothing in a request is ever opened as a path.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from .._version import __version__
from ..errors import DeptVLError
from ..training.predict import Predictor
from .batcher import DynamicBatcher
from .inputs import Question, RequestError, parse_question, read_body
from .settings import ServeSettings

PAGE = Path(__file__).with_name("page.html")
LOG = logging.getLogger("dept_vl.serve")


def describe(predictor: Predictor, settings: ServeSettings) -> dict:
    """What ``GET /v1/model`` says, and what the page needs to know."""
    config = predictor.model.config

    def name(backbone: str) -> str:  # a local directory by its name only: the server's paths are its own
        return Path(backbone).name if Path(backbone).is_dir() else backbone

    return {"task": predictor.task.name, "tasks": config.tasks or [predictor.task.name], "method": config.method,
            "vision_encoder": name(config.vision.encoder), "text_backbone": name(config.text.backbone),
            "trainable_parameters": sum(p.numel() for p in predictor.model.trainable_parameters().values()),
            "images_per_example": predictor.task.num_images, "takes_question": predictor.task.name != "caption",
            "max_batch_size": settings.max_batch_size, "api_key_required": settings.api_key is not None,
            "version": __version__}


def answer_all(predictor: Predictor, questions: list[Question]) -> list:
    """The answers to ``questions`` (one generate call), on the model's thread: each is checked first (images
    for the task, a question unless it is a caption), and one that fails gets its error, not an answer."""
    results, checked = [None] * len(questions), []
    for i, q in enumerate(questions):
        try:
            if q.task not in (None, predictor.task.name):
                raise RequestError(400, f"this server answers task {predictor.task.name!r}, not {q.task!r}")
            checked.append((i, predictor.request(q.images, q.question)))
        except (DeptVLError, RequestError) as err:
            results[i] = err if isinstance(err, RequestError) else RequestError(400, str(err))
    for (i, _), answer in zip(checked, predictor.answer([request for _, request in checked]) if checked else []):
        results[i] = answer
    return results


def memory_trimmer(every_s: float = 1.0):
    """A function that gives the memory malloc holds free back to the system (glibc's ``malloc_trim``, every
    arena), at most once every ``every_s`` seconds (``force=True``: now). Called after each batch and when the
    server goes idle: batches of every size leave freed blocks of every size behind, and without it the server's
    memory climbs to the high-water mark of the worst mix of them; trimming after every batch cost 40 % of the
    throughput. A no-op where not glibc."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda force=False: None
    last = [time.monotonic()]

    def trimmer(force: bool = False) -> None:
        if force or time.monotonic() - last[0] >= every_s:
            trim(0)
            last[0] = time.monotonic()

    return trimmer


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    trim = memory_trimmer()

    def answer(questions: list[Question]) -> list:
        answers = answer_all(predictor, questions)
        trim()
        return answers

    batcher = DynamicBatcher(answer, settings.max_batch_size, settings.max_wait_ms, on_idle=lambda: trim(force=True))
    description = describe(predictor, settings)

    decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dept-vl-decode")

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()
        decoder.shutdown(wait=True)

    app = FastAPI(title="dept-vl", version=__version__, lifespan=lifespan,
                  description="Answers questions about images with a DePT-adapted vision-language model.")
    app.state.batcher, app.state.settings = batcher, settings
    _error_handlers(app)
    page = PAGE.read_text().replace("/*MODEL*/null", json.dumps(description).replace("<", "\\u003c"))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "requests": batcher.items, "batches": batcher.batches,
                "mean_batch_size": round(batcher.mean_batch_size, 2)}

    @app.get("/v1/model")
    async def model() -> dict:
        return description

    @app.post("/v1/predict")
    async def predict(request: Request) -> dict:
        """Multipart: ``image`` file(s) + ``question``; or JSON ``{"image": <base64>, "question": ...}``."""
        started = time.perf_counter()
        _check_key(request, settings.api_key)
        request = await read_body(request, int(settings.max_upload_mb * 2**20))
        answer = await batcher.submit(await parse_question(request, decoder))
        return {"answer": answer, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}

    return app


def _check_key(request: Request, key: str | None) -> None:
    if key is None:
        return
    given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise RequestError(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")


def _error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": ...}``; a 500 says no more than that something failed (the log has the rest)."""

    @app.exception_handler(RequestError)
    async def request_error(_request, err: RequestError):
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(HTTPException)
    async def http_error(_request, err: HTTPException):
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, err: RequestValidationError):
        return JSONResponse({"error": f"invalid request: {err.errors()}"}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(_request, err: Exception):
        LOG.exception("request failed")
        return JSONResponse({"error": f"internal error ({type(err).__name__}); the server log has the details"},
                            status_code=500)
