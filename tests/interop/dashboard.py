"""The dashboard in a real browser (headless Chromium through chromedriver and selenium).

    python3 dashboard.py BASE_URL ADMIN_KEY READ_KEY SCREENSHOT_DIR

Signs in, registers a device and posts its health checks over HTTP while the fleet page is
open, waits for the row to appear without a reload, opens the device and checks that its CPU
chart has points and pixels, acknowledges an alert as admin, checks that a read key sees no
admin actions, and that signing out ends the session. Saves a screenshot of each page.
"""
import json
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

base, admin_key, read_key, shots = sys.argv[1:5]


def call(method, path, body=None, key=admin_key):
    request = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("X-API-Key", key)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None


options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 20)


def sign_in(key):
    driver.get(base + "/")
    wait.until(EC.visibility_of_element_located((By.ID, "key"))).send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait.until(EC.visibility_of_element_located((By.ID, "nav")))


def sign_out():
    driver.find_element(By.ID, "logout").click()
    wait.until(EC.visibility_of_element_located((By.ID, "login")))


try:
    sign_in(admin_key)
    wait.until(EC.presence_of_element_located((By.ID, "fleet-rows")))
    assert "hpk_" not in driver.current_url, "no key in the URL"
    # A device appears while the page is open.
    call("POST", "/api/v1/devices", {"device_id": "browser-till-1", "name": "Till in the browser"})
    device_key = call("POST", "/api/v1/devices/browser-till-1/keys")["api_key"]
    for cpu in (41.5, 47.0):
        call("POST", "/api/v1/devices/browser-till-1/health",
             {"is_healthy": True, "response_time_ms": 120, "system": {"cpu_percent": cpu, "memory_percent": 50.0, "disk_percent": 70.0}},
             key=device_key)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-device="browser-till-1"]')))
    driver.save_screenshot(shots + "/fleet.png")

    driver.find_element(By.LINK_TEXT, "browser-till-1").click()
    canvas = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'canvas[data-field="cpu_percent"]')))
    assert int(canvas.get_attribute("data-points")) > 0, "the CPU chart has points"
    time.sleep(0.5)
    painted = driver.execute_script("""
        const c = document.querySelector('canvas[data-field="cpu_percent"]');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let blue = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 80) blue++;
        return blue;""")
    assert painted > 0, "the CPU chart is drawn"
    driver.save_screenshot(shots + "/device.png")
    # Choosing another range redraws the charts from the rollups.
    from selenium.webdriver.support.ui import Select
    Select(driver.find_element(By.ID, "range")).select_by_value("2592000")
    wait.until(EC.staleness_of(canvas))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'canvas[data-field="cpu_percent"]')))

    # An alert: admins may acknowledge it.
    call("POST", "/api/v1/alerts/rules", {"id": "browser-sick", "kind": "unhealthy", "count": 1, "severity": "major"})
    call("POST", "/api/v1/devices/browser-till-1/health", {"is_healthy": False, "response_time_ms": 900}, key=device_key)
    driver.get(base + "/#/alerts")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "button.ack")))
    driver.save_screenshot(shots + "/alerts.png")
    driver.get(base + "/#/nodes")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".cards .card")))
    driver.save_screenshot(shots + "/nodes.png")
    driver.get(base + "/#/service")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#service-routes tbody tr")))
    driver.save_screenshot(shots + "/service.png")
    sign_out()

    # A read key: the same pages, no admin actions.
    sign_in(read_key)
    driver.get(base + "/#/alerts")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-alert]")))
    assert not driver.find_elements(By.CSS_SELECTOR, "button.ack"), "read keys see no acknowledge button"
    assert not driver.find_elements(By.CSS_SELECTOR, "button.silence"), "read keys see no silence button"
    assert driver.find_element(By.ID, "who").text == "read-only"
    sign_out()
    status = driver.execute_script("return fetch('/api/v1/session').then(r => r.status)")
    assert status == 401, f"signed out, the session is gone: {status}"
    print("dashboard: sign-in, live fleet, chart, alerts, read-only and sign-out all work")
finally:
    driver.quit()
