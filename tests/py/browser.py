"""The headless Chromium every page test drives (Debian's chromium and
chromium-driver, through selenium), and the small steps they share: load a
page despite a slow renderer, print one line per check and stop at the first
failure, poll until a condition holds.
"""
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--window-size=1280,900"):
    opts.add_argument(flag)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(30)


def load(url):
    """driver.get, once more after a renderer time-out (a loaded CI box)."""
    for attempt in range(3):
        try:
            driver.get(url)
            return
        except TimeoutException:
            if attempt == 2:
                raise
            time.sleep(1)


def check(cond, what):
    if not cond:
        print("FAIL " + what + " (at " + driver.current_url + ")", flush=True)
        driver.quit()
        sys.exit(1)
    print("ok " + what, flush=True)


def wait_for(cond, timeout=15):
    """Polls cond until it holds or the deadline passes; its last value."""
    deadline = time.time() + timeout
    value = cond()
    while not value and time.time() < deadline:
        time.sleep(0.1)
        value = cond()
    return value
