"""The bench-service anchor: what a user could write with onnxruntime and a bare ASGI server.

The same `OnnxClassifier` over the same bundle, with the same thread settings, behind a
Starlette app on uvicorn, its defaults (access log included); no BentoML, no validation
beyond what answering needs, no batching across requests, no shadows, no event log;
session.run inside the async endpoint, as a plain one would (one request at a time).
`POST /predict` takes shiftwatch's request body and answers its shape, so the benchmark's
client sends both servers the same bytes. `GET /readyz` answers 200 once the model is loaded.

    BARE_SERVER_BUNDLE=<bundle folder> python -m uvicorn --factory benchmarks.bare_server:make_app
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shiftwatch.bundle import read_bundle
from shiftwatch.encoding import softmax
from shiftwatch.inference import OnnxClassifier
from shiftwatch.settings import ServiceSettings

BUNDLE_ENV = "BARE_SERVER_BUNDLE"  # the model bundle's folder (in the model store)
VERSION_ENV = "BARE_SERVER_VERSION"  # what `model_version` answers (the store tag)


def make_app() -> Starlette:
    """The app over the bundle named in the environment (threads from SHIFTWATCH_*)."""
    settings = ServiceSettings()
    bundle = read_bundle(Path(os.environ[BUNDLE_ENV]))
    version = os.environ.get(VERSION_ENV, str(bundle.path))
    classifier = OnnxClassifier.from_bundle(
        bundle, settings.intra_op_threads, settings.inter_op_threads, settings.prefer_gpu
    )
    labels = bundle.meta.labels

    async def predict(request: Request) -> Response:
        instances = (await request.json())["instances"]
        texts = [i["text"] if "text" in i else " ".join(i["tokens"]) for i in instances]
        logits, _ = classifier.predict(bundle.tokenizer.encode(texts).ids)
        answers = []
        for instance, probs in zip(instances, softmax(logits), strict=True):
            best = int(probs.argmax())
            answers.append(
                {
                    "request_id": instance.get("request_id") or uuid.uuid4().hex,
                    "label": labels[best],
                    "confidence": float(probs[best]),
                    "probabilities": dict(zip(labels, probs.tolist(), strict=True)),
                    "model": bundle.name,
                    "model_version": version,
                }
            )
        return JSONResponse(answers)

    async def ready(_: Request) -> Response:
        return JSONResponse("ok")

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/readyz", ready),
            Route("/livez", ready),
        ]
    )
