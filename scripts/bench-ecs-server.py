"""The moto server for scripts/bench-ecs.sh, with the two things a deploy benchmark needs
and moto lacks:

* a service scheduler. moto's services never start tasks and an UpdateService leaves the
  old deployment in place, so no tool could see a rollout finish. Here, as on ECS, a
  CreateService or an UpdateService to another task definition makes a new PRIMARY
  deployment (IN_PROGRESS, the previous one turns ACTIVE); BENCH_ROLLOUT_DELAY seconds
  later (default 3) the deployment's tasks run (RunTask with the service's group and
  network, held RUNNING), the old ones stop, the old deployment goes and the new one is
  COMPLETED with runningCount = desiredCount. The scheduler works inside the server, so it
  adds no requests to the log.
* a request log: one line per request, `<client>\t<action>`, in the file named by
  BENCH_REQUEST_LOG, where the client is `ferry` (aws-sdk-rust), `aws-cli` or `boto3`.

Requests are served one at a time, as in the test harness (tests/support/moto.rs). Prints
the port once bound; exits when stdin closes.
"""

import os
import sys
import threading
import time

from moto.core.utils import utcnow
from moto.ecs.models import EC2ContainerServiceBackend, ecs_backends
from moto.moto_api import state_manager
from moto.moto_api._internal import mock_random
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

DELAY = float(os.environ.get("BENCH_ROLLOUT_DELAY", "3"))
LOG = open(os.environ["BENCH_REQUEST_LOG"], "a", buffering=1)

app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()
# Tasks the scheduler starts stay RUNNING until it stops them.
state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})

# service ARN -> when its PRIMARY deployment began
rolling = {}


def new_deployment(service):
    for d in service.deployments:
        d["status"] = "ACTIVE"
    service.deployments.insert(
        0,
        {
            "id": f"ecs-svc/{mock_random.randint(0, 32**12)}",
            "status": "PRIMARY",
            "taskDefinition": service.task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": service.desired_count,
            "runningCount": 0,
            "failedTasks": 0,
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": "ECS deployment in progress.",
            "launchType": service.launch_type,
            "createdAt": utcnow(),
            "updatedAt": utcnow(),
        },
    )
    service.running_count, service.pending_count = 0, service.desired_count
    rolling[service.arn] = time.time()


original_create = EC2ContainerServiceBackend.create_service
original_update = EC2ContainerServiceBackend.update_service


def create_service(self, *args, **kwargs):
    service = original_create(self, *args, **kwargs)
    service.deployments = []
    new_deployment(service)
    return service


def update_service(self, props):
    name = props.get("service", "").split("/")[-1]
    cluster = props.get("cluster", "default")
    before = self._get_service(cluster, name).task_definition
    service = original_update(self, props)
    if service.task_definition != before:
        new_deployment(service)
    return service


EC2ContainerServiceBackend.create_service = create_service
EC2ContainerServiceBackend.update_service = update_service


def service_tasks(backend, service):
    return [
        t
        for t in backend.tasks.get(service.cluster_name, {}).values()
        if t.group == f"service:{service.name}" and t.last_status != "STOPPED"
    ]


def converge(backend, service):
    for t in service_tasks(backend, service):
        t.last_status, t.desired_status = "STOPPED", "STOPPED"
        t.stopped_reason = "Scaling activity initiated by (deployment)"
        t.stopped_at = utcnow()  # as ECS reports it (moto's own tasks have no stoppedAt)
    if service.desired_count:
        backend.run_task(
            service.cluster_name,
            service.task_definition,
            service.desired_count,
            None,
            f"ecs-svc/{service.name}",
            service.tags,
            "FARGATE",
            networking_configuration=service.network_configuration,
            group=f"service:{service.name}",
        )
    primary = service.deployments[0]
    primary.update(
        runningCount=service.desired_count,
        pendingCount=0,
        rolloutState="COMPLETED",
        rolloutStateReason="ECS deployment completed.",
    )
    service.deployments[:] = [primary]
    service.running_count, service.pending_count = service.desired_count, 0


def scheduler():
    while True:
        time.sleep(0.1)
        with one_at_a_time:
            now = time.time()
            for account, regions in list(ecs_backends.items()):
                for region, backend in list(regions.items()):
                    for service in list(backend.services.values()):
                        began = rolling.get(service.arn)
                        if began is not None and now - began >= DELAY and service.status == "ACTIVE":
                            converge(backend, service)
                            del rolling[service.arn]


def client(environ):
    agent = environ.get("HTTP_USER_AGENT", "")
    if "aws-sdk-rust" in agent:
        return "ferry"
    if "aws-cli" in agent:
        return "aws-cli"
    return "boto3"


def serialized(environ, start_response):
    action = environ.get("HTTP_X_AMZ_TARGET") or f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}"
    with one_at_a_time:
        LOG.write(f"{client(environ)}\t{action}\n")
        return list(app(environ, start_response))


server = make_server("127.0.0.1", 0, serialized, threaded=True, request_handler=MotoRequestHandler)
os.environ["MOTO_PORT"] = str(server.port)
print(server.port, flush=True)
sys.stdout = sys.stderr


def exit_with_parent():
    sys.stdin.buffer.read()
    os._exit(0)


threading.Thread(target=exit_with_parent, daemon=True).start()
threading.Thread(target=scheduler, daemon=True).start()
server.serve_forever()
