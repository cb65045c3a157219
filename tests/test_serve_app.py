"""The HTTP API: the answers `dept-vl predict` gives, and a 4xx with {"error": ...} for anything a client gets
wrong (never a 500, a traceback, or a path opened)."""

import base64
import io

import pytest
from PIL import Image

from dept_vl.serve.app import create_app
from dept_vl.serve.settings import ServeSettings
from dept_vl.inference.predict import Predictor


QUESTIONS = ["what color is the shape?", "what shape is in the image?", "is there a circle?", "is the shape red?"]


@pytest.fixture(scope="module")
def run_dir(tiny_easyvqa_run):
    return tiny_easyvqa_run


@pytest.fixture(scope="module")
def predictor(run_dir):
    return Predictor(str(run_dir))


@pytest.fixture
def client(predictor):
    from fastapi.testclient import TestClient

    with TestClient(create_app(predictor, ServeSettings(max_wait_ms=5, max_upload_mb=1))) as c:
        yield c


def image_paths(n=4):
    import easy_vqa

    return list(easy_vqa.get_test_image_paths().values())[:n]


def test_answers_equal_what_predict_gives(client, predictor):
    for path, question in zip(image_paths(), QUESTIONS):
        expected = predictor([path], question)
        with open(path, "rb") as fh:
            form = client.post("/v1/predict", files={"image": ("a.png", fh, "image/png")}, data={"question": question})
        encoded = base64.b64encode(open(path, "rb").read()).decode()
        as_json = client.post("/v1/predict", json={"image": encoded, "question": question})
        assert form.status_code == as_json.status_code == 200
        assert form.json()["answer"] == as_json.json()["answer"] == expected
        assert form.json()["latency_ms"] > 0
    answered = client.get("/health").json()
    assert answered["status"] == "ok" and answered["requests"] == 8


def test_model_description_and_page(client):
    model = client.get("/v1/model").json()
    assert (model["task"], model["method"], model["images_per_example"], model["takes_question"]) == \
        ("easyvqa", "dept", 1, True)
    assert model["text_backbone"] == ("a random T5 (frozen, seed 0): d 32, 1 + 1 layers, a vocabulary of "
                                      f"{model['text_backbone'].rsplit(' ', 2)[-2]} words")  # what it is, no path
    assert int(model["text_backbone"].rsplit(" ", 2)[-2]) > 20 and model["trainable_parameters"] > 0
    page = client.get("/")
    assert page.status_code == 200 and '"task": "easyvqa"' in page.text and "http" not in page.text.split("<script>")[0]
    assert client.get("/docs").status_code == 200 and "/v1/predict" in client.get("/openapi.json").text


def png(size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


BAD = {  # what a client sends -> the status and what the error must say
    "no image": (dict(data={"question": "what?"}), 400, "takes 1 image"),
    "empty question": (dict(files={"image": ("a.png", png())}, data={"question": "  "}), 400, "needs a question"),
    "no question": (dict(files={"image": ("a.png", png())}), 400, "needs a question"),
    "not an image": (dict(files={"image": ("a.png", b"hello")}, data={"question": "q"}), 400, "is not an image"),
    "truncated": (dict(files={"image": ("a.png", png((64, 64))[:60])}, data={"question": "q"}), 400, "a.png"),
    "empty file": (dict(files={"image": ("a.png", b"")}, data={"question": "q"}), 400, "is empty"),
    "two images": (dict(files=[("image", ("a.png", png())), ("image", ("b.png", png()))], data={"question": "q"}),
                   400, "takes 1 image(s), got 2"),
    "too large": (dict(files={"image": ("a.png", b"0" * (2 * 2**20))}, data={"question": "q"}), 413, "upload limit"),
    "a path in json": (dict(json={"image": "/etc/passwd", "question": "q"}), 400, "never a path"),
    "bad json": (dict(content=b"{no", headers={"content-type": "application/json"}), 400, "not valid JSON"),
    "json list": (dict(json=[1]), 400, "must be an object"),
    "text as image": (dict(data={"image": "not a file", "question": "q"}), 400, "must hold a file"),
    "other task": (dict(files={"image": ("a.png", png())}, data={"question": "q", "task": "vqa"}), 400,
                   "answers task 'easyvqa', not 'vqa'"),
    "wrong content type": (dict(content=b"x", headers={"content-type": "text/plain"}), 415, "multipart/form-data"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_are_4xx_with_a_reason(client, case):
    kwargs, status, needle = BAD[case]
    response = client.post("/v1/predict", **kwargs)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and needle in response.json()["error"]
    assert "Traceback" not in response.text


def test_pixel_bombs_wrong_keys_and_unknown_routes(predictor, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with TestClient(create_app(predictor, ServeSettings(api_key="s3cret"))) as client:
        big = {"files": {"image": ("big.png", png((64, 64)))}, "data": {"question": "q"}}
        assert client.post("/v1/predict", **big).status_code == 401
        assert client.post("/v1/predict", headers={"X-API-Key": "nope"}, **big).json()["error"].startswith(
            "missing or wrong API key")
        refused = client.post("/v1/predict", headers={"Authorization": "Bearer s3cret"}, **big)
        assert refused.status_code == 400 and "more pixels than allowed" in refused.json()["error"]
        assert client.get("/v1/model").status_code == 401 and client.get("/health").status_code == 200
        assert client.get("/v1/model", headers={"X-API-Key": "s3cret"}).json()["api_key_required"] is True
        assert client.get("/nowhere").json() == {"error": "Not Found"}
        assert client.get("/v1/predict").status_code == 405
