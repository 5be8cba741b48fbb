"""The moto server for scripts/bench-ecs.sh: the tests' ECS emulator
(tests/support/ecs_emulator.py: moto with a service scheduler, so a rollout finishes
BENCH_ROLLOUT_DELAY seconds after the update, default 3) with a request log, one line per
request, `<client>\t<action>`, in the file named by BENCH_REQUEST_LOG, where the client is
`ferry` (aws-sdk-rust), `aws-cli` or `boto3`. Prints the port once bound; exits when stdin
closes.
"""

import os
import sys

os.environ.setdefault("ECS_EMULATOR_ROLLOUT_DELAY", os.environ.get("BENCH_ROLLOUT_DELAY", "3"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "support"))

import ecs_emulator  # noqa: E402  (found through the path above)

ecs_emulator.main(open(os.environ["BENCH_REQUEST_LOG"], "a", buffering=1))
