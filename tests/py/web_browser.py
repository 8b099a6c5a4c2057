"""Drives mdb's web page in a real headless Chromium (Debian's chromium and
chromium-driver, through selenium). Prints one line per check; exits non-zero
on the first failure. Talks to the Rust test over stdin/stdout: it prints
READY when the page is open, waits for a line from the test (which commits
to the DB repository meanwhile), then waits for the change on the page.

usage: web_browser.py BASE_URL SCREENSHOT NEW_MACHINE
"""
import os
import sys
import time

from selenium.webdriver.common.by import By

from browser import check, driver, load, wait_for

base, screenshot, new_machine = sys.argv[1], sys.argv[2], sys.argv[3]


def severe_logs():
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def rows():
    return len(driver.find_elements(By.CSS_SELECTOR, "#machines tbody tr"))


def heading():
    found = driver.find_elements(By.CSS_SELECTOR, "#main h1")
    return found[0].text if found else ""


try:
    pages = {
        "/": "The lab at a glance",
        "/machines": "Machines",
        "/machines/alpha-cp-1": "alpha-cp-1",
        "/clusters": "Clusters",
        "/discovered": "Discovered hosts",
    }
    for path, title in pages.items():
        load(base + path)
        check(heading() == title, "page %s shows %r (not %r)" % (path, title, heading()))
        logs = severe_logs()
        check(not logs, "no console errors on %s: %s" % (path, logs))
    load(base + "/")
    saved = driver.save_screenshot(screenshot)
    with open(screenshot, "rb") as f:
        png = f.read(8)
    check(saved and png == b"\x89PNG\r\n\x1a\n" and os.path.getsize(screenshot) > 10000,
          "a screenshot of the overview (%d bytes)" % os.path.getsize(screenshot))

    # A phone's width: the page itself never scrolls sideways (wide tables
    # scroll inside their own box).
    driver.set_window_size(390, 844)
    for path in ("/", "/machines", "/machines/alpha-cp-1", "/clusters"):
        load(base + path)
        wide = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        check(wide <= 1, "readable on a phone, no sideways scroll on %s (%dpx)" % (path, wide))
    driver.set_window_size(1280, 900)

    load(base + "/machines")
    everything = rows()
    select = driver.find_element(By.NAME, "use")
    for option in select.find_elements(By.TAG_NAME, "option"):
        if option.get_attribute("value") == "games":
            option.click()
    driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait_for(lambda: "use=games" in driver.current_url and 0 < rows() < everything)
    check(0 < rows() < everything, "the use filter narrows the table (%d of %d)" % (rows(), everything))
    load(base + "/machines")
    box = driver.find_element(By.NAME, "q")
    box.send_keys("alpha")
    box.submit()
    wait_for(lambda: "q=alpha" in driver.current_url)
    names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#machines tbody tr td:first-child")]
    check(names and all("alpha" in n for n in names), "search narrows the table: %s" % names)

    load(base + "/machines/xss")
    check(wait_for(lambda: heading() == "xss"), "the machine with a script in its note loads")
    check(driver.execute_script("return window.__xss === undefined"), "the note's script is inert")
    check("<script>" in driver.find_element(By.CSS_SELECTOR, "dd.notes").text, "the note shows as text")

    load(base + "/discovered")
    driver.find_element(By.CSS_SELECTOR, "table.hosts tbody tr td:nth-child(2) a").click()
    wait_for(lambda: "/discovered/name:" in driver.current_url and driver.find_elements(By.CSS_SELECTOR, "td.presence"))
    check("/discovered/name:" in driver.current_url, "the address links to the host's history: " + driver.current_url)
    check(driver.execute_script("return window.x === undefined"), "the announced name's script is inert")
    went = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "td.presence")][-2:]
    check(went == ["down", "up"], "transitions, newest first: %s" % went)
    check(not severe_logs(), "no console errors on the host page")

    load(base + "/machines")
    driver.execute_script("window.__mark = 42")
    before = rows()
    print("READY", flush=True)
    sys.stdin.readline()
    deadline = time.time() + 20
    while time.time() < deadline and new_machine not in driver.page_source:
        time.sleep(0.2)
    check(new_machine in driver.page_source, "the commit shows up on the open page")
    check(driver.execute_script("return window.__mark") == 42, "without a reload")
    check(rows() == before + 1, "one more row")
    logs = severe_logs()
    check(not logs, "no console errors after the live update: %s" % logs)
finally:
    driver.quit()
print("browser checks passed", flush=True)
