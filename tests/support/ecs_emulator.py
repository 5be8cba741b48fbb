"""moto's server with the ECS service scheduler moto lacks: the tests' emulator of ECS
deployments (tests/support/moto.rs starts it with `Moto::start_scheduler`) and the server of
scripts/bench-ecs.sh (scripts/bench-ecs-server.py imports this module).

moto's services never start tasks, an UpdateService leaves the old deployment in place, and
moto has none of the 2025 deployment APIs. Here, as on ECS:

* CreateService, or an UpdateService to another task definition, makes a new PRIMARY
  deployment (IN_PROGRESS; the previous one turns ACTIVE) and a *service deployment*
  (DescribeServiceDeployments, ListServiceDeployments; the service's
  `currentServiceDeployment` names it) that walks the lifecycle stages of its strategy
  (`deploymentConfiguration.strategy`):
  - ROLLING: SCALE_UP, then BAKE_TIME when `bakeTimeInMinutes` is set, CLEAN_UP;
  - BLUE_GREEN: PRE_SCALE_UP, SCALE_UP, POST_SCALE_UP, TEST_TRAFFIC_SHIFT,
    POST_TEST_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT (100 %), POST_PRODUCTION_TRAFFIC_SHIFT,
    BAKE_TIME, CLEAN_UP;
  - LINEAR: as blue/green, the production shift in steps of `stepPercent` with
    `stepBakeTimeInMinutes` between them;
  - CANARY: as blue/green, `canaryPercent` first, `canaryBakeTimeInMinutes` later the rest.
  SCALE_UP lasts ECS_EMULATOR_ROLLOUT_DELAY seconds (default 3); then the deployment's tasks
  run (RunTask with the service's group and network, held RUNNING), the old ones stop, and
  their private IPs are registered in the service's target groups (ELBv2, moto's). Bake
  times count ECS_EMULATOR_MINUTE seconds (default 60) per minute.
* Lifecycle hooks (`lifecycleHooks`): a PAUSE hook holds the deployment at its stage
  (hook status AWAITING_ACTION) until ContinueServiceDeployment (action CONTINUE goes on,
  ROLLBACK rolls back); an AWS_LAMBDA hook succeeds (moto runs Lambda functions only in
  Docker, and ECS only needs the hook's answer).
* Rollback: StopServiceDeployment (stopType ROLLBACK, the default; ABORT stops where it
  is), an alarm of `deploymentConfiguration.alarms` (enable) in ALARM state in moto's
  CloudWatch (set it with `set_alarm_state`) while the deployment runs, or the circuit
  breaker: tasks of a revision whose container health check command is `exit N` (N != 0)
  or `false` fail their health checks (the target groups say `Target.FailedHealthChecks`)
  and stop; once as many have failed as ECS's threshold (half the desired count, at least
  3, at most 200) the deployment fails. With rollback on (the alarm's or breaker's
  `rollback`, always for a stop) the service returns to the source task definition
  (status ROLLBACK_SUCCESSFUL, the legacy deployment FAILED with the reason); without it the
  deployment is FAILED and the service keeps what runs.

* Deletion (with ECS_EMULATOR_DRAIN > 0): DeleteService leaves the service DRAINING for
  that many seconds, its tasks still running; then they stop and it turns INACTIVE. While
  it drains, CreateService of the same name answers ECS's InvalidParameterException
  ("Unable to Start a service that is still Draining.") and UpdateService its
  ServiceNotActiveException. moto's own deletion (INACTIVE at once) is the default.

Everything else is moto's. The scheduler runs inside the server, so it adds no requests to
a request log (ECS_EMULATOR_REQUEST_LOG: one line per request, `<client>\t<action>`).
Requests are served one at a time, as in tests/support/moto.rs. Prints the port once bound;
exits when stdin closes.
"""

import io
import json
import math
import os
import sys
import threading
import time

from moto.core.utils import utcnow
from moto.ecs.exceptions import ECSException, InvalidParameterException
from moto.ecs.models import EC2ContainerServiceBackend, ecs_backends
from moto.moto_api import state_manager
from moto.moto_api._internal import mock_random
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

DELAY = float(os.environ.get("ECS_EMULATOR_ROLLOUT_DELAY", "3"))
MINUTE = float(os.environ.get("ECS_EMULATOR_MINUTE", "60"))
DRAIN = float(os.environ.get("ECS_EMULATOR_DRAIN", "0"))
TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."

app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()
# Tasks the scheduler starts stay RUNNING until it stops them.
state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})

# service deployment ARN -> its record (see `ServiceDeployment`)
deployments = {}
# the body of the CreateService / UpdateService being served (requests are one at a time)
current_request = {}


def epoch(t):
    return t.timestamp() if hasattr(t, "timestamp") else t


class ServiceDeployment:
    """One service deployment: the stages still ahead, and what happened."""

    def __init__(self, backend, service, source, config, legacy):
        self.backend, self.service = backend, service
        self.arn = service.arn.replace(":service/", ":service-deployment/", 1) + "/" + legacy["id"].split("/")[-1]
        self.source, self.target = source, service.task_definition
        self.config = config or {}
        self.legacy = legacy
        self.created = time.time()
        self.finished = None
        self.status, self.reason = "IN_PROGRESS", "ECS deployment in progress."
        self.stage = None
        self.stage_began = time.time()
        self.weight = 0.0
        self.hooks = []  # details of hooks run: hookId, targetType, targetArn, status, stage
        self.failures = 0
        self.triggered = []
        self.rollback = None
        self.tasks_started = False
        self.plan = self.stages()
        self.advance()

    def stages(self):
        """(stage, production weight after it, seconds it lasts at least). A service's first
        deployment has no traffic to move: it scales up and is done."""
        c = self.config
        strategy = c.get("strategy", "ROLLING")
        if self.source is None:
            return [("SCALE_UP", 100.0, DELAY), ("CLEAN_UP", 100.0, 0)]
        bake = c.get("bakeTimeInMinutes", 0) * MINUTE
        if strategy == "ROLLING":
            plan = [("SCALE_UP", 100.0, DELAY)]
            if bake:
                plan.append(("BAKE_TIME", 100.0, bake))
            return plan + [("CLEAN_UP", 100.0, 0)]
        plan = [
            ("PRE_SCALE_UP", 0.0, 0),
            ("SCALE_UP", 0.0, DELAY),
            ("POST_SCALE_UP", 0.0, 0),
            ("TEST_TRAFFIC_SHIFT", 0.0, 0),
            ("POST_TEST_TRAFFIC_SHIFT", 0.0, 0),
        ]
        shifts = []
        if strategy == "LINEAR":
            linear = c.get("linearConfiguration") or {}
            step = float(linear.get("stepPercent", 10.0))
            weight = 0.0
            while weight < 100.0:
                weight = min(100.0, weight + step)
                shifts.append((weight, linear.get("stepBakeTimeInMinutes", 6) * MINUTE if weight < 100.0 else 0))
        elif strategy == "CANARY":
            canary = c.get("canaryConfiguration") or {}
            shifts = [
                (float(canary.get("canaryPercent", 5.0)), canary.get("canaryBakeTimeInMinutes", 10) * MINUTE),
                (100.0, 0),
            ]
        else:
            shifts = [(100.0, 0)]
        for weight, wait in shifts:
            plan.append(("PRE_PRODUCTION_TRAFFIC_SHIFT", None, 0))
            plan.append(("PRODUCTION_TRAFFIC_SHIFT", weight, wait))
        plan.append(("POST_PRODUCTION_TRAFFIC_SHIFT", 100.0, 0))
        plan.append(("BAKE_TIME", 100.0, bake))
        plan.append(("CLEAN_UP", 100.0, 0))
        return plan

    def advance(self):
        """Enter the next stage: run its hooks; a PAUSE hook holds it there."""
        if not self.plan:
            self.finish("SUCCESSFUL", "ECS deployment completed.")
            return
        stage, weight, _ = self.plan[0]
        self.stage, self.stage_began = ("PRODUCTION_TRAFFIC_SHIFT" if stage == "PRE_PRODUCTION_TRAFFIC_SHIFT" else stage), time.time()
        if weight is not None:
            self.weight = weight
        for hook in (self.config.get("lifecycleHooks") or []) if self.source else []:
            if stage in (hook.get("lifecycleStages") or []):
                pause = hook.get("targetType") == "PAUSE"
                self.hooks.append(
                    {
                        "hookId": f"hook-{mock_random.randint(0, 32**8)}",
                        "targetType": hook.get("targetType", "AWS_LAMBDA"),
                        **({} if pause else {"targetArn": hook.get("hookTargetArn")}),
                        "status": "AWAITING_ACTION" if pause else "SUCCEEDED",
                        "stage": stage,
                    }
                )

    def waiting(self):
        return [h for h in self.hooks if h["status"] == "AWAITING_ACTION"]

    def failing(self):
        """Whether the target revision's tasks fail their health check (see the module doc)."""
        td = self.backend.describe_task_definition(self.target)
        for c in td.container_definitions:
            command = (c.get("healthCheck") or {}).get("command") or []
            last = command[-1].strip() if command else ""
            if last == "false" or (last.startswith("exit ") and last[5:].strip() not in ("", "0")):
                return True
        return False

    def tick(self, now):
        if self.finished is not None:
            return
        alarms = self.config.get("alarms") or {}
        if alarms.get("enable"):
            fired = alarms_in_alarm(self.service, alarms.get("alarmNames") or [])
            if fired:
                self.triggered = fired
                reason = f"ECS deployment {self.legacy['id']} rolled back: alarm(s) {', '.join(fired)} in ALARM state."
                self.fail(reason, alarms.get("rollback", False))
                return
        if self.waiting():
            return
        stage, _, lasts = self.plan[0]
        if now - self.stage_began < lasts:
            return
        if stage == "SCALE_UP":
            if self.failing():
                self.start_failing_tasks()
                breaker = self.config.get("deploymentCircuitBreaker") or {}
                if self.failures >= self.threshold() and breaker.get("enable"):
                    reason = (
                        f"ECS deployment circuit breaker: tasks failed to start. "
                        f"{self.failures} tasks failed their container health checks."
                    )
                    self.fail(reason, breaker.get("rollback", False))
                else:
                    self.stage_began = now  # the scheduler tries again
                return
            run_tasks(self.backend, self.service, self.target)
            self.legacy.update(runningCount=self.service.desired_count, pendingCount=0, updatedAt=utcnow())
        self.plan.pop(0)
        self.advance()

    def threshold(self):
        return min(max(math.ceil(self.service.desired_count / 2), 3), 200)

    def start_failing_tasks(self):
        count = max(self.service.desired_count, 1)
        self.failures += count
        self.legacy["failedTasks"] = self.failures
        tasks = self.backend.run_task(
            self.service.cluster_name, self.target, count, None, f"ecs-svc/{self.service.name}",
            self.service.tags, "FARGATE", networking_configuration=self.service.network_configuration,
            group=f"service:{self.service.name}",
        )
        groups = registering_groups(self.service)
        for t in tasks:
            t.health_status = "UNHEALTHY"
            for group in groups:
                group.targets[task_ip(t)] = {"Id": task_ip(t), "Port": group.port}
                unhealthy.add(task_ip(t))
            # As ECS says it: behind a load balancer the target group's checks decide.
            if groups:
                stop(t, f"Task failed ELB health checks in (target-group {groups[0].arn})")
            else:
                stop(t, "Task failed container health checks")

    def fail(self, reason, roll_back):
        self.legacy.update(rolloutState="FAILED", rolloutStateReason=reason)
        if roll_back and self.source:
            self.rollback = {"reason": reason, "startedAt": utcnow(), "serviceRevisionArn": self.source}
            restore(self.backend, self.service, self.source, self.legacy)
            self.finish("ROLLBACK_SUCCESSFUL", reason)
        else:
            self.finish("STOPPED", reason)

    def finish(self, status, reason):
        self.status, self.reason, self.finished = status, reason, time.time()
        self.stage = None if status != "SUCCESSFUL" else "CLEAN_UP"
        if status == "SUCCESSFUL":
            self.weight = 100.0
            # As on ECS, a deployment's updatedAt moves with its state: ferry paces the watch
            # of the next rollout by how long this one took.
            self.legacy.update(rolloutState="COMPLETED", rolloutStateReason="ECS deployment completed.", updatedAt=utcnow())
            self.service.deployments[:] = [self.legacy]
            self.service.running_count, self.service.pending_count = self.service.desired_count, 0

    def revision(self, arn, weight, running):
        desired = self.service.desired_count
        return {
            "arn": arn,
            "requestedTaskCount": desired,
            "runningTaskCount": desired if running else 0,
            "pendingTaskCount": 0 if running else desired,
            "requestedTestTrafficWeight": weight,
            "requestedProductionTrafficWeight": weight,
        }

    def answer(self):
        started = self.stage not in (None, "PRE_SCALE_UP", "SCALE_UP") or self.status == "SUCCESSFUL"
        out = {
            "serviceDeploymentArn": self.arn,
            "serviceArn": self.service.arn,
            "clusterArn": self.service.cluster_arn,
            "createdAt": self.created,
            "startedAt": self.created,
            "updatedAt": time.time(),
            "targetServiceRevision": self.revision(self.target, self.weight, started),
            "sourceServiceRevisions": [self.revision(self.source, 100.0 - self.weight, True)] if self.source else [],
            "status": self.status,
            "statusReason": self.reason,
            "deploymentConfiguration": self.config,
            "lifecycleHookDetails": [
                {k: v for k, v in h.items() if k != "stage"} for h in self.hooks if h["status"] == "AWAITING_ACTION"
            ],
        }
        if self.stage:
            out["lifecycleStage"] = self.stage
        if self.finished is not None:
            out["finishedAt"] = self.finished
            if self.status in ("STOPPED", "ROLLBACK_SUCCESSFUL"):
                out["stoppedAt"] = self.finished
        if self.rollback:
            out["rollback"] = {**self.rollback, "startedAt": epoch(self.rollback["startedAt"])}
        breaker = self.config.get("deploymentCircuitBreaker") or {}
        out["deploymentCircuitBreaker"] = {
            "status": ("TRIGGERED" if self.failures >= self.threshold() else "MONITORING") if breaker.get("enable") else "DISABLED",
            "failureCount": self.failures,
            "threshold": self.threshold(),
        }
        alarms = self.config.get("alarms") or {}
        out["alarms"] = {
            "status": ("TRIGGERED" if self.triggered else "MONITORING") if alarms.get("enable") else "DISABLED",
            "alarmNames": alarms.get("alarmNames") or [],
            "triggeredAlarmNames": self.triggered,
        }
        return out

    def brief(self):
        out = {
            "serviceDeploymentArn": self.arn,
            "serviceArn": self.service.arn,
            "clusterArn": self.service.cluster_arn,
            "createdAt": self.created,
            "startedAt": self.created,
            "targetServiceRevisionArn": self.target,
            "status": self.status,
            "statusReason": self.reason,
        }
        if self.finished is not None:
            out["finishedAt"] = self.finished
        return out


# task private IPs whose targets fail their health checks
unhealthy = set()


def task_ip(task):
    for a in getattr(task, "attachments", []):
        for d in a.get("details", []):
            if d.get("name") == "privateIPv4Address":
                return d["value"]
    return task.task_arn.rsplit("/", 1)[-1]


def target_groups(service):
    from moto.elbv2.models import elbv2_backends

    backend = elbv2_backends[service._account_id][service.region_name]
    groups = []
    for lb in service.load_balancers or []:
        for arn in (lb.get("targetGroupArn"), (lb.get("advancedConfiguration") or {}).get("alternateTargetGroupArn")):
            if arn and arn in backend.target_groups:
                groups.append(backend.target_groups[arn])
    return groups


def registering_groups(service):
    """The target groups a service's new task is registered in: each load balancer's own."""
    from moto.elbv2.models import elbv2_backends

    backend = elbv2_backends[service._account_id][service.region_name]
    arns = [lb.get("targetGroupArn") for lb in service.load_balancers or []]
    return [backend.target_groups[arn] for arn in arns if arn in backend.target_groups]


def alarms_in_alarm(service, names):
    from moto.cloudwatch.models import cloudwatch_backends

    backend = cloudwatch_backends[service._account_id][service.region_name]
    return [n for n in names if n in backend.alarms and backend.alarms[n].state_value == "ALARM"]


def service_tasks(backend, service):
    return [
        t
        for t in backend.tasks.get(service.cluster_name, {}).values()
        if t.group == f"service:{service.name}" and t.last_status != "STOPPED"
    ]


def stop(task, reason):
    task.last_status, task.desired_status = "STOPPED", "STOPPED"
    task.stopped_reason = reason
    task.stopped_at = utcnow()  # as ECS reports it (moto's own tasks have no stoppedAt)
    for group in target_groups_of_task.pop(task.task_arn, []):
        group.targets.pop(task_ip(task), None)


# task ARN -> the target groups its IP is registered in
target_groups_of_task = {}


def run_tasks(backend, service, task_definition):
    """The service's tasks replaced by `desired_count` of `task_definition`, registered in its
    target groups."""
    for t in service_tasks(backend, service):
        stop(t, "Scaling activity initiated by (deployment)")
    if service.desired_count:
        tasks = backend.run_task(
            service.cluster_name, task_definition, service.desired_count, None, f"ecs-svc/{service.name}",
            service.tags, "FARGATE", networking_configuration=service.network_configuration,
            group=f"service:{service.name}",
        )
        groups = registering_groups(service)
        for t in tasks:
            t.health_status = "HEALTHY"  # their health check passes (the failing ones never get here)
            for group in groups:
                group.targets[task_ip(t)] = {"Id": task_ip(t), "Port": group.port}
            target_groups_of_task[t.task_arn] = groups


def restore(backend, service, source, failed):
    """A rollback: the service back on `source`, in a new completed PRIMARY deployment."""
    service.task_definition = source
    failed["status"] = "ACTIVE"
    back = legacy_deployment(service)
    back.update(runningCount=service.desired_count, pendingCount=0, rolloutState="COMPLETED",
                rolloutStateReason="ECS deployment completed.")
    run_tasks(backend, service, source)
    service.deployments[:] = [back, failed]
    service.running_count, service.pending_count = service.desired_count, 0


def legacy_deployment(service):
    return {
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
    }


def new_deployment(backend, service, source):
    for d in service.deployments:
        d["status"] = "ACTIVE"
    # A new deployment supersedes the one in progress, as on ECS.
    for sd in deployments.values():
        if sd.service is service and sd.finished is None:
            sd.legacy.update(rolloutState="FAILED", rolloutStateReason="ECS deployment superseded by a newer one.")
            sd.finish("STOPPED", "Superseded by a newer service deployment.")
    legacy = legacy_deployment(service)
    service.deployments.insert(0, legacy)
    service.running_count, service.pending_count = 0, service.desired_count
    config = current_request.get("deploymentConfiguration")
    if config is not None:
        service.deployment_configuration = config
    sd = ServiceDeployment(backend, service, source, getattr(service, "deployment_configuration", None), legacy)
    deployments[sd.arn] = sd
    service.current_service_deployment = sd.arn


original_create = EC2ContainerServiceBackend.create_service
original_update = EC2ContainerServiceBackend.update_service
original_delete = EC2ContainerServiceBackend.delete_service

# service -> when its draining ends (DeleteService with ECS_EMULATOR_DRAIN > 0)
draining = {}


def existing_service(backend, cluster, name):
    try:
        return backend._get_service(cluster, name.split("/")[-1])
    except Exception:
        return None


def create_service(self, *args, **kwargs):
    cluster, name = (list(args) + [kwargs.get("cluster_str"), kwargs.get("service_name")])[:2]
    old = existing_service(self, cluster, name)
    if old is not None and old.status == "DRAINING":
        raise InvalidParameterException("Unable to Start a service that is still Draining.")
    service = original_create(self, *args, **kwargs)
    service.deployments = []
    # moto drops these on CreateService (and keeps them on UpdateService): keep them, as ECS does.
    service.health_check_grace_period_seconds = current_request.get("healthCheckGracePeriodSeconds")
    service.capacity_provider_strategy = current_request.get("capacityProviderStrategy")
    service.enable_execute_command = bool(current_request.get("enableExecuteCommand"))
    new_deployment(self, service, None)
    return service


def update_service(self, props):
    name = props.get("service", "").split("/")[-1]
    cluster = props.get("cluster", "default")
    if DRAIN > 0 and existing_service(self, cluster, name) is not None:
        if self._get_service(cluster, name).status != "ACTIVE":
            raise ServiceNotActiveException()
    before = self._get_service(cluster, name).task_definition
    service = original_update(self, props)
    if service.task_definition != before:
        new_deployment(self, service, before)
    return service


def delete_service(self, cluster_name, service_name, force):
    service = original_delete(self, cluster_name, service_name, force)
    if DRAIN > 0:
        service.status = "DRAINING"
        draining.setdefault(service, time.time() + DRAIN)  # deleting it again: no longer
    return service


def drain(now):
    """Services whose draining is over: tasks stopped, INACTIVE."""
    for service, until in list(draining.items()):
        if now >= until:
            del draining[service]
            for backends in ecs_backends.values():
                for backend in backends.values():
                    if backend.services.get(f"{service.cluster_name}:{service.name}") is service:
                        for t in service_tasks(backend, service):
                            stop(t, "Service deleted")
            service.status = "INACTIVE"


class ServiceNotActiveException(ECSException):
    code = "ServiceNotActiveException"

    def __init__(self):
        super().__init__("Service was not ACTIVE.")


EC2ContainerServiceBackend.create_service = create_service
EC2ContainerServiceBackend.update_service = update_service
EC2ContainerServiceBackend.delete_service = delete_service

moto_requirements = EC2ContainerServiceBackend._calculate_task_resource_requirements


def task_requirements(task_definition):
    """ECS on Fargate runs a container without memory of its own (a sidecar sharing the
    task's); moto's RunTask adds None and fails with a 500. Such a container counts as 0 MiB
    (as in tests/support/moto.rs)."""
    saved = [dict(c) for c in task_definition.container_definitions]
    for c in task_definition.container_definitions:
        if all(c.get(k) is None for k in ("memory", "memoryReservation", "Memory", "MemoryReservation")):
            c["memory"] = 0
    try:
        return moto_requirements(task_definition)
    finally:
        for c, before in zip(task_definition.container_definitions, saved):
            c.clear()
            c.update(before)


EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(task_requirements)


def health_for(original):
    def health(self, target, ec2_backend):
        status = original(self, target, ec2_backend)
        if target["Id"] in unhealthy:
            status.status, status.reason = "unhealthy", "Target.FailedHealthChecks"
            status.description = "Health checks failed"
        return status

    return health


def patch_elbv2():
    from moto.elbv2.models import FakeTargetGroup

    FakeTargetGroup.health_for = health_for(FakeTargetGroup.health_for)


patch_elbv2()


def scheduler():
    while True:
        time.sleep(0.1)
        with one_at_a_time:
            now = time.time()
            drain(now)
            for sd in list(deployments.values()):
                if sd.service.status == "ACTIVE":
                    sd.tick(now)


def error(start_response, code, message, status="400 Bad Request"):
    start_response(status, [("Content-Type", "application/x-amz-json-1.1")])
    return [json.dumps({"__type": code, "message": message}).encode()]


def ok(start_response, body):
    start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1")])
    return [json.dumps(body).encode()]


def deployment_api(action, body, start_response):
    """The 2025 deployment APIs, answered here (moto has none of them)."""
    if action == "DescribeServiceDeployments":
        found = [deployments[a].answer() for a in body.get("serviceDeploymentArns", []) if a in deployments]
        failures = [{"arn": a, "reason": "MISSING"} for a in body.get("serviceDeploymentArns", []) if a not in deployments]
        return ok(start_response, {"serviceDeployments": found, "failures": failures})
    if action == "ListServiceDeployments":
        service = body.get("service", "").split("/")[-1]
        cluster = body.get("cluster", "default").split("/")[-1]
        statuses = body.get("status") or []
        found = [
            sd.brief()
            for sd in sorted(deployments.values(), key=lambda d: d.created, reverse=True)
            if sd.service.name == service and sd.service.cluster_name == cluster and (not statuses or sd.status in statuses)
        ]
        return ok(start_response, {"serviceDeployments": found})
    sd = deployments.get(body.get("serviceDeploymentArn", ""))
    if sd is None:
        return error(start_response, "ServiceDeploymentNotFoundException", "The service deployment does not exist.")
    if sd.finished is not None:
        return error(start_response, "ConflictException", f"The service deployment is {sd.status}.")
    if action == "ContinueServiceDeployment":
        waiting = [h for h in sd.waiting() if body.get("hookId") in (None, h["hookId"])]
        if not waiting:
            return error(start_response, "InvalidParameterException", "No lifecycle hook is awaiting action.")
        if body.get("action", "CONTINUE") == "ROLLBACK":
            for h in waiting:
                h["status"] = "FAILED"
            sd.fail(f"ECS deployment {sd.legacy['id']} rolled back by ContinueServiceDeployment.", True)
        else:
            for h in waiting:
                h["status"] = "SUCCEEDED"
        return ok(start_response, {"serviceDeploymentArn": sd.arn})
    if action == "StopServiceDeployment":
        if body.get("stopType", "ROLLBACK") == "ABORT":
            sd.fail(f"ECS deployment {sd.legacy['id']} stopped by StopServiceDeployment.", False)
        else:
            sd.fail(f"ECS deployment {sd.legacy['id']} rolled back by StopServiceDeployment.", True)
        return ok(start_response, {"serviceDeploymentArn": sd.arn})
    return None


CLOUDWATCH_CBOR = "/service/GraniteServiceVersion20100801/operation/"


def cloudwatch_cbor(environ, start_response):
    """CloudWatch in the Smithy RPC v2 CBOR protocol the current AWS SDKs speak (moto answers
    only the query protocol): DescribeAlarms by name, from moto's CloudWatch."""
    import cbor2  # pip `cbor2`, installed beside moto by the harness
    from moto.cloudwatch.models import cloudwatch_backends

    action = environ.get("PATH_INFO", "")[len(CLOUDWATCH_CBOR):]
    raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    body = cbor2.loads(raw) if raw else {}
    scope = environ.get("HTTP_AUTHORIZATION", "").split("Credential=")[-1].split("/")
    region = scope[2] if len(scope) > 2 else "us-east-1"
    headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
    if action != "DescribeAlarms":
        start_response("400 Bad Request", headers)
        return [cbor2.dumps({"__type": "InvalidAction", "message": f"the emulator answers DescribeAlarms only, not {action}"})]
    backend = cloudwatch_backends["123456789012"][region]
    names = body.get("AlarmNames") or list(backend.alarms)
    found = [backend.alarms[n] for n in names if n in backend.alarms]
    start_response("200 OK", headers)
    return [cbor2.dumps({
        "MetricAlarms": [{"AlarmName": a.name, "AlarmArn": a.alarm_arn, "StateValue": a.state_value} for a in found],
        "CompositeAlarms": [],
    })]


DEPLOYMENT_ACTIONS = {"DescribeServiceDeployments", "ListServiceDeployments", "ContinueServiceDeployment", "StopServiceDeployment"}


def client(environ):
    agent = environ.get("HTTP_USER_AGENT", "")
    if "aws-sdk-rust" in agent:
        return "ferry"
    if "aws-cli" in agent:
        return "aws-cli"
    return "boto3"


def emulator(log=None):
    def serve(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET") or ""
        action = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else None
        with one_at_a_time:
            if log is not None:
                log.write(f"{client(environ)}\t{target or environ['REQUEST_METHOD'] + ' ' + environ.get('PATH_INFO', '')}\n")
            current_request.clear()
            if environ.get("PATH_INFO", "").startswith(CLOUDWATCH_CBOR):
                return cloudwatch_cbor(environ, start_response)
            if action in DEPLOYMENT_ACTIONS or action in ("CreateService", "UpdateService"):
                size = int(environ.get("CONTENT_LENGTH") or 0)
                raw = environ["wsgi.input"].read(size)
                environ["wsgi.input"] = io.BytesIO(raw)
                body = json.loads(raw or b"{}")
                if action in DEPLOYMENT_ACTIONS:
                    return deployment_api(action, body, start_response)
                current_request.update(body)
            answer = list(app(environ, start_response))
            if action in ("CreateService", "UpdateService", "DescribeServices"):
                answer = [add_service_fields(b"".join(answer))]
            return answer

    return serve


def add_service_fields(raw):
    """moto's service answers with what it drops: `currentServiceDeployment`, the deployment
    configuration's 2025 fields and the health check grace period."""
    try:
        out = json.loads(raw)
    except ValueError:
        return raw
    services = out.get("services") or ([out["service"]] if "service" in out else [])
    by_arn = {}
    for backends in ecs_backends.values():
        for backend in backends.values():
            for s in backend.services.values():
                by_arn[s.arn] = s
    for s in services:
        service = by_arn.get(s.get("serviceArn"))
        if service is None:
            continue
        if getattr(service, "current_service_deployment", None):
            s["currentServiceDeployment"] = service.current_service_deployment
        if getattr(service, "deployment_configuration", None):
            s["deploymentConfiguration"] = service.deployment_configuration
        if getattr(service, "health_check_grace_period_seconds", None) is not None:
            s["healthCheckGracePeriodSeconds"] = service.health_check_grace_period_seconds
        s["loadBalancers"] = service.load_balancers or []
    return json.dumps(out, default=str).encode()


def main(log=None):
    server = make_server("127.0.0.1", 0, emulator(log), threaded=True, request_handler=MotoRequestHandler)
    os.environ["MOTO_PORT"] = str(server.port)
    print(server.port, flush=True)
    sys.stdout = sys.stderr

    def exit_with_parent():
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    threading.Thread(target=scheduler, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    path = os.environ.get("ECS_EMULATOR_REQUEST_LOG")
    main(open(path, "a", buffering=1) if path else None)
