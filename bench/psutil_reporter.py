"""The device health API's own reference reporter (psutil + requests), as its guide prints it,
with its interval and URL as arguments: the peer `bench/agent.sh` measures beside the agent.
    python3 bench/psutil_reporter.py BASE_URL DEVICE_ID KEY INTERVAL_SECONDS
"""
import sys
import time

import psutil
import requests

base, device, key, interval = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
start = time.time()
while True:
    memory, disk = psutil.virtual_memory(), psutil.disk_usage("/")
    payload = {
        "is_healthy": True,
        "response_time_ms": 0,
        "system": {
            "cpu_percent": psutil.cpu_percent(interval=1),
            "memory_percent": memory.percent,
            "memory_used_mb": memory.used // (1024 * 1024),
            "memory_total_mb": memory.total // (1024 * 1024),
            "disk_percent": disk.percent,
            "disk_used_gb": disk.used // (1024 ** 3),
            "disk_total_gb": disk.total // (1024 ** 3),
            "uptime_seconds": int(time.time() - start),
        },
    }
    try:
        requests.post(f"{base}/api/v1/devices/{device}/health", json=payload, headers={"X-API-Key": key}, timeout=5)
    except requests.exceptions.RequestException as error:
        print(f"Failed to send health check: {error}", file=sys.stderr)
    time.sleep(max(0.0, interval - 1))
