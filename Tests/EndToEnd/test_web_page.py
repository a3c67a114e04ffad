"""The HTTP side on Hummingbird: health, readiness, the JSON API, JPEG snapshots checked against the
picture itself, and the web page in a real headless Chromium (Debian's chromium + chromium-driver,
driven by selenium): cameras listed, previews not blank, a counter that moves; a screenshot goes to
out/web-page.png."""
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import numpy
import pytest

import support

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = support.REPO / "out" / "web-page.png"


def http_get(address, path, token=None, timeout=10):
    request = urllib.request.Request(f"http://{address}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.fixture
def relay(start_server, processes, tmp_path):
    """A relay-server with its HTTP side and a gateway relay-client with two cameras."""
    server = start_server("--metrics-listen", "127.0.0.1:0")
    settings = tmp_path / "gateway.yaml"
    settings.write_text(f"""server: {server.address}
cameras:
  - device: web-pattern
    test_pattern: true
    size: 320x180
    fps: 15
  - device: web-still
    synthetic: 320x240
    fps: 10
""")
    processes("relay-client", [support.RELAY_CLIENT, "publish", "--config", settings])
    return server


def decode_jpeg(jpeg):
    """(height, width, 3) bgr24 of a JPEG, as FFmpeg decodes it."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "json", "-"],
                           input=jpeg, capture_output=True, timeout=20, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", "-", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
                         input=jpeg, capture_output=True, timeout=20, check=True).stdout
    return numpy.frombuffer(raw, numpy.uint8).reshape(stream["height"], stream["width"], 3)


def test_health_readiness_and_the_device_api(relay, consumer):
    assert http_get(relay.metrics_address, "/healthz")[0] == 200
    status, _, body = http_get(relay.metrics_address, "/readyz")
    assert status == 200, body
    stub = consumer(relay.address)
    for device in ("web-pattern", "web-still"):
        support.wait_for_frame(stub, device, timeout=15)
    deadline = time.monotonic() + 10
    while True:  # a second of the pattern camera in the ring, for its rates
        status, headers, body = http_get(relay.metrics_address, "/api/devices")
        assert status == 200 and headers["Content-Type"] == "application/json"
        devices = {device["id"]: device for device in json.loads(body)}
        if devices.get("web-pattern", {}).get("ring_frames", 0) > 20 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert set(devices) == {"web-pattern", "web-still"}
    pattern = devices["web-pattern"]
    assert (pattern["codec"], pattern["width"], pattern["height"], pattern["state"]) == ("h264", 320, 180, "running")
    assert pattern["frames_stored"] > 0 and pattern["ring_frames"] > 0 and pattern["fps"] > 5
    assert devices["web-still"]["codec"] == "rawvideo"
    status, _, body = http_get(relay.metrics_address, "/api/devices/web-still")
    assert status == 200 and json.loads(body)["id"] == "web-still"
    assert http_get(relay.metrics_address, "/api/devices/nobody")[0] == 404
    assert http_get(relay.metrics_address, "/api/devices/bad%20id")[0] == 400
    status, _, body = http_get(relay.metrics_address, "/api/outbox")
    assert status == 200 and json.loads(body)["depth"] == 0


def test_a_snapshot_is_the_picture_as_a_jpeg(relay, consumer):
    stub = consumer(relay.address)
    frame = support.wait_for_frame(stub, "web-still", timeout=15)
    expected = support.image_of(frame)
    status, headers, jpeg = http_get(relay.metrics_address, "/api/devices/web-still/snapshot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    picture = decode_jpeg(jpeg)
    assert picture.shape == expected.shape
    # FFmpeg's own JPEG of the same picture at the same quantizer is the yardstick (this pattern of
    # one-pixel colour steps is hard on any 4:2:0 JPEG).
    reference = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{expected.shape[1]}x{expected.shape[0]}",
         "-i", "-", "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj420p", "-f", "mjpeg", "-"],
        input=expected.tobytes(), capture_output=True, timeout=20, check=True).stdout
    ours, ffmpegs = support.psnr(picture, expected), support.psnr(decode_jpeg(reference), expected)
    assert ours >= ffmpegs - 1.0, f"the snapshot is {ours:.1f} dB from the stored picture, FFmpeg's own JPEG {ffmpegs:.1f} dB"


def test_readiness_and_metrics_need_no_consumer_but_the_api_needs_the_role(start_server, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("viewer-token consume cam-*\nscraper-token metrics\n")
    server = start_server("--metrics-listen", "127.0.0.1:0", "--tokens", str(tokens))
    assert http_get(server.metrics_address, "/healthz")[0] == 200
    assert http_get(server.metrics_address, "/readyz")[0] == 200
    assert http_get(server.metrics_address, "/")[0] == 200, "the page itself holds no data"
    assert http_get(server.metrics_address, "/api/devices")[0] == 401
    assert http_get(server.metrics_address, "/api/devices", token="scraper-token")[0] == 403
    status, _, body = http_get(server.metrics_address, "/api/devices", token="viewer-token")
    assert status == 200 and json.loads(body) == []
    assert http_get(server.metrics_address, "/api/devices/other-1", token="viewer-token")[0] == 403
    assert http_get(server.metrics_address, "/metrics", token="scraper-token")[0] == 200


def test_the_page_in_headless_chromium(relay, consumer):
    assert CHROMIUM and CHROMEDRIVER, "needs Debian's chromium and chromium-driver: run scripts/setup"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    stub = consumer(relay.address)
    for device in ("web-pattern", "web-still"):
        support.wait_for_frame(stub, device, timeout=15)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.set_page_load_timeout(20)
        browser.get(f"http://{relay.metrics_address}/")
        deadline = time.monotonic() + 15
        while len(browser.find_elements(By.CSS_SELECTOR, "article.camera")) < 2:
            assert time.monotonic() < deadline, f"the page never listed both cameras: {browser.page_source[:2000]}"
            time.sleep(0.2)
        names = sorted(e.get_attribute("data-device") for e in browser.find_elements(By.CSS_SELECTOR, "article.camera"))
        assert names == ["web-pattern", "web-still"]

        # Each preview is a real, non-blank picture: its pixels vary.
        spread = """
            const image = document.querySelector(`article[data-device="${arguments[0]}"] img`);
            if (!image || !image.complete || image.naturalWidth === 0) return -1;
            const canvas = document.createElement("canvas");
            canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
            const context = canvas.getContext("2d");
            context.drawImage(image, 0, 0);
            const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let sum = 0, squares = 0, n = 0;
            for (let i = 0; i < pixels.length; i += 4 * 7) { const v = pixels[i]; sum += v; squares += v * v; n++; }
            const mean = sum / n;
            return Math.sqrt(squares / n - mean * mean);
        """
        for device in names:
            deadline = time.monotonic() + 15
            while (value := browser.execute_script(spread, device)) < 10:
                assert time.monotonic() < deadline, f"{device}'s preview stayed blank (spread {value})"
                time.sleep(0.25)

        # A counter moves within 3 s. Read in the page itself: it redraws its figures every second, so a
        # reference to an element would go stale.
        counter = """return document.querySelector(
            'article[data-device="web-pattern"] dd[data-field="frames-stored"]').textContent"""
        first = int(browser.execute_script(counter))
        deadline = time.monotonic() + 3
        while int(browser.execute_script(counter)) == first:
            assert time.monotonic() < deadline, f"frames stored stayed at {first} for 3 s"
            time.sleep(0.1)
        assert "depth 0" in browser.execute_script('return document.getElementById("outbox-figures").textContent')
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    finally:
        browser.quit()
    assert SCREENSHOT.stat().st_size > 10_000
