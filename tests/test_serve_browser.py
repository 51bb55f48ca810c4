"""The comparison page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver`` packages) driven by Selenium, against ``slimfast serve`` on a free loopback port.

It uploads the bundled photo, waits for the four codecs' results, checks that each image is
drawn at its natural size (one image pixel per device pixel at 100%) and twice that at 200%,
that the table holds numbers within the target, and saves a screenshot: in the test's temporary
folder, and as the README's docs/serve.png only when asked (``make serve-shot``, which sets
SLIMFAST_SCREENSHOT), so that a test run leaves the tree as it was. Without a browser it skips,
with the reason, except under CI=true, where a missing browser fails: .ci/run installs it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "slimfast" / "data" / "kodim23.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
TARGET_BPP = 0.62  # just above slim-fasinet-h-mse's widest point on this photo (0.61 bpp)
MODEL = "slim-fasinet-h-mse"

pytestmark = pytest.mark.slow  # starts a server and a browser


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs the browser test: {reason}")
    pytest.skip(reason)


def _browser() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium is not installed (pip install selenium)")
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'slimfast[serve]')")
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = next((p for p in map(shutil.which, DRIVERS) if p), None)
    if not browser or not driver:
        _missing("no Chromium and chromedriver (apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def server():
    _browser()
    from .test_serve_api import serve_process

    with serve_process("--workers", "2") as url:
        yield url


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--force-device-scale-factor=1", "--window-size=1440,1560", "--hide-scrollbars"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(chromedriver), options=options)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


def _wait(driver, condition, seconds: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(condition, message=what)


def _rendered(driver) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll('#cards .card img')].map((img) => ({
          id: img.closest('.card').id, natural: [img.naturalWidth, img.naturalHeight], complete: img.complete,
          shown: [img.getBoundingClientRect().width, img.getBoundingClientRect().height],
          dpr: window.devicePixelRatio}));""")


def _save_screenshot(driver, folder: Path) -> None:
    shot = folder / "serve.png"
    driver.save_screenshot(str(shot))
    wanted = os.environ.get("SLIMFAST_SCREENSHOT")
    if wanted:  # the README's copy: the swipe view and the table, lossless (it shows codec artifacts)
        from PIL import Image

        im = Image.open(shot).convert("RGB")
        im.crop((0, 0, im.width, min(im.height, 920))).save(wanted, optimize=True)


def test_page_compares_four_codecs_at_one_size(server, driver, tmp_path):
    from selenium.webdriver.common.by import By

    driver.get(server)
    _wait(driver, lambda d: d.execute_script("return document.querySelectorAll('#model option').length > 0"), 20,
          "the model list")
    driver.execute_script(f"const t = document.getElementById('target'); t.value = {TARGET_BPP};"
                          "t.dispatchEvent(new Event('input'));"
                          f"const m = document.getElementById('model'); m.value = '{MODEL}';"
                          "m.dispatchEvent(new Event('change'));")
    driver.find_element(By.ID, "file").send_keys(str(SAMPLE))
    rows = "#results tbody tr"
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 4 and all(
        r.get_attribute("data-state") != "pending" for r in d.find_elements(By.CSS_SELECTOR, rows)), 120,
        "four results")
    states = {r.get_attribute("id"): r.get_attribute("data-state") for r in driver.find_elements(By.CSS_SELECTOR, rows)}
    assert states == {f"row-{c}": "done" for c in ("slimfast", "webp", "avif", "jpeg")}, \
        [r.text for r in driver.find_elements(By.CSS_SELECTOR, rows)]
    _check_table(driver.find_elements(By.CSS_SELECTOR, rows))
    widths = driver.find_element(By.CSS_SELECTOR, "#card-slimfast .points").text
    assert widths.startswith(f"{MODEL}, widths:") and all(f"{w} (" in widths for w in (48, 72, 96, 144, 192)), widths
    _wait(driver, lambda d: all(i["complete"] and i["natural"][0] for i in _rendered(d)), 20, "images decoded")
    for img in _rendered(driver):
        assert img["natural"] == [768, 512], img
        assert [round(s * img["dpr"]) for s in img["shown"]] == [768, 512], img  # 100%: pixel for pixel
    _wait(driver, lambda d: d.find_element(By.ID, "swipe-section").is_displayed(), 10, "the swipe view")
    _save_screenshot(driver, tmp_path)
    _drag_divider(driver)
    driver.find_element(By.CSS_SELECTOR, "#zoom button[data-zoom='2']").click()
    for img in _rendered(driver):
        assert [round(s * img["dpr"]) for s in img["shown"]] == [1536, 1024], img


def _check_table(rows) -> None:
    limit = int(TARGET_BPP * 768 * 512 / 8)
    for row in rows:
        cells = [c.text for c in row.find_elements("css selector", "td")]
        name, numbers = cells[0], [float(c) for c in cells[2:]]  # bytes, bpp, PSNR, MS-SSIM, encode, decode
        size, bpp, psnr, msssim, enc, dec = numbers
        assert 0 < size <= limit, (name, size, limit)
        assert bpp == pytest.approx(size * 8 / (768 * 512), abs=1e-3)
        assert 20 < psnr < 60 and 0.5 < msssim <= 1 and enc > 0 and dec > 0, (name, numbers)


def _drag_divider(driver) -> None:
    """A drag on the swipe view moves the divider there and clips the left image to it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    stage = driver.find_element(By.ID, "stage")
    ActionChains(driver).move_to_element_with_offset(stage, 0, 0).click_and_hold() \
        .move_by_offset(-192, 0).release().perform()  # from the middle to a quarter of 768 px
    left = driver.execute_script("return document.getElementById('divider').style.left")
    clip = driver.execute_script("return document.getElementById('swipe-left').style.clipPath")
    assert float(left.rstrip("%")) == pytest.approx(25, abs=0.5), left
    assert clip.startswith("inset(0px 75") or clip.startswith("inset(0 75"), clip
