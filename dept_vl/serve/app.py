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

import asyncio
import hmac
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from .._version import __version__
from ..errors import DeptVLError
from ..inference.predict import Predictor
from ..io import links_out
from .adapters import Adapter, AdapterSet, Part, generate_parts
from .batcher import DynamicBatcher
from .inputs import Question, RequestError, decoding_key, json_object, parse_question, read_body
from .openai_api import ROUTES as OPENAI_ROUTES, OpenAIError, add_openai_routes
from .settings import ServeSettings

PAGE = Path(__file__).with_name("page.html")
LOG = logging.getLogger("dept_vl.serve")


def describe_adapter(adapter: Adapter) -> dict:
    """What one adapter is: its task, method, backbones (a local directory by its name only: the server's paths
    are its own), what it takes."""
    predictor = adapter.predictor
    return {"name": adapter.name, "task": predictor.task.name, "tasks": predictor.model.config.tasks or
            [predictor.task.name], **predictor.model.describe(), "images_per_example": predictor.task.num_images,
            "takes_question": predictor.task.takes_question}


def describe(adapters: AdapterSet, settings: ServeSettings) -> dict:
    """What ``GET /v1/model`` says (the first adapter's description, and every adapter's), and what the page needs."""
    served = [describe_adapter(a) for a in adapters.adapters.values()]
    return {**served[0], "adapters": served, "max_batch_size": settings.max_batch_size,
            "api_key_required": settings.api_key is not None, "adapters_at_runtime": settings.adapter_dir is not None,
            "version": __version__}


def answer_all(adapters: AdapterSet, questions: list[Question]) -> list:
    """The answers to ``questions``, on the model's thread: each checked first (its adapter, the images for its
    task, a question unless it is a caption; one that fails gets its error, not an answer), then every adapter's
    questions through its own input sequence and all of them through the shared model together (those that decode
    alike: answer length, sampling; a seeded question on its own). Each question's ``prompt_tokens`` is set."""
    results, groups = [None] * len(questions), {}
    for i, q in enumerate(questions):
        try:
            adapter = _adapter(adapters, q.adapter)
            if q.task not in (None, adapter.predictor.task.name):
                raise RequestError(400, f"this server answers task {adapter.predictor.task.name!r}, not {q.task!r}"
                                   + (f" (adapter {adapter.name!r})" if len(adapters.adapters) > 1 else ""))
            checked = adapter.predictor.request(q.images, q.question)
            q.prompt_tokens = adapter.predictor.model.prompt_tokens(checked[0], len(checked[1]), q.context)
            key = (adapter.name, q.max_tokens, *decoding_key(q.sampling, i))
            groups.setdefault(key, (adapter, []))[1].append((i, checked))
        except (DeptVLError, RequestError) as err:
            results[i] = err if isinstance(err, RequestError) else RequestError(400, str(err))
    parts = [Part([i for i, _ in checked], [r for _, r in checked], [questions[i].context for i, _ in checked],
                  max_tokens, adapter, sampling, [questions[i].stream for i, _ in checked])
             for (_, max_tokens, sampling, _), (adapter, checked) in groups.items()]
    for i, answer in generate_parts(adapters.shared, parts, adapters.num_beams).items():
        results[i] = answer
    return results


def _adapter(adapters: AdapterSet, name: str | None) -> Adapter:
    try:
        return adapters.get(name)
    except KeyError:
        raise RequestError(404, f"no adapter {name!r}; this server serves {', '.join(adapters.adapters)}") from None


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


def create_app(served: AdapterSet | Predictor, settings: ServeSettings | None = None) -> FastAPI:
    """The app answering for ``served`` (an AdapterSet, or one Predictor: one adapter, named after its task)."""
    settings = settings or ServeSettings()
    adapters = served if isinstance(served, AdapterSet) else AdapterSet.of(served)
    trim = memory_trimmer()

    def answer(questions: list[Question]) -> list:
        answers = answer_all(adapters, questions)
        trim()
        return answers

    batcher = DynamicBatcher(answer, settings.max_batch_size, settings.max_wait_ms, on_idle=lambda: trim(force=True))
    decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dept-vl-decode")

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()
        decoder.shutdown(wait=True)

    app = FastAPI(title="dept-vl", version=__version__, lifespan=lifespan, dependencies=[Depends(
                  _key_guard(settings.api_key))],  # the API key on every route but the page and /health
                  description="Answers questions about images with DePT-adapted vision-language models.")
    app.state.batcher, app.state.settings, app.state.adapters = batcher, settings, adapters
    _error_handlers(app)
    _guard_docs(app, settings.api_key)
    limit = int(settings.max_upload_mb * 2**20)
    check = lambda request: _check_key(request, settings.api_key)  # noqa: E731

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        model = json.dumps(describe(adapters, settings)).replace("<", "\\u003c")
        return PAGE.read_text().replace("/*MODEL*/null", model)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "requests": batcher.items, "batches": batcher.batches,
                "mean_batch_size": round(batcher.mean_batch_size, 2), "adapters": len(adapters.adapters)}

    @app.get("/v1/model")
    async def model() -> dict:
        return describe(adapters, settings)

    @app.post("/v1/predict")
    async def predict(request: Request) -> dict:
        """Multipart: ``image`` file(s) + ``question`` (+ ``adapter``); or JSON ``{"image": <base64>, "question": ...,
        "adapter": ...}``."""
        started = time.perf_counter()
        check(request)
        request = await read_body(request, limit)
        answer = await batcher.submit(await parse_question(request, decoder))
        return {"answer": answer, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}

    add_openai_routes(app, batcher.submit, adapters, check, lambda request: read_body(request, limit))
    add_adapter_routes(app, adapters, settings, check)
    return app


def add_adapter_routes(app: FastAPI, adapters: AdapterSet, settings: ServeSettings, check) -> None:
    """``POST /v1/adapters`` ({"name", "path"}: a run under the operator's --adapter-dir) and ``DELETE
    /v1/adapters/NAME``, behind the API key; questions already in a batch finish on the adapter they asked."""

    @app.post("/v1/adapters")
    async def add(request: Request) -> dict:
        check(request)
        if settings.adapter_dir is None:
            raise RequestError(403, "this server loads no adapters at runtime (start it with --adapter-dir DIR)")
        data = json_object(await (await read_body(request, 1 << 16)).body())
        name, path = (data.get(k) for k in ("name", "path"))
        if not isinstance(name, str) or not NAME.fullmatch(name) or not isinstance(path, str):
            raise RequestError(400, 'send {"name": NAME (letters, digits, - and _), "path": a run under the '
                                    "server's --adapter-dir}")
        source = _inside(Path(settings.adapter_dir), path)
        try:
            adapter = await asyncio.get_running_loop().run_in_executor(None, adapters.add, name, str(source))
        except DeptVLError as err:
            raise RequestError(400, str(err)) from None
        return describe_adapter(adapter)

    @app.delete("/v1/adapters/{name}")
    async def remove(name: str, request: Request) -> dict:
        check(request)
        try:
            adapters.remove(name)
        except KeyError:
            raise RequestError(404, f"no adapter {name!r}; this server serves {', '.join(adapters.adapters)}") from None
        except DeptVLError as err:
            raise RequestError(409, str(err)) from None
        return {"removed": name, "adapters": list(adapters.adapters)}


def _inside(root: Path, path: str) -> Path:
    """``path`` under ``root``, resolved; a 403 for anything outside it (``..``, an absolute path, a symlink out,
    also one inside the run: its ``model/`` linked to a run elsewhere)."""
    if "\0" in path:
        raise RequestError(400, "path: a NUL byte is not allowed in a path")
    root = root.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or target == root or links_out(target, root):
        raise RequestError(403, f"{path!r} is not a run under the server's adapter directory")
    if not target.is_dir():
        raise RequestError(404, f"no run {path!r} in the server's adapter directory")
    return target


NAME = re.compile(r"[A-Za-z0-9][\w-]{0,63}")


OPEN_ROUTES = ("/", "/health")  # what answers without the API key


def _key_guard(key: str | None):
    """A dependency of every route: ``_check_key`` but on ``OPEN_ROUTES`` (in OpenAI's error shape on its routes)."""

    async def require_key(request: Request) -> None:
        if request.url.path in OPEN_ROUTES:
            return
        try:
            _check_key(request, key)
        except RequestError as err:
            raise (OpenAIError(err.status, err.message) if request.url.path in OPENAI_ROUTES else err) from None

    return require_key


def _guard_docs(app: FastAPI, key: str | None) -> None:
    """FastAPI's own pages (``/docs``, ``/redoc``, ``/openapi.json``) behind the API key too: they take no
    dependencies, so a middleware asks for it there."""
    if key is None:
        return
    pages = {app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url} - {None}

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        if request.url.path in pages:
            try:
                _check_key(request, key)
            except RequestError as err:
                return JSONResponse({"error": err.message}, status_code=err.status)
        return await call_next(request)


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
        if err.status == 499:  # the client went away mid-request: one line in the log, nobody to answer
            LOG.info("%s", err.message)
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
