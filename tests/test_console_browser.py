"""The web console in a real browser (Debian chromium + chromium-driver, headless) against a
real running gateway: a reviewer logs in, sees a quarantined ultrasound with its redaction
boxes, releases it and sees it forwarded; a viewer cannot open an original nor release; an
action without the CSRF token is refused; wrong passwords lock the account.

Nothing is downloaded: selenium is given /usr/bin/chromedriver (never Selenium Manager).
Screenshots of each page go to the test's temporary folder (`screenshots/`).
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from argon2 import PasswordHasher
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from service_harness import (
    LOOPBACK,
    Gateway,
    Site,
    create_secret,
    gateway_command,
    make_site,
    running_gateway,
    wait_until,
)

from gateway.console import accounts as accounts_module
from gateway.console.accounts import Accounts, Role, default_users_file
from gateway.keys.keyed_hash import KeyedHash
from gateway.stores import quarantine

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
os.environ.setdefault("SE_OFFLINE", "true")  # selenium must never fetch a driver
webdriver = pytest.importorskip("selenium.webdriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="chromium-driver not installed"
)

from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402

PASSWORD = "console test password"
CONF = Path(__file__).resolve().parents[1] / "conf"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
NAME, PATIENT_ID = "Doe^Jane", "PID-7734"
BANNER_ROWS = 28  # the scanner's top banner, where it prints the name and ID


def _ultrasound(path: Path) -> None:
    """A 320x240 ultrasound whose top banner carries the patient's name and ID (a pixel
    rule's box), and the name again below the picture (OCR's to find)."""
    image = Image.new("L", (320, 240), 0)
    rng = np.random.default_rng(7)
    body = (rng.normal(0.45, 0.12, (150, 220)) * 200).clip(0, 255).astype(np.uint8)
    image.paste(Image.fromarray(body), (50, 60))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 16) if FONT.exists() else ImageFont.load_default()
    draw.text((6, 5), f"{NAME}  {PATIENT_ID}", fill=255, font=font)
    draw.text((60, 218), "JANE DOE", fill=230, font=font)  # below the picture: OCR's to find
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "US", "ConsoleTest", "Probe 1"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, "19700101"
    ds.StudyDate, ds.AccessionNumber = "20240102", "ACC991"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 240, 320, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.asarray(image).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    root = tmp_path_factory.mktemp("console")
    site = make_site(root / "site", create_secret(root / "keys"), destination={"folder": "x"})
    rules = root / "site" / "pixel_rules.yaml"
    rules.write_text(
        yaml.safe_dump({
            "selection": {"modalities": ["US"]},
            "allowlist": str(CONF / "pixel_allowlist.yaml"),
            "rules": [{"name": "scanner-banner", "conditions": {"Modality": "US"},
                       "boxes": [[0, 0, 0, BANNER_ROWS]]}],
        }, sort_keys=False),  # rules: last, where the console appends a marked region's rule
        encoding="utf-8",
    )  # fmt: skip
    site.write(
        destination={"folder": str(site.export), "retry": site.settings["destination"]["retry"]},
        deid={"ocr": True, "pixel_rules": str(rules)},
        http={**site.settings["http"], "console": True},
    )
    # Cheap argon2 parameters: the gateway verifies with the parameters a hash records.
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    saved = accounts_module._HASHER
    accounts_module._HASHER = cheap
    try:
        accounts = Accounts(default_users_file(site.storage))
        for name, role in (("rita", Role.REVIEWER), ("vera", Role.VIEWER), ("ada", Role.ADMIN),
                           ("lena", Role.REVIEWER)):  # fmt: skip
            accounts.add(name, PASSWORD, role)
    finally:
        accounts_module._HASHER = saved
    return site


def _hold(
    site: Site, name: str, reason: str = "identifier-found", stage: str = "verify",
    message: str = "PatientName in pixel data",
) -> str:  # fmt: skip
    """An ultrasound held in the quarantine, as the verify gate leaves one."""
    original = site.root / name
    _ultrasound(original)
    entry = quarantine.put(
        site.storage, original, reason=reason, stage=stage, message=message, origin="test",
        keyed_hash=KeyedHash(bytes(32)),
    )  # fmt: skip
    return entry.id


@pytest.fixture(scope="module")
def held(site: Site) -> list[str]:
    return [
        _hold(site, "first.dcm"),
        _hold(site, "second.dcm"),
        _hold(site, "third.dcm", "pixels-failed", "pixels", "cannot clean pixel data (OSError)"),
    ]


@pytest.fixture(scope="module")
def gateway(site: Site, held: list[str]) -> Iterator[Gateway]:
    # Debug logging: the console's requests and previews must not log patient data either.
    command = [*gateway_command(), "-v", "run", "-c", str(site.config)]
    with running_gateway(site, command=command) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                 "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(flag)
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"chromium-{os.getpid()}-{time.time_ns()}"
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _base(site: Site) -> str:
    return f"http://{LOOPBACK}:{site.http_port}"


def _shot(driver: Any, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"console-{name}.png"
    driver.save_screenshot(str(path))
    return path


def _login(driver: Any, site: Site, name: str, password: str = PASSWORD) -> None:
    driver.delete_all_cookies()
    driver.get(_base(site) + "/login")
    driver.find_element(By.ID, "user").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    _click_to_next_page(driver, driver.find_element(By.ID, "login"))


def _click_to_next_page(driver: Any, element: Any) -> None:
    """Click, then wait for the page the click loads (not the one it was made on)."""
    driver.execute_script("window.consoleTestOldPage = true;")
    element.click()

    def arrived() -> bool:
        try:
            script = "return !window.consoleTestOldPage && document.readyState === 'complete';"
            return bool(driver.execute_script(script))
        except WebDriverException:  # the inspector between two documents
            return False

    wait_until(arrived, timeout=30, what="the next page")


def _loaded(driver: Any, element_id: str) -> bool:
    script = f"var i = document.getElementById('{element_id}'); "
    script += "return i && i.complete && i.naturalWidth;"
    return bool(driver.execute_script(script))


def test_a_reviewer_sees_the_boxes_releases_and_the_instance_is_forwarded(
    site: Site, gateway: Gateway, held: list[str], browser: Any, tmp_path: Path
) -> None:
    _login(browser, site, "rita")
    assert browser.find_element(By.ID, "queue-depth").text == "0"
    assert "healthy" in browser.find_element(By.ID, "listening").text
    _shot(browser, tmp_path, "status")

    browser.get(_base(site) + "/quarantine")
    listed = browser.find_element(By.ID, "entries").text
    assert all(entry in listed for entry in held) and "identifier-found" in listed
    thumbnails = "return [...document.querySelectorAll('#entries img')]"
    thumbnails += ".every(i => i.complete && i.naturalWidth);"
    wait_until(lambda: browser.execute_script(thumbnails), timeout=20, what="the thumbnails")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#entries img")) == 3
    _shot(browser, tmp_path, "quarantine")
    Select(browser.find_element(By.ID, "stage")).select_by_visible_text("pixels")
    _click_to_next_page(browser, browser.find_element(By.ID, "filter"))
    filtered = browser.find_element(By.ID, "entries").text
    assert held[2] in filtered and held[0] not in filtered and held[1] not in filtered
    browser.get(_base(site) + "/quarantine?reason=identifier-found")
    filtered = browser.find_element(By.ID, "entries").text
    assert held[2] not in filtered and held[0] in filtered and held[1] in filtered

    _click_to_next_page(browser, browser.find_element(By.LINK_TEXT, held[0]))
    wait_until(lambda: _loaded(browser, "original") and _loaded(browser, "cleaned"), timeout=30,
               what="both pictures")  # fmt: skip
    boxes = browser.find_element(By.ID, "boxes").text
    assert int(browser.find_element(By.ID, "box-count").text) >= 1
    assert f"rule 0 0 320 {BANNER_ROWS}" in boxes and "ocr" in boxes
    diff = browser.find_element(By.ID, "diff").text
    assert NAME in diff and PATIENT_ID in diff  # a reviewer's header diff shows the original
    _shot(browser, tmp_path, "instance")

    # Mark a region the scanner prints on (drag on the original) and make it a rule.
    picture = browser.find_element(By.ID, "original")
    ActionChains(browser).move_to_element_with_offset(picture, -200, -150).click_and_hold()\
        .move_to_element_with_offset(picture, -100, -120).release().perform()  # fmt: skip
    corners = [int(browser.find_element(By.ID, k).get_attribute("value") or -1)
               for k in ("x0", "y0", "x1", "y1")]  # fmt: skip
    assert 0 <= corners[0] < corners[2] <= 320 and 0 <= corners[1] < corners[3] <= 240, corners
    browser.find_element(By.CSS_SELECTOR, "input[name=confirm]").click()
    form = browser.find_element(By.ID, "rule-form")
    _click_to_next_page(browser, form.find_element(By.CSS_SELECTOR, "button"))
    assert "added" in browser.find_element(By.TAG_NAME, "h1").text
    rules = yaml.safe_load((site.root / "pixel_rules.yaml").read_text(encoding="utf-8"))
    made = rules["rules"][-1]
    assert made["boxes"] == [corners] and made["conditions"]["Rows"] == 240
    browser.get(f"{_base(site)}/quarantine/{held[0]}")

    _click_to_next_page(browser, browser.find_element(By.ID, "release"))
    assert "released" in browser.find_element(By.ID, "done").text
    assert held[0] not in browser.find_element(By.ID, "entries").text
    wait_until(lambda: any(site.export.rglob("*.dcm")), timeout=40, what="the forwarded instance")
    cache = site.storage / "console" / "cache" / held[0]
    assert not cache.exists()  # the pictures of a released original are gone with it

    def forwarded_row() -> bool:
        browser.get(_base(site) + "/studies")
        return len(browser.find_elements(By.CSS_SELECTOR, "#forwarded tr.round")) == 1

    wait_until(forwarded_row, timeout=30, what="the round in the studies page")
    row = browser.find_element(By.CSS_SELECTOR, "#forwarded tr.round").text
    assert row.split()[-4:] == ["1", "1", "0", "forwarded"], row  # in, out, held, result
    _shot(browser, tmp_path, "studies")
    browser.get(_base(site) + "/")
    status = browser.find_element(By.TAG_NAME, "main").text
    assert "Forwarded in the last hour: 1 instances" in status
    _shot(browser, tmp_path, "status-after")
    events = [r["event"] for r in site.audit_records(event="console_release")]
    assert events == ["console_release"]
    assert site.audit_records(event="console_view_original")[0]["user"] == "rita"

    browser.get(_base(site) + "/profile")
    assert "not acknowledged" in browser.find_element(By.TAG_NAME, "main").text
    _shot(browser, tmp_path, "profile")

    _login(browser, site, "ada")
    browser.get(_base(site) + "/audit?q=" + urllib.parse.quote(held[0]))
    assert "console_release" in browser.find_element(By.ID, "audit").text
    pseudonym = site.audit_records()[0]["pseudo_study_uids"][0]
    browser.get(_base(site) + "/audit?q=" + urllib.parse.quote(pseudonym))
    found = browser.find_element(By.ID, "audit").text
    assert "study_round" in found and "console_release" not in found
    _shot(browser, tmp_path, "audit")
    log = gateway.log()
    assert NAME not in log and PATIENT_ID not in log and PASSWORD not in log


def test_a_viewer_gets_403_on_an_original_and_cannot_release(
    site: Site, gateway: Gateway, held: list[str], browser: Any, tmp_path: Path
) -> None:
    _login(browser, site, "vera")
    browser.get(f"{_base(site)}/quarantine")
    assert not browser.find_elements(By.CSS_SELECTOR, "#entries img")  # no thumbnails
    browser.get(f"{_base(site)}/quarantine/{held[1]}")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "identifier-found" in page and NAME not in page and PATIENT_ID not in page
    assert not browser.find_elements(By.ID, "original")
    assert not browser.find_elements(By.ID, "release")
    browser.get(f"{_base(site)}/quarantine/{held[1]}/original.png")
    assert "403" in browser.find_element(By.TAG_NAME, "h1").text
    _shot(browser, tmp_path, "viewer-403")

    viewer = _Client(site)
    viewer.login("vera")
    token = viewer.token("/quarantine")
    assert viewer.post(f"/quarantine/{held[1]}/release", {"csrf_token": token}) == 403
    assert viewer.get(f"/quarantine/{held[1]}/original.png") == 403
    assert viewer.get(f"/quarantine/{held[1]}/cleaned.png") == 403
    assert viewer.get(f"/quarantine/{held[1]}/thumbnail.png") == 403
    assert held[1] in [entry.id for entry in quarantine.entries(site.storage)]


def test_an_action_without_the_csrf_token_is_refused(site: Site, gateway: Gateway,
                                                     held: list[str]) -> None:  # fmt: skip
    reviewer = _Client(site)
    reviewer.login("rita")
    assert reviewer.get(f"/quarantine/{held[1]}/original.png") == 200
    assert reviewer.post(f"/quarantine/{held[1]}/purge", {}) == 403
    assert reviewer.post(f"/quarantine/{held[1]}/purge", {"csrf_token": "forged"}) == 403
    assert held[1] in [entry.id for entry in quarantine.entries(site.storage)]
    refused = site.audit_records(event="console_csrf_refused")
    assert refused and refused[-1]["user"] == "rita"


def test_wrong_passwords_lock_the_account(
    site: Site, gateway: Gateway, browser: Any, tmp_path: Path
) -> None:
    for _ in range(5):
        _login(browser, site, "lena", "not the password")
        assert "Wrong user name or password" in browser.find_element(By.ID, "problem").text
    _login(browser, site, "lena")
    assert "locked" in browser.find_element(By.ID, "problem").text
    _shot(browser, tmp_path, "locked")
    assert [r["user"] for r in site.audit_records(event="console_lockout")] == ["lena"]
    assert _Client(site).login("lena") == 429


class _Client:
    """Plain HTTP with a cookie jar: what a script (or an attacker's page) sends."""

    def __init__(self, site: Site) -> None:
        self.base = _base(site)
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(jar), _NoRedirect()
        )

    def _open(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.base + path, data=body, timeout=30) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def token(self, path: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self._open(path)[1])
        assert found
        return found.group(1)

    def get(self, path: str) -> int:
        return self._open(path)[0]

    def post(self, path: str, data: dict[str, str]) -> int:
        return self._open(path, data)[0]

    def login(self, name: str) -> int:
        token = self.token("/login")
        return self.post("/login", {"user": name, "password": PASSWORD, "csrf_token": token})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
