"""Times the dashboard in headless Chromium against a running server with a large fleet.

    python3 bench/dashboard_timing.py BASE_URL ADMIN_KEY DEVICE [DEVICE ...]

The data: `cargo bench -p homepot-storage-sea --bench dashboard` builds a SQLite file of
10,000 devices, each with 24 hours of hourly CPU, memory and disk, and a month of minute
buckets for fleet-0042, fleet-0043 and fleet-0044. Serve it with the release build and pass
those three devices.

Prints, for five loads of the fleet page, when its first rows and its sparklines are present
(ms since navigation start, read in the page every 10 ms), the bytes the first load
transferred (the page's files, and the API answers), and for each device how long its four
charts take to redraw after choosing 30 d, with the time spent drawing on the canvases.
Needs chromium, chromium-driver and selenium.
"""
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

base, admin_key, devices = sys.argv[1], sys.argv[2], sys.argv[3:]
options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_script_timeout(60)
wait = WebDriverWait(driver, 60)

# Resolves with performance.now() once `test()` holds, checking every 10 ms.
WHEN = """
const done = arguments[arguments.length - 1];
const test = new Function(arguments[0]);
const tick = () => (test() ? done(performance.now()) : setTimeout(tick, 10));
tick();
"""

driver.get(base + "/")
wait.until(EC.visibility_of_element_located((By.ID, "key"))).send_keys(admin_key)
driver.find_element(By.CSS_SELECTOR, "#login button").click()
wait.until(EC.visibility_of_element_located((By.ID, "nav")))

for run in range(5):
    driver.get(base + "/#/fleet")
    driver.refresh()
    rows = driver.execute_async_script(WHEN, "return document.querySelectorAll('tr[data-device]').length >= 100")
    sparks = driver.execute_async_script(
        WHEN, "return [...document.querySelectorAll('svg.spark')].filter(c => Number(c.dataset.points) > 0).length >= 300")
    sizes = driver.execute_script("""
        const entries = [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')];
        const files = entries.filter(e => !e.name.includes('/api/')).reduce((n, e) => n + e.transferSize, 0);
        const api = entries.filter(e => e.name.includes('/api/')).reduce((n, e) => n + e.transferSize, 0);
        return [files, api];""")
    print("fleet load %d: first 100 rows at %.0f ms, sparklines at %.0f ms; transferred: page files %d B, API %d B"
          % (run + 1, rows, sparks, sizes[0], sizes[1]))

for device in devices:
    driver.get(base + "/#/device/" + device)
    driver.refresh()
    driver.execute_async_script(WHEN, "return document.querySelectorAll('canvas[data-draw-ms]').length >= 4")
    elapsed = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        for (const c of document.querySelectorAll('canvas[data-points]')) c.dataset.old = '1';
        const range = document.getElementById('range');
        const started = performance.now();
        range.value = '2592000';
        range.dispatchEvent(new Event('change'));
        const tick = () => {
          const fresh = [...document.querySelectorAll('canvas[data-draw-ms]')].filter(c => !c.dataset.old);
          if (fresh.length >= 4) done([performance.now() - started, fresh.reduce((n, c) => n + Number(c.dataset.drawMs), 0),
                                       fresh.map(c => Number(c.dataset.points))]);
          else setTimeout(tick, 10);
        };
        tick();""")
    print("device %s: four 30-day charts redrawn %.0f ms after choosing 30 d (drawing %.1f ms; points %s)"
          % (device, elapsed[0], elapsed[1], elapsed[2]))
driver.quit()
