"""Signs in to mdb's page through a login proxy (Debian's nginx with
auth_request) in a real headless Chromium (Debian's chromium and
chromium-driver, through selenium). Prints one line per check; exits non-zero
on the first failure.

usage: web_login.py PROXY_URL PASSWORD
"""
import sys

from selenium.webdriver.common.by import By

from browser import check, driver, load, wait_for

base, password = sys.argv[1], sys.argv[2]


def sign_in(with_password):
    driver.find_element(By.ID, "user").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(with_password)
    driver.find_element(By.ID, "go").click()


def machine_rows():
    return driver.find_elements(By.CSS_SELECTOR, "#machines tbody tr")


try:
    for path in ("/", "/machines"):
        load(base + path)
        check(wait_for(lambda: "/login" in driver.current_url),
              "%s before signing in leads to the login page" % path)
        check("alpha-cp-1" not in driver.page_source, "%s shows no machine before signing in" % path)
    sign_in("wrong-" + password)
    check(wait_for(lambda: "failed=1" in driver.current_url), "a wrong password stays on the login page")
    check("alpha-cp-1" not in driver.page_source, "a wrong password shows no machine")
    sign_in(password)
    check(wait_for(lambda: "/login" not in driver.current_url), "the right password leaves the login page")
    load(base + "/machines")
    check(wait_for(lambda: len(machine_rows()) > 0), "the machines are shown once signed in")
    user = driver.find_elements(By.CSS_SELECTOR, ".user")
    check(user and user[0].text == "signed in as alice", "the page says who is signed in")
    driver.delete_all_cookies()
    load(base + "/machines")
    check(wait_for(lambda: "/login" in driver.current_url), "signing out (no cookie) leads to the login page again")
    print("login checks passed", flush=True)
finally:
    driver.quit()
