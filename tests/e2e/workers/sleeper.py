"""A worker that only waits: says READY and sleeps until it is stopped."""

import time

print("READY", flush=True)
while True:
    time.sleep(1)
