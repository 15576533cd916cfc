"""tickbus benchmark harness: tickbus side by side with raw pyzmq, NATS core and Redis pub/sub.

Run ``python -m bench.run`` (``make bench``); ``bench/README.md`` explains each measurement.
"""
