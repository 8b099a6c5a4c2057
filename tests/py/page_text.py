"""Loads one page in headless Chromium and checks that its visible text
holds each expected phrase (and none of the forbidden ones, given after
--not). Prints one line per check; exits 1 at the first failure.

Usage: page_text.py URL PHRASE... [--not PHRASE...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from browser import check, driver, load, wait_for  # noqa: E402

url, rest = sys.argv[1], sys.argv[2:]
wanted, unwanted = (rest[: rest.index("--not")], rest[rest.index("--not") + 1:]) if "--not" in rest else (rest, [])
load(url)
text = lambda: driver.find_element("tag name", "body").text  # noqa: E731
for phrase in wanted:
    check(wait_for(lambda: phrase in text()), "shows " + repr(phrase))
for phrase in unwanted:
    check(phrase not in text(), "does not show " + repr(phrase))
driver.quit()
