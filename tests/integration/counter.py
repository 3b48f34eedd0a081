"""The checkpoint tests' long task: a counter holding 50 MB of state.

Every line carries the time the process started, so a restart (instead of a restore) would show up as
a second start time.
"""

COUNTER = """
import sys, time
state = bytearray(50 * 2**20)
t0 = time.time()
for i in range(int(sys.argv[1])):
    state[i * 4096 % len(state)] = i % 256
    print(i, t0, flush=True)
    time.sleep(0.1)
print("done", sum(state), flush=True)
"""
