"""The demo in a real browser: Debian's chromium, driven by Selenium.

The application is served by a real HTTP server in this process; the test
follows links and submits forms as a user would, checks the text of each
page, and saves screenshots of the main pages under var/screenshots/
(README's picture is one of them).  Without chromium and chromedriver the
test skips -- and fails under DBROUTER_REQUIRE_SERVERS=1 (CI, which
installs them: .ci/run).
"""

import os
import shutil
from pathlib import Path

import pytest
from webtest.http import StopableWSGIServer

from demo_app import close_demo, make_demo, toolbar_url
from server_fixtures import unavailable

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"


def _chromium():
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        unavailable(
            "chromium and chromedriver are not installed "
            "(apt-get install chromium chromium-driver; .ci/run does)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (the testing extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,900",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(driver))


@pytest.fixture
def browser():
    driver = _chromium()
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def server(tmp_path):
    app = make_demo(
        tmp_path,
        **{
            "pyramid.includes": "pyramid_debugtoolbar",
            "debugtoolbar.includes": "pyramid_dbrouter.debugtoolbar",
        },
    )
    server = StopableWSGIServer.create(app, host="127.0.0.1")
    yield server.application_url.rstrip("/")
    server.shutdown()
    close_demo(app)


def shot(driver, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # the whole page: the routing footer is below the fold
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1100, min(max(height + 120, 700), 2400))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(1100, 900)


def fill(driver, values):
    from selenium.webdriver.common.by import By

    for field_id, value in values.items():
        element = driver.find_element(By.ID, field_id)
        element.clear()
        element.send_keys(value)


def submit(driver, label):
    """Click the button *label*, and wait for the next page."""
    from selenium.webdriver.common.by import By

    click_and_wait(driver, By.XPATH, f"//button[normalize-space()='{label}']")


def click_and_wait(driver, by, value):
    """Click, and wait until the page the click left is gone."""
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    wait = WebDriverWait(driver, 20)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, value).click()

    def left(_driver):
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            # chromedriver's word, mid-navigation, for a node of the old page
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    wait.until(left)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def text(driver):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_the_demo_in_a_browser(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    assert "No album yet." in text(browser)
    # an album, through the form (an empty one first: the form comes back)
    click_and_wait(browser, By.LINK_TEXT, "Create an album")
    submit(browser, "Create the album")
    assert "Give the album a title and a folder name." in text(browser)
    shot(browser, "new-album-error")
    fill(browser, {"title": "Alps 2026", "key": "alps"})
    submit(browser, "Create the album")
    assert browser.current_url == server + "/albums/alps"
    for title, day, tags in (
        ("Sunrise on the ridge", "01/02/2025", "snow, mountain"),
        ("Frozen lake", "01/03/2026", "snow, water"),
        ("Hut at dusk", "01/04/2026", "mountain"),
    ):
        fill(browser, {"pic-title": title, "tags": tags})
        browser.find_element(By.ID, "taken").send_keys(day)
        submit(browser, "Add the picture")
    browser.get(server + "/albums/new")
    fill(browser, {"title": "Sea", "key": "sea"})
    submit(browser, "Create the album")
    fill(browser, {"pic-title": "Snowy beach", "tags": "snow, sand"})
    submit(browser, "Add the picture")

    browser.get(server + "/")
    assert "Alps 2026" in text(browser) and "Sea" in text(browser)
    shot(browser, "albums")
    click_and_wait(browser, By.LINK_TEXT, "Alps 2026")
    page = text(browser)
    assert "Frozen lake" in page and "router TenantRouter" in page
    shot(browser, "album")

    # archive the oldest picture, then open it by its id: from the archive
    browser.find_element(By.ID, "pic-1").click()
    submit(browser, "Archive the pictures ticked")
    assert "1 picture(s) moved to the archive." in text(browser)
    shot(browser, "archive")
    click_and_wait(browser, By.LINK_TEXT, "Sunrise on the ridge")
    assert "found in the archive" in text(browser)
    shot(browser, "archived-picture")

    # search every album: a fan-out
    browser.get(server + "/search")
    fill(browser, {"q": "snow"})
    submit(browser, "Search every album")
    page = text(browser)
    assert "Snowy beach" in page and "Frozen lake" in page
    assert "Sunrise on the ridge" not in page  # archived
    assert "router EveryAlbumRouter" in page
    shot(browser, "search")

    # the toolbar's panel for the search request
    browser.get(server + toolbar_url(browser.page_source))
    browser.find_element(By.CSS_SELECTOR, "#pDebugPanel-dbrouter a").click()
    page = text(browser)
    assert "router EveryAlbumRouter" in page and "Commit protocol" in page
    shot(browser, "toolbar-panel")
    names = ("albums", "album", "archive", "archived-picture", "search")
    names += ("new-album-error", "toolbar-panel")
    assert {f"{n}.png" for n in names} <= set(os.listdir(SCREENSHOTS))
