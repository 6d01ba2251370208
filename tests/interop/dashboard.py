"""The dashboard in a real browser (headless Chromium through chromedriver and selenium).

    python3 dashboard.py BASE_URL ADMIN_KEY READ_KEY SCREENSHOT_DIR

Signs in, registers a device and posts its health checks over HTTP while the fleet page is
open, waits for the row and its sparkline to appear without a reload, opens the device and
checks that its charts have points and pixels (network and app charts included), rotates its
key as admin, sees an alert with admin actions, watches a node join on the live /ws feed,
charts a container measurement and a metric in the explorer, checks that a read key sees no
admin actions, and that signing out ends the session. Saves a screenshot of each page, and
of the fleet at phone width.
"""
import json
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

base, admin_key, read_key, shots = sys.argv[1:5]


def call(method, path, body=None, key=admin_key, raw=None):
    data = raw.encode() if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, method=method, data=data)
    request.add_header("X-API-Key", key)
    request.add_header("Content-Type", "text/plain" if raw is not None else "application/json")
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None


def status_of(method, path, body, key):
    try:
        call(method, path, body, key=key)
        return 200
    except urllib.error.HTTPError as error:
        return error.code


def painted(selector):
    """Blue pixels drawn on the canvas `selector`, if it has points (pages redraw while live)."""
    return driver.execute_script("""
        const c = document.querySelector(arguments[0]);
        if (!c || !c.width || !(Number(c.dataset.points) > 0)) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let blue = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 80 && d[i + 3] > 0) blue++;
        return blue;""", selector)


def chart_drawn(selector):
    wait.until(lambda _: painted(selector) > 0)
    return driver.find_element(By.CSS_SELECTOR, selector)


options = webdriver.ChromeOptions()
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"]:
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
    issued = call("POST", "/api/v1/devices/browser-till-1/keys")
    device_key = issued["api_key"]
    for cpu in (41.5, 47.0):
        call("POST", "/api/v1/devices/browser-till-1/health",
             {"is_healthy": True, "response_time_ms": 120, "system": {"cpu_percent": cpu, "memory_percent": 50.0, "disk_percent": 70.0},
              "network": {"latency_ms": 12, "rx_bytes": 1000, "tx_bytes": 500},
              "app_metrics": {"app_version": "2.1", "transactions_count": 40, "errors_count": 1}},
             key=device_key)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-device="browser-till-1"]')))
    spark = 'svg.spark[data-device="browser-till-1"][data-field="cpu_percent"] polyline'
    wait.until(lambda _: driver.execute_script("const l = document.querySelector(arguments[0]); return l && l.getAttribute('points')", spark))
    driver.save_screenshot(shots + "/fleet.png")
    driver.set_window_size(390, 844)
    time.sleep(0.3)
    driver.save_screenshot(shots + "/fleet-phone.png")
    driver.set_window_size(1280, 800)

    driver.find_element(By.LINK_TEXT, "browser-till-1").click()
    canvas = chart_drawn('canvas[data-field="cpu_percent"]')
    chart_drawn('canvas[data-field="latency_ms"]')
    chart_drawn('canvas[data-field="transactions_count"]')
    # The readout works from the keyboard.
    canvas.send_keys(Keys.ARROW_RIGHT)
    wait.until(lambda _: ": 4" in canvas.find_element(By.XPATH, "following-sibling::div").text)
    driver.save_screenshot(shots + "/device.png")
    # Choosing another range redraws the charts from the rollups.
    Select(driver.find_element(By.ID, "range")).select_by_value("2592000")
    wait.until(EC.staleness_of(canvas))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'canvas[data-field="cpu_percent"]')))

    # Rotating the device's key: a new secret shown once, the old key refused from then on.
    rotate = f'#device-keys button.rotate[data-key="{issued["key_id"]}"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, rotate))).click()
    secret = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#device-keys .secret code"))).text
    assert secret.startswith("hpk_") and secret != device_key, secret
    check = {"is_healthy": True, "response_time_ms": 100}
    assert status_of("POST", "/api/v1/devices/browser-till-1/health", check, device_key) == 401, "the old key is revoked"
    assert status_of("POST", "/api/v1/devices/browser-till-1/health", check, secret) == 200, "the new key works"
    device_key = secret

    # An alert: admins may acknowledge it.
    call("POST", "/api/v1/alerts/rules", {"id": "browser-sick", "kind": "unhealthy", "count": 1, "severity": "major"})
    call("POST", "/api/v1/devices/browser-till-1/health", {"is_healthy": False, "response_time_ms": 900}, key=device_key)
    driver.get(base + "/#/alerts")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "button.ack")))
    driver.save_screenshot(shots + "/alerts.png")
    # Gateway nodes: a node joins while the page is open, on the live feed and in the table.
    driver.get(base + "/#/nodes")
    wait.until(EC.text_to_be_present_in_element((By.ID, "feed-status"), "connected"))
    call("POST", "/api/v1/devices", {"device_id": "browser-node-1"})
    node_key = call("POST", "/api/v1/devices/browser-node-1/keys")["api_key"]
    node = {"timestamp": int(time.time()), "node_ip": "10.0.0.7", "hostname": "spore-7",
            "cpu": {"frequency_mhz": 160, "usage_percent": 91.0, "temperature_c": 58.3},
            "memory": {"total_bytes": 98304, "free_bytes": 45632, "used_bytes": 52672, "usage_percent": 53.6},
            "network": {"bytes_sent": 3245678, "bytes_received": 5678901, "packets_sent": 32456, "packets_received": 56789,
                        "rssi_dbm": -65, "signal_quality_percent": 75.5},
            "flash": {"total_bytes": 4194304, "used_bytes": 2097152, "free_bytes": 2097152, "usage_percent": 50.0},
            "labels": {"version": "1.0.0", "zone": "zone-1"}}
    call("POST", "/api/monitoring/nodes/browser-node-1/resources", node, key=node_key)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#node-events li[data-type="node_joined"]')))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#node-events li[data-type="threshold_crossed"]')))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-node="browser-node-1"]')))
    driver.save_screenshot(shots + "/nodes.png")

    # Containers: the latest snapshot per originator, and a measurement charted.
    driver.get(base + "/#/containers")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '[data-originator="Container:test2"]')))
    chart_drawn("#container-charts canvas")
    driver.save_screenshot(shots + "/containers.png")

    # The metrics explorer: a metric written over line protocol, picked by name and tag.
    call("POST", "/write", raw="browser_temp,site=north value=21.5\nbrowser_temp,site=south value=18.0")
    driver.get(base + "/#/metrics")
    Select(wait.until(EC.presence_of_element_located((By.ID, "explore-name")))).select_by_value("browser_temp")
    wait.until(lambda _: len(driver.find_elements(By.CSS_SELECTOR, "#explore-charts canvas")) == 2)
    Select(wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'select[data-tag="site"]')))).select_by_value("north")
    wait.until(lambda _: len(driver.find_elements(By.CSS_SELECTOR, "#explore-charts canvas")) == 1)
    chart_drawn("#explore-charts canvas")
    assert "null" not in driver.find_element(By.ID, "explore-charts").text, "no stray text"
    driver.save_screenshot(shots + "/metrics.png")
    driver.get(base + "/#/service")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#service-routes tbody tr")))
    driver.save_screenshot(shots + "/service.png")
    sign_out()

    # A read key: the same pages, no admin actions.
    sign_in(read_key)
    driver.get(base + "/#/device/browser-till-1")
    chart_drawn('canvas[data-field="cpu_percent"]')
    assert not driver.find_elements(By.ID, "device-keys"), "read keys see no key management"
    assert "null" not in driver.find_element(By.ID, "page").text, "no stray text"
    driver.get(base + "/#/alerts")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr[data-alert]")))
    assert not driver.find_elements(By.CSS_SELECTOR, "button.ack"), "read keys see no acknowledge button"
    assert not driver.find_elements(By.CSS_SELECTOR, "button.silence"), "read keys see no silence button"
    assert driver.find_element(By.ID, "who").text == "read-only"
    sign_out()
    status = driver.execute_script("return fetch('/api/v1/session').then(r => r.status)")
    assert status == 401, f"signed out, the session is gone: {status}"
    print("dashboard: sign-in, live fleet with sparklines, device charts and keys, alerts, nodes feed, containers, explorer, read-only and sign-out all work")
finally:
    driver.quit()
