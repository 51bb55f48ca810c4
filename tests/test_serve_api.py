"""slimfast serve's HTTP API, in process (TestClient): coding, parameters, limits, bad requests.

Every refusal must be a 4xx (503 / 504 for the queue and the time limit) with a JSON error and
never a traceback. Images are small crops of the bundled photo, so the whole file runs in
seconds; the worker processes are real (the pool is what replaces a worker over its time limit).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import urllib.request
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'slimfast[serve]')")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's note about httpx vs httpx2
    from fastapi.testclient import TestClient

from slimfast.serve.app import create_app  # noqa: E402
from slimfast.serve.compare import largest_fitting  # noqa: E402
from slimfast.serve.jobs import JobError  # noqa: E402
from slimfast.serve.limits import ServeConfig  # noqa: E402
from slimfast.serve.routes import choose_format  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "slimfast" / "data" / "kodim23.png"
SLIM = "slim-fasinet-l-mse"


def _png(box=(200, 100, 456, 292)) -> bytes:
    buf = io.BytesIO()
    Image.open(SAMPLE).convert("RGB").crop(box).save(buf, "PNG")
    return buf.getvalue()


PHOTO = _png()  # 256 x 192
SMALL = _png((300, 200, 364, 248))  # 64 x 48


def _client(**config) -> TestClient:
    return TestClient(create_app(ServeConfig(**{"workers": 1, **config})), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client():
    with _client(workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def sfi(client) -> bytes:
    r = client.post("/v1/compress", content=PHOTO)
    assert r.status_code == 200, r.text
    return r.content


def _refused(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == status and body["error"] and "\n" not in body["error"]
    assert "Traceback" not in r.text
    return body["error"]


# -- coding ---------------------------------------------------------------------------------------
def test_compress_raw_body_gives_sfi_and_headers(client, sfi):
    r = client.post("/v1/compress?quality=75", content=PHOTO, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-slimfast"
    assert r.headers["x-slimfast-model"] == "fasinet-h-mse-q4"  # quality 75: the default model's point
    assert r.headers["x-slimfast-image-size"] == "256x192"
    assert int(r.headers["x-slimfast-bytes"]) == len(r.content)
    assert float(r.headers["x-slimfast-bpp"]) == pytest.approx(len(r.content) * 8 / (256 * 192), abs=1e-6)
    assert "x-slimfast-width" not in r.headers  # not a slimmable model
    assert r.content == sfi  # the same file as without parameters: the model's own point


def test_compress_multipart_with_form_fields(client):
    r = client.post("/v1/compress", files={"file": ("photo.png", PHOTO, "image/png")},
                    data={"model": SLIM, "width": "48"})
    assert r.status_code == 200, r.text
    assert (r.headers["x-slimfast-model"], r.headers["x-slimfast-width"]) == (SLIM, "48")
    wide = client.post(f"/v1/compress?model={SLIM}&width=192", content=PHOTO)
    assert len(wide.content) > len(r.content)


def test_compress_max_bytes_is_the_largest_file_that_fits(client):
    sizes = {w: len(client.post(f"/v1/compress?model={SLIM}&width={w}", content=PHOTO).content) for w in (72, 96)}
    r = client.post(f"/v1/compress?model={SLIM}&max_bytes={sizes[96] - 1}", content=PHOTO)
    assert r.status_code == 200 and len(r.content) <= sizes[96] - 1
    assert r.headers["x-slimfast-width"] == "72" and len(r.content) == sizes[72]
    assert "fit" in _refused(client.post("/v1/compress?max_bytes=10", content=PHOTO), 422)


def test_decompress_formats_by_parameter_and_accept(client, sfi):
    r = client.post("/v1/decompress", content=sfi)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (256, 192)
    assert r.headers["x-slimfast-image-size"] == "256x192"
    for how, fmt in (({"headers": {"Accept": "image/webp"}}, "WEBP"), ({"params": {"format": "jpeg"}}, "JPEG"),
                     ({"headers": {"Accept": "image/jpeg;q=0.5, image/webp;q=0.9"}}, "WEBP"),
                     ({"files": {"file": ("x.sfi", sfi)}, "data": {"format": "webp"}}, "WEBP")):
        kw = how if "files" in how else {"content": sfi, **how}
        r = client.post("/v1/decompress", **kw)
        assert r.status_code == 200, r.text
        assert Image.open(io.BytesIO(r.content)).format == fmt
    _refused(client.post("/v1/decompress", content=sfi, headers={"Accept": "image/gif"}), 406)


@pytest.mark.parametrize("accept, fmt", [(None, "png"), ("*/*", "png"), ("image/*", "png"), ("text/html, image/webp", "webp"),
                                         ("image/webp;q=0, image/jpeg", "jpeg")])
def test_choose_format(accept, fmt):
    assert choose_format(accept) == fmt


def test_models_healthz_and_docs(client):
    models = client.get("/v1/models").json()
    names = {m["name"]: m for m in models["models"]}
    assert models["default"] in names and names[SLIM]["widths"]
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["workers"] == health["alive"] == 2
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    spec = client.get("/openapi.json").json()
    assert {"/v1/compress", "/v1/decompress", "/v1/models", "/healthz", "/v1/compare"} <= set(spec["paths"])
    op = spec["paths"]["/v1/compress"]["post"]
    assert {p["name"] for p in op["parameters"]} == {"model", "quality", "width", "max_bytes", "target_bpp"}
    assert "multipart/form-data" in op["requestBody"]["content"]
    assert {"400", "413", "415", "422", "503", "504"} <= set(op["responses"])
    assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {p["name"] for p in spec["paths"]["/v1/decompress"]["post"]["parameters"]} >= {"format", "accept"}


def test_page_and_docs_load_nothing_from_elsewhere(client):
    for path in ("/", "/docs", "/static/app.js", "/static/style.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "://" not in r.text.replace("http://www.w3.org", ""), path  # no CDN, no remote font or script


# -- bad requests: 4xx and a JSON error, never a traceback ------------------------------------------
def _bomb_png(w: int = 50_000, h: int = 50_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _bomb_sfi(sfi: bytes) -> bytes:
    from slimfast.format import container  # test-only: a header that declares a huge image

    hdr = container.unpack(sfi)
    hdr.image_size = (16_000, 16_000)  # within the format, above the 64 Mi pixel default
    return container.pack(hdr)


def _multipart(body: bytes) -> tuple[bytes, dict]:
    payload = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
               b"Content-Type: image/png\r\n\r\n" + body + b"\r\n--XyZ--\r\n")
    return payload, {"Content-Type": "multipart/form-data; boundary=XyZ"}


@pytest.mark.parametrize("what, path, body, status", [
    ("empty body", "/v1/compress", b"", 400),
    ("not an image", "/v1/compress", b"hello, world" * 10, 415),
    ("truncated image", "/v1/compress", PHOTO[: len(PHOTO) // 2], 422),
    ("bomb header", "/v1/compress", _bomb_png(), 413),
    ("not an .sfi file", "/v1/decompress", PHOTO, 415),
    ("empty .sfi", "/v1/decompress", b"", 415),
    ("unknown parameter", "/v1/compress?effort=3", PHOTO, 422),
    ("bad value", "/v1/compress?quality=high", PHOTO, 422),
    ("out of range", "/v1/compress?quality=101", PHOTO, 422),
    ("quality and a size limit", "/v1/compress?quality=5&max_bytes=900", PHOTO, 422),
    ("unknown model", "/v1/compress?model=nope", PHOTO, 422),
    ("width of a fixed model", "/v1/compress?width=48", PHOTO, 422),
    ("unknown format", "/v1/decompress?format=gif", b"x", 422),
])
def test_bad_requests(client, what, path, body, status):
    _refused(client.post(path, content=body), status)


def test_bad_sfi_files(client, sfi):
    mid = len(sfi) // 2
    corrupt = sfi[:mid] + bytes([sfi[mid] ^ 0xFF]) + sfi[mid + 1:]
    assert "corrupt" in _refused(client.post("/v1/decompress", content=corrupt), 422).lower()
    assert "truncated" in _refused(client.post("/v1/decompress", content=sfi[:-7]), 422)
    _refused(client.post("/v1/decompress", content=sfi[:12]), 422)
    assert "limit" in _refused(client.post("/v1/decompress", content=_bomb_sfi(sfi)), 413)


def test_bad_multipart_bodies(client):
    body, headers = _multipart(PHOTO)
    assert client.post("/v1/compress", content=body, headers=headers).status_code == 200
    assert "cut off" in _refused(client.post("/v1/compress", content=body[: len(body) // 2], headers=headers), 400)
    _refused(client.post("/v1/compress", data={"quality": "5"}, files={"other": ("", b"")}), 400)  # no file
    _refused(client.post("/v1/compress", content=b"--XyZ\r\nContent-Disposition: form-data; name=\"quality\"\r\n\r\n5"
                                                 b"\r\n--XyZ--\r\n", headers=headers), 400)
    r = client.post("/v1/compress?quality=5", files={"file": ("a.png", PHOTO)}, data={"quality": "6"})
    assert "both" in _refused(r, 422)
    _refused(client.post("/v1/compress", files={"file": ("a.png", PHOTO)}, data={"colour": "red"}), 422)


def test_unknown_route_and_method(client):
    _refused(client.get("/v1/nothing"), 404)
    _refused(client.get("/v1/compress"), 405)
    _refused(client.get("/healthz?verbose=1"), 422)


# -- limits, each configurable ----------------------------------------------------------------------
def test_upload_limit():
    with _client(max_upload_bytes=8000) as c:
        assert "limit of 8000 bytes" in _refused(c.post("/v1/compress", content=PHOTO), 413)
        _refused(c.post("/v1/compress", files={"file": ("a.png", PHOTO)}), 413)
        assert c.post("/v1/compress", content=SMALL).status_code == 200  # 64 x 48: under 8000 bytes


def test_pixel_limit(sfi):
    with _client(max_pixels=64 * 48) as c:
        assert "3072 pixels" in _refused(c.post("/v1/compress", content=PHOTO), 413)
        _refused(c.post("/v1/decompress", content=sfi), 413)  # from the .sfi header, before decoding
        assert c.post("/v1/compress", content=SMALL).status_code == 200


def test_time_limit_replaces_the_worker():
    with _client(timeout_s=0.001) as c:
        before = c.get("/healthz").json()["pids"]
        assert "time limit" in _refused(c.post("/v1/compress", content=PHOTO), 504)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            health = c.get("/healthz").json()
            if health["replaced"] == 1 and health["idle"] == 1:
                break
            time.sleep(0.05)
        assert health["alive"] == 1 and health["pids"] != before


def test_a_worker_that_died_while_idle_is_replaced():
    with _client() as c:
        (pid,) = c.get("/healthz").json()["pids"]
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
        time.sleep(0.2)
        r = c.post("/v1/compress", content=SMALL)
        assert r.status_code == 200, r.text
        health = c.get("/healthz").json()
        assert health["replaced"] == 1 and pid not in health["pids"] and health["alive"] == 1


def test_full_queue_answers_503_with_retry_after():
    with _client(queue=0) as c:
        with ThreadPoolExecutor(6) as ex:
            replies = list(ex.map(lambda _: c.post(f"/v1/compress?model={SLIM}", content=PHOTO), range(6)))
        codes = sorted(r.status_code for r in replies)
        assert 200 in codes and 503 in codes, codes
        busy = next(r for r in replies if r.status_code == 503)
        _refused(busy, 503)
        assert int(busy.headers["retry-after"]) >= 1


def test_command_line_defaults_bind_loopback():
    import argparse

    from slimfast.errors import SlimfastError
    from slimfast.serve import add_parser, config_from

    sub = argparse.ArgumentParser().add_subparsers()
    parser = add_parser(sub)
    config = config_from(parser.parse_args([]))
    assert config.host == "127.0.0.1" and config.workers >= 1 and config.queue >= 1
    config = config_from(parser.parse_args(["--workers", "3", "--timeout", "2.5", "--max-upload-bytes", "99",
                                            "--max-pixels", "1000", "--queue", "0", "-m", SLIM]))
    assert (config.workers, config.timeout_s, config.max_upload_bytes, config.max_pixels, config.queue, config.model) \
        == (3, 2.5, 99, 1000, 0, SLIM)
    with pytest.raises(SlimfastError, match="unknown model"):
        config_from(parser.parse_args(["-m", "nope"]))


def test_config_validation():
    for bad in ({"workers": 0}, {"queue": -1}, {"timeout_s": 0}, {"max_upload_bytes": 0}, {"max_pixels": True}):
        with pytest.raises(ValueError):
            ServeConfig(**bad)


# -- the comparison page's endpoint -----------------------------------------------------------------
@pytest.mark.parametrize("codec", ["slimfast", "webp", "avif", "jpeg"])
def test_compare_each_codec_fits_the_target(client, codec):
    if codec != "slimfast" and not client.get("/v1/compare").json()["codecs"][codec]:
        pytest.skip(f"this Pillow has no {codec}")
    model = f"&model={SLIM}" if codec == "slimfast" else ""
    r = client.post(f"/v1/compare?codec={codec}&target_bpp=0.8{model}", content=PHOTO)
    assert r.status_code == 200, r.text
    d = r.json()
    limit = int(0.8 * 256 * 192 / 8)
    assert d["limit_bytes"] == limit and 0 < d["bytes"] <= limit
    assert d["bpp"] == pytest.approx(d["bytes"] * 8 / (256 * 192))
    assert d["psnr"] > 20 and 0 < d["msssim"] <= 1 and d["encode_ms"] > 0 and d["decode_ms"] > 0
    png = Image.open(io.BytesIO(__import__("base64").b64decode(d["image"].split(",", 1)[1])))
    assert png.size == (256, 192)
    if codec == "slimfast":
        assert d["widths"] and [p["label"] for p in d["points"]] == [f"width {w}" for w in sorted(d["widths"])]
        assert sum(p["chosen"] for p in d["points"]) == 1


def test_compare_refusals(client):
    assert "fit" in _refused(client.post("/v1/compare?codec=jpeg&max_bytes=50", content=PHOTO), 422)
    _refused(client.post("/v1/compare?codec=jpeg", content=PHOTO), 422)  # no target
    _refused(client.post("/v1/compare?codec=gif&max_bytes=5000", content=PHOTO), 422)
    with _client(page_max_pixels=1000) as c:
        _refused(c.post("/v1/compare?codec=jpeg&max_bytes=5000", content=PHOTO), 413)


def test_largest_fitting_bisects_and_never_exceeds():
    sizes = {q: 100 + 10 * q for q in range(101)}
    q, data = largest_fitting(lambda q: b"x" * sizes[q], 0, 100, 555)
    assert q == 45 and len(data) == 550
    bumpy = {q: (100 + 10 * q) + (300 if q == 50 else 0) for q in range(101)}  # one non-monotone step
    q, data = largest_fitting(lambda q: b"x" * bumpy[q], 0, 100, 700)
    assert len(data) <= 700
    with pytest.raises(JobError):
        largest_fitting(lambda q: b"x" * sizes[q], 0, 100, 50)


# -- the extra needs no torch -------------------------------------------------------------------------
def test_server_codes_without_torch(tmp_path):
    blocker = tmp_path / "torch"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked for this test')\n")
    script = textwrap.dedent(f"""
        import sys, warnings
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
        from slimfast.serve.app import create_app
        from slimfast.serve.limits import ServeConfig
        photo = open({str(SAMPLE)!r}, "rb").read()
        with TestClient(create_app(ServeConfig(workers=1))) as c:
            r = c.post("/v1/compress", content=photo)
            assert r.status_code == 200, r.text
            assert c.post("/v1/decompress", content=r.content).status_code == 200
            r = c.post("/v1/compare?codec=slimfast&target_bpp=1", content=photo)
            assert r.status_code == 200 and r.json()["msssim"] > 0, r.text
        assert "torch" not in sys.modules
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# -- a real server: what TestClient cannot send ---------------------------------------------------------
@contextlib.contextmanager
def serve_process(*args: str, seconds: float = 60):
    """``python -m slimfast.serve`` on a free loopback port; yields its base URL once healthy."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "slimfast.serve", "--port", str(port), "--log-level", "warning",
                             *args], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + seconds
        while not _healthy(url):
            assert proc.poll() is None, f"slimfast serve exited with status {proc.returncode}"
            assert time.monotonic() < deadline, "slimfast serve did not become healthy"
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=2) as r:
            return json.load(r)["status"] == "ok"
    except OSError:
        return False


@pytest.mark.slow
def test_cut_off_upload_on_a_real_socket():
    with serve_process("--workers", "1") as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /v1/compress HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(PHOTO) + PHOTO[:1000])
            s.shutdown(socket.SHUT_WR)  # the client is gone before the body is complete
            reply = s.recv(65536)
        assert b"Traceback" not in reply and (not reply or reply.startswith(b"HTTP/1.1 400")), reply[:300]
        assert _healthy(url)
        req = urllib.request.Request(url + "v1/compress", data=PHOTO, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200 and r.headers["X-Slimfast-Model"]
