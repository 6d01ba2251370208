"""Times the dashboard in headless Chromium against a running server with a large fleet.

    python3 bench/dashboard_timing.py BASE_URL ADMIN_KEY DEVICE_PREFIX

Prints when the fleet page's first rows are present (five loads) and how long a device page
takes to redraw its four charts for 30 days (three devices). Waits poll every 0.5 s, so each
figure is an upper bound. Needs chromium, chromium-driver and selenium.
"""
import sys
import time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait, Select
base, admin_key, prefix = sys.argv[1:4]
o = webdriver.ChromeOptions()
for f in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]: o.add_argument(f)
o.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
w = WebDriverWait(d, 30)
d.get(base + "/")
w.until(EC.visibility_of_element_located((By.ID, "key"))).send_keys(admin_key)
d.find_element(By.CSS_SELECTOR, "#login button").click()
w.until(EC.visibility_of_element_located((By.ID, "nav")))
for i in range(5):
    d.get(base + "/#/fleet"); d.refresh()
    t = time.time()
    w.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-device]")))
    print("fleet first rows after load: %.0f ms" % ((time.time() - t) * 1000))
    nav = d.execute_script("const e = performance.getEntriesByType('navigation')[0]; return [e.responseEnd, e.domContentLoadedEventEnd];")
    rows = d.execute_script("return performance.now()")
    print("  navigation responseEnd %.0f ms, DOMContentLoaded %.0f ms, rows present at %.0f ms since navigation start" % (nav[0], nav[1], rows))
for i in range(3):
    d.get(base + "/#/device/%s-%05d" % (prefix, 42 + i)); d.refresh()
    w.until(EC.presence_of_element_located((By.ID, "range")))
    w.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas[data-points]")) == 4)
    old = d.find_element(By.CSS_SELECTOR, "canvas[data-points]")
    t = time.time()
    Select(d.find_element(By.ID, "range")).select_by_value("2592000")
    w.until(EC.staleness_of(old))
    w.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "canvas[data-points]")) == 4)
    print("device: four 30-day charts after choosing 30 d: %.0f ms" % ((time.time() - t) * 1000))
d.quit()
