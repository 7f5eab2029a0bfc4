"""Security at serve time: the /feedback bearer token, JSON only (no pickle ever reaches a
deserializer), hostile bodies answered 4xx at once, and no pickle/torch/joblib in the code."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import pickle
import subprocess
import sys
import time

import httpx
import pytest

from tests.reliability.conftest import predict_body, running_service, service_env
from tests.reliability.test_bad_bundles import serve
from tests.servers import ROOT, settled_events

pytestmark = [pytest.mark.slow, pytest.mark.behaviour]
TOKEN = "s3cret-token-for-tests"
SERVING_PACKAGES = ("service", "monitoring", "shiftwatch")
UNSAFE_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "joblib",
    "torch",
    "shelve",
}
UNSAFE_CALLS = {"read_pickle", "load_pickle", "allow_pickle"}  # pandas, numpy's np.load flag
PICKLE_MEDIA_TYPE = "application/vnd.bentoml+pickle"


@pytest.fixture(scope="module")
def server(tiny_store: dict, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("security")
    env = service_env(work, SHIFTWATCH_FEEDBACK_TOKEN=TOKEN)
    with running_service(env, work / "serve.log") as process:
        yield {"url": process.url, "events": work / "events", "log": work / "serve.log"}


# -- /feedback bearer token ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": TOKEN},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": f"Bearer {TOKEN}x"},
        # Non-ASCII bytes: compare_digest on str raised TypeError (a 500 after 30 s).
        {"authorization": "Bearer \xe9t\xe9".encode("latin-1")},
    ],
    ids=["none", "wrong", "no-scheme", "basic-scheme", "longer", "non-ascii"],
)
def test_feedback_without_the_token_is_401(server: dict, headers: dict) -> None:
    body = {"labels": [{"request_id": "tok-1", "label": "topic_a"}]}
    response = httpx.post(server["url"] + "/feedback", json=body, headers=headers, timeout=60)
    assert response.status_code == 401
    assert response.json() == {"error": "Authorization: bearer token required"}


def test_feedback_with_the_token_is_accepted_and_predict_needs_none(server: dict) -> None:
    answer = httpx.post(server["url"] + "/predict", json=predict_body(1, 4, prefix="tok"))
    assert answer.status_code == 200, answer.text
    body = {"labels": [{"request_id": "tok-0", "label": "topic_a"}]}
    response = httpx.post(
        server["url"] + "/feedback", json=body, headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert TOKEN not in server["log"].read_text()  # never logged


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({}, "no token configured"),
        ({"SHIFTWATCH_FEEDBACK_TOKEN": ""}, "SHIFTWATCH_FEEDBACK_TOKEN is empty"),
        (
            {"SHIFTWATCH_FEEDBACK_TOKEN": "", "SHIFTWATCH_FEEDBACK_OPEN": "true"},
            "SHIFTWATCH_FEEDBACK_TOKEN is empty",
        ),
        ({"SHIFTWATCH_FEEDBACK_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
    ],
    ids=["nothing", "empty", "empty-and-open", "unreadable-file"],
)
def test_service_without_a_feedback_token_refuses_to_start(
    tiny_store: dict, tmp_path: pathlib.Path, settings: dict, fragment: str
) -> None:
    """Open /feedback is never the default: without a non-empty token or the explicit
    SHIFTWATCH_FEEDBACK_OPEN=true, `bentoml serve` exits with one line (before serving;
    before this check an empty or missing token served /feedback to anyone)."""
    absent = {"SHIFTWATCH_FEEDBACK_OPEN": None, "SHIFTWATCH_FEEDBACK_TOKEN": None}
    code, output = serve(pathlib.Path(os.environ["BENTOML_HOME"]), tmp_path, absent | settings)
    assert code not in (0, -1), output[-3000:]
    lines = [line for line in output.splitlines() if "cannot start" in line]
    assert len(lines) == 1, output[-3000:]
    assert "/feedback" in lines[0] and fragment in lines[0], lines[0]
    assert "Traceback" not in output, output[-3000:]


# -- only JSON is parsed ---------------------------------------------------------------------


class _TouchOnUnpickle:
    """Unpickling this creates a file: proof that a pickle body was (or was not) loaded."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.mark.parametrize("endpoint", ["/predict", "/feedback"])
def test_a_pickle_body_is_refused_415_and_never_unpickled(
    server: dict, endpoint: str, tmp_path: pathlib.Path
) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_TouchOnUnpickle(marker))
    before = len(settled_events(server["events"]))
    response = httpx.post(
        server["url"] + endpoint,
        content=payload,
        headers={"content-type": PICKLE_MEDIA_TYPE, "authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 415
    assert PICKLE_MEDIA_TYPE in response.json()["error"]
    after = settled_events(server["events"])
    assert not marker.exists(), "the server unpickled a request body"
    assert len(after) == before


@pytest.mark.parametrize(
    "content_type",
    [
        # Before the 415, BentoML's form parser answered these 500 (missing/invalid boundary).
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
        "text/plain",
    ],
)
def test_other_media_types_are_415_with_a_message(server: dict, content_type: str) -> None:
    body = json.dumps(predict_body(1, 4)).encode()
    response = httpx.post(
        server["url"] + "/predict", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == 415, response.text
    assert "send application/json" in response.json()["error"]


def test_json_with_a_charset_is_served(server: dict) -> None:
    response = httpx.post(
        server["url"] + "/predict",
        content=json.dumps(predict_body(1, 4)).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("depth", [999, 5000, 30000])
def test_deeply_nested_json_is_400_at_once(server: dict, depth: int) -> None:
    """Found by hand beside the fuzzer: nesting past json's recursion limit raised in the
    limits middleware, and BentoML's timeout middleware then held the request its full 30 s
    before a bare 500. Now a 400; 10 s is a third of that timeout, room for a loaded CPU."""
    body = '{"instances": [{"text": "w1", "domain": ' + "[" * depth + "]" * depth + "}]}"
    started = time.monotonic()
    response = httpx.post(
        server["url"] + "/predict",
        content=body.encode(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert elapsed < 10, f"{elapsed:.1f} s"


# -- no unpickling or torch at serve time, by construction ---------------------------------------


def _sources() -> list[pathlib.Path]:
    return [p for package in SERVING_PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def test_serving_code_never_imports_or_calls_a_pickle_loader() -> None:
    problems = []
    for path in _sources():
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Call):
                func = node.func
                called = getattr(func, "attr", None) or getattr(func, "id", None)
                if called in {"__import__", "import_module"} and node.args:
                    first = node.args[0]
                    names = [first.value] if isinstance(first, ast.Constant) else []
                else:
                    names = []
                if called in UNSAFE_CALLS or any(k.arg in UNSAFE_CALLS for k in node.keywords):
                    problems.append(f"{where}:{node.lineno} calls {called}")
            else:
                names = []
            for name in names:
                if str(name).split(".")[0] in UNSAFE_MODULES:
                    problems.append(f"{where}:{node.lineno} imports {name}")
            if isinstance(node, ast.Constant) and node.value == PICKLE_MEDIA_TYPE:
                problems.append(f"{where}:{node.lineno} names {PICKLE_MEDIA_TYPE}")
    assert problems == []


def test_the_serving_entry_points_load_no_torch() -> None:
    code = (
        "import sys, service.service, monitoring.app\n"
        "assert 'torch' not in sys.modules, 'torch loaded'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
