"""The search page at ``/`` of ``mmrec index serve`` in a real browser: headless Chromium driven by Selenium
(chromium and chromium-driver from Debian; ``make test`` installs them when root). The page loads, a text
query returns cards, a key query shows codes and marks the items that share a code prefix with the top
hit, an error shows one line, the keyboard alone drives it, and it fits a phone's width. SYNTHETIC topics.
Skips when no browser or driver is installed."""

import shutil

import pytest

pytest.importorskip("fastapi", reason="the server needs the 'serve' extra")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the dev extra)")

from index_data import TopicWords, item_files  # noqa: E402
from index_data import running_server as _running  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from mmrec.index import build_index  # noqa: E402

BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (BROWSER and DRIVER), reason="no chromium / chromedriver (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server(topics_data, tmp_path_factory):
    x, labels, keys = topics_data
    n = 1000
    index = build_index(x[:n], None, "faiss:Flat", keys=keys[:n], progress=False, n_queries=20)
    metadata, codes = item_files(tmp_path_factory.mktemp("items"), keys[:n], labels[:n])
    with _running(index, name="topics", metadata=str(metadata), codes=str(codes), encoder=TopicWords(x[:n], labels[:n])) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    except Exception as err:  # a browser that is installed but cannot start here
        pytest.skip(f"chromium did not start: {err}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _open(browser, server):
    browser.get(server.url + "/")
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "search").get_attribute("data-ready") == "1")


def _search(browser, query, mode="auto", k=None):
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(query)
    browser.find_element(By.CSS_SELECTOR, f"#mode option[value='{mode}']").click()
    if k is not None:
        field = browser.find_element(By.ID, "k")
        field.clear()
        field.send_keys(str(k))
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card")
                                     or d.find_element(By.ID, "error").is_displayed())
    return browser.find_elements(By.CSS_SELECTOR, "#results .card")


def test_page_loads_and_names_the_index(browser, server):
    _open(browser, server)
    assert browser.title == "mmrec index search"
    about = browser.find_element(By.ID, "about").text
    assert "topics: faiss index of 1000 items" in about and "text queries on" in about and "codes shown" in about


def test_text_query_returns_cards_with_captions_and_thumbnails(browser, server, topics_data):
    _open(browser, server)
    cards = _search(browser, "topic 3", k=8)
    assert len(cards) == 8
    assert all("of topic 3" in c.find_element(By.CLASS_NAME, "caption").text for c in cards)
    images = browser.find_elements(By.CSS_SELECTOR, "#results .card img")
    assert all(i.get_attribute("alt").startswith("image of") for i in images)
    assert "results in" in browser.find_element(By.ID, "status").text


def test_key_query_shows_codes_and_marks_the_shared_prefix(browser, server, topics_data):
    _, labels, _ = topics_data
    _open(browser, server)
    cards = _search(browser, "item-00003", mode="key", k=10)
    assert cards[0].get_attribute("data-key") == "item-00003"
    tokens = [s.text for s in cards[0].find_elements(By.CSS_SELECTOR, ".codes span")]
    assert tokens == [f"<a_{labels[3]}>", "<b_3>", "<c_3>"]
    shared = [c for c in cards[1:] if "shared" in c.get_attribute("class").split()]
    assert shared and len(shared) == len(cards) - 1  # the neighbours are of item 3's topic: same first code
    assert all("shares" in c.find_element(By.CLASS_NAME, "badge").text for c in shared)
    first_same = cards[1].find_elements(By.CSS_SELECTOR, ".codes span.same")
    assert first_same and first_same[0].text == f"<a_{labels[3]}>"


def test_an_error_shows_one_line(browser, server):
    _open(browser, server)
    assert _search(browser, "no-such-item", mode="key") == []
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "unknown key" in error.text and "\n" not in error.text
    height = browser.execute_script("return arguments[0].getBoundingClientRect().height", error)
    line = browser.execute_script("return parseFloat(getComputedStyle(arguments[0]).lineHeight)", error)
    assert height <= 1.5 * line


def test_keyboard_alone_searches_and_follows_neighbours(browser, server):
    _open(browser, server)
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("/")  # focuses the query box
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "q"
    active.send_keys("topic 5", Keys.ENTER)
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card"))
    button = browser.find_elements(By.CSS_SELECTOR, "#results .card button")[1]
    key = button.get_attribute("aria-label").removeprefix("neighbours of ")
    button.send_keys(Keys.ENTER)  # a real button: Enter activates it
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, "#results .card").get_attribute("data-key") == key)


def test_readable_at_phone_width(browser, server):
    browser.set_window_size(390, 844)
    try:
        _open(browser, server)
        _search(browser, "item-00003", mode="key", k=6)
        width = browser.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width[0] <= width[1]  # no sideways scrolling
        card = browser.find_element(By.CSS_SELECTOR, "#results .card")
        assert card.size["width"] >= 0.8 * width[1] - 40  # one card per row
        font = browser.execute_script("return parseFloat(getComputedStyle(document.body).fontSize)")
        assert font >= 14
    finally:
        browser.set_window_size(1200, 900)
