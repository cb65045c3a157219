"""``dept-vl serve``: the web page and HTTP API (app.py), dynamic batching (batcher.py), request parsing
(inputs.py) and the uvicorn runner (server.py). Needs the ``serve`` extra: ``pip install -e ".[serve]"``."""
