"""`dept-vl serve` as users run it: a real uvicorn on a free loopback port, concurrent clients answered in batches,
SIGTERM answered gracefully, and the page driven in a real headless browser (Debian's chromium)."""

import concurrent.futures
import shutil
import time
import urllib.error

import pytest

from dept_vl.bench.serve_load import ServerProcess, multipart_body
from dept_vl.inference.predict import Predictor


QUESTION = "what color is the shape?"


@pytest.fixture(scope="module")
def run_dir(tiny_easyvqa_run):
    return tiny_easyvqa_run


class Server(ServerProcess):
    """`dept-vl serve` in a subprocess (the load bench's), with a question helper; stop() -> (exit code, stderr)."""

    def ask(self, image, question=QUESTION):
        return self.post(multipart_body([("question", question.encode(), None),
                                         ("image", open(image, "rb").read(), "i.png")]))

    def stop(self):
        return super().stop(), self.stderr


BROWSER = bool(shutil.which("chromium") and shutil.which("chromedriver"))


@pytest.fixture(scope="module")
def servers(run_dir):
    """The servers of this module's tests, started side by side (a start costs ~10 s here); each test stops its
    own, the rest are stopped at the end."""
    settings = {"batching": ["--max-wait-ms", "200", "--max-batch-size", "8"],
                "sigterm": ["--max-wait-ms", "1500"],  # a lone request waits 1.5 s for company
                **({"page": []} if BROWSER else {})}
    started = Server.start_all(*(["--checkpoint", str(run_dir), *args] for args in settings.values()))
    yield dict(zip(settings, started))
    for server in started:
        if server.process.poll() is None:
            server.stop()


def images(n):
    import easy_vqa

    return list(easy_vqa.get_test_image_paths().values())[:n]


def test_concurrent_clients_are_batched_and_answered_as_predict_would(run_dir, servers):
    server = servers["batching"]
    try:
        pictures = images(16)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(server.ask, pictures))
        health = server.get("/health")
    finally:
        code, err = server.stop()
    expected = Predictor(str(run_dir))
    assert [a["answer"] for a in answers] == [expected([p], QUESTION) for p in pictures]
    assert health["requests"] == 16 and health["mean_batch_size"] > 1  # several requests per generate call
    assert code == 0 and "Traceback" not in err


def test_sigterm_finishes_the_request_in_flight_and_exits_0(servers):
    server = servers["sigterm"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.ask, images(1)[0])
        time.sleep(0.5)  # the request is in the batcher's window
        code, err = server.stop()
        answer = pending.result(timeout=30)
    assert code == 0 and "answer" in answer and "dept-vl serve: stopped" in err
    with pytest.raises(urllib.error.URLError):  # and nothing listens any more
        server.get("/health")


@pytest.mark.skipif(not BROWSER, reason="needs a browser: apt install chromium chromium-driver")
def test_the_page_in_a_real_browser(run_dir, servers, tmp_path):
    from PIL import Image, ImageStat
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    server = servers["page"]
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(server.url + "/")
        assert "easyvqa" in driver.find_element(By.ID, "about").text
        picture = images(1)[0]
        driver.find_element(By.ID, "ask").click()  # nothing chosen yet: said in the page
        assert "Choose an image" in driver.find_element(By.ID, "error").text
        driver.find_element(By.ID, "image0").send_keys(picture)
        question = driver.find_element(By.ID, "question")
        question.send_keys(QUESTION, Keys.ENTER)  # the keyboard alone submits
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "latency").text.endswith(" ms"))
        shown = driver.find_element(By.ID, "answer").text
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
        server.stop()
    expected = Predictor(str(run_dir))([picture], QUESTION)
    assert shown == (expected or "(an empty answer)")
    screenshot = Image.open(tmp_path / "page.png").convert("L")
    assert screenshot.size[0] >= 800 and ImageStat.Stat(screenshot).stddev[0] > 10  # not a blank page
