"""Writes points to homepot with the stock InfluxDB 1.x Python client, which posts line
protocol to /write with the key as its password (`p`).

Usage: influx_v1_write.py HOST PORT API_KEY MEASUREMENT
"""
import sys

from influxdb import InfluxDBClient

host, port, key, measurement = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
client = InfluxDBClient(host=host, port=port, username="homepot", password=key, database="homepot")
points = [
    {"measurement": measurement, "tags": {"host": "server1"}, "fields": {"usage": 45.2, "count": 3, "note": "a b,c"}},
    {"measurement": measurement, "tags": {"host": "server2"}, "fields": {"usage": 12.5, "count": 1, "note": "x"}},
]
if not client.write_points(points, time_precision="s", batch_size=1):
    sys.exit(1)
