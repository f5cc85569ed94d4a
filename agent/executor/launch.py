"""How an instance is started and stopped, as data: the command, where it runs, its environment,
and how the real process is recognised when the command is not the service itself.

A deployed package starts its entrypoint (`pid_strategy: spawn`: that process is the service;
`match`: the entrypoint exits and the service is found by name or command line). An adopted
process starts with its `start_command` and is found again the way it was adopted. Pure
functions of the spec, so tests assert on plans without starting anything.
"""

import shlex
from dataclasses import dataclass
from pathlib import Path

from agent.executor import locate, process
from agent.executor.health import ProbeContext
from agent.executor.restart import RestartPolicy
from agent.executor.runas import DATA_DIR, ENV_DATA_DIR, Account
from protocol import expand
from protocol.errors import ErrorCode, GdosError
from protocol.frozen import child_environ
from protocol.manifest import HealthCheck, Manifest, port_of
from protocol.messages import AdoptSpec, InstanceSpec

ENV_INSTANCE_ID = "GDOS_INSTANCE_ID"
ENV_INSTANCE_NAME = "GDOS_INSTANCE_NAME"
ENV_INSTANCE_INDEX = "GDOS_INSTANCE_INDEX"
LOCATE_TIMEOUT = 30.0  # how long a start command may take to bring its process up


@dataclass(frozen=True)
class Plan:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    target: locate.Target | None = None  # None: the spawned process is the service


def command_argv(command: str | list[str]) -> list[str]:
    """A list runs as given; a string is split into words the way a shell splits them, but no
    shell runs it (no pipes, `&&`, `$VAR` or globbing: GDOS never hands a string to a shell).
    An operator who wants a shell writes `["/bin/sh", "-c", "..."]` and owns that choice."""
    if isinstance(command, list):
        return list(command)
    words = shlex.split(command, posix=not process.IS_WINDOWS)
    if not words:
        raise GdosError(ErrorCode.VALIDATION_FAILED, "the command is empty")
    return words


def base_env(spec: InstanceSpec, manifest: Manifest | None) -> dict[str, str]:
    env = {**child_environ(), **(manifest.env if manifest else {}), **spec.env}
    env[ENV_INSTANCE_ID] = spec.instance_id
    env[ENV_INSTANCE_NAME] = spec.name
    if spec.index is not None:
        env[ENV_INSTANCE_INDEX] = str(spec.index)
    return env


def adopt_target(adopt: AdoptSpec) -> locate.Target:
    matcher = None
    if adopt.process_name or adopt.cmdline_pattern:
        matcher = locate.Matcher(adopt.process_name, adopt.cmdline_pattern)
    if adopt.strategy == "pid_file":
        assert adopt.pid_file
        return locate.Target(matcher=matcher, pid_file=Path(adopt.pid_file))
    assert matcher is not None
    return locate.Target(matcher=matcher)


def start_plan(
    spec: InstanceSpec, manifest: Manifest | None, instance_dir: Path, app: Path | None
) -> Plan:
    """`app`: the current release's folder (None for an adopted process). The arguments still
    hold `${VAR}`: `expanded` fills them once the environment is complete."""
    env = base_env(spec, manifest)
    if spec.adopt is not None:
        if not spec.adopt.start_command:
            raise GdosError(
                ErrorCode.INVALID_STATE,
                f"{spec.name} was adopted without a start command: GDOS cannot start it",
            )
        return Plan(
            command_argv(spec.adopt.start_command), instance_dir, env, adopt_target(spec.adopt)
        )
    if manifest is None or app is None:
        raise GdosError(ErrorCode.INVALID_STATE, f"instance {spec.name} is not deployed")
    exe = process.executable(app / manifest.entrypoint)
    args = spec.args if spec.args is not None else manifest.args
    target = None
    if manifest.pid_strategy == "match":
        target = locate.Target(locate.Matcher(manifest.process_name, manifest.process_cmdline))
    return Plan([str(exe), *args], exe.parent, env, target)


def has_stop_command(spec: InstanceSpec, manifest: Manifest | None) -> bool:
    """Whether `stop_plan` may give a command (else the instance is stopped by signals)."""
    if spec.adopt is not None:
        return bool(spec.adopt.stop_command)
    return manifest is not None and bool(manifest.stop_entrypoint)


def stop_plan(
    spec: InstanceSpec, manifest: Manifest | None, instance_dir: Path, app: Path | None
) -> Plan | None:
    """The stop command, or None to stop by signals."""
    if spec.adopt is not None:
        if not spec.adopt.stop_command:
            return None
        return Plan(command_argv(spec.adopt.stop_command), instance_dir, _stop_env(spec, manifest))
    if manifest is None or not manifest.stop_entrypoint or app is None:
        return None
    exe = process.executable(app / manifest.stop_entrypoint)
    return Plan([str(exe), *manifest.stop_args], exe.parent, _stop_env(spec, manifest))


def _stop_env(spec: InstanceSpec, manifest: Manifest | None) -> dict[str, str]:
    # Without the id marker: a stop command is not one of the service's processes, and must
    # never be taken for it when an agent looks for its services by marker after a restart.
    env = base_env(spec, manifest)
    env.pop(ENV_INSTANCE_ID)
    return env


def stop_timeout(spec: InstanceSpec, manifest: Manifest | None) -> float:
    if spec.adopt is not None:
        return spec.adopt.stop_timeout
    return manifest.stop_timeout if manifest else 10.0


def restart_policy(spec: InstanceSpec, manifest: Manifest | None) -> RestartPolicy:
    if spec.adopt is not None:
        a = spec.adopt
        return RestartPolicy(a.restart, a.restart_limit, a.restart_window)
    if manifest is None:
        return RestartPolicy()
    return RestartPolicy(manifest.restart, manifest.restart_limit, manifest.restart_window)


def health_check(spec: InstanceSpec, manifest: Manifest | None) -> HealthCheck | None:
    if spec.adopt is not None:
        return spec.adopt.health
    return manifest.health if manifest else None


def expanded_health(check: HealthCheck, env: dict[str, str]) -> HealthCheck:
    """The check with `${VAR}` filled from the instance's environment; MissingVariable or
    ValueError (a tcp port that is none) when it cannot be."""
    changes: dict[str, object] = {"host": expand.expand(check.host, env, "the health check's host")}
    if isinstance(check.tcp, str):
        changes["tcp"] = port_of(expand.expand(check.tcp, env, "the health check's tcp port"))
    if check.http is not None:
        changes["http"] = expand.expand(check.http, env, "the health check's http URL")
    if check.command is not None:
        changes["command"] = expand.expand_all(check.command, env, "health command word")
    return check.replace(**changes)


def expanded(plan: Plan, check: HealthCheck | None, args: bool) -> Plan:
    """The plan with `${VAR}` in its arguments filled from its (complete) environment when
    `args` (a package's arguments; an adopted start command is run as written), checking the
    health check's too: a variable either lacks is a GdosError naming it."""
    try:
        argv = plan.argv
        if args:
            argv = [argv[0], *expand.expand_all(argv[1:], plan.env, "argument")]
        if check is not None:
            expanded_health(check, plan.env)
    except (expand.MissingVariable, ValueError) as exc:
        raise GdosError(ErrorCode.START_FAILED, str(exc)) from None
    return Plan(argv, plan.cwd, plan.env, plan.target)


def service_env(
    spec: InstanceSpec, manifest: Manifest | None, instance_dir: Path, account: Account | None
) -> dict[str, str]:
    """The environment the service is started with (what `${VAR}` in its health check reads)."""
    env = base_env(spec, manifest)
    if account is not None:
        env.update(account.env())
    if spec.adopt is None:
        env[ENV_DATA_DIR] = str(instance_dir / DATA_DIR)
    return env


def probe_context(
    spec: InstanceSpec,
    manifest: Manifest | None,
    app: Path | None,
    account: Account | None = None,
    refusal: str | None = None,
) -> ProbeContext:
    """A command probe runs as the service's account, from the current release (`app`);
    `refusal` (that account cannot be used) fails every command probe with that sentence
    rather than run it as the agent."""
    root = app if spec.adopt is None else None
    env = {**(manifest.env if manifest else {}), **spec.env}
    # The name, not the id marker: a probe is not one of the service's processes.
    env[ENV_INSTANCE_NAME] = spec.name
    if account is not None:
        env.update(account.env())
    return ProbeContext(root=root, env=env, account=account, refusal=refusal)


def with_account(plan: Plan, account: Account, instance_dir: Path, deployed: bool) -> Plan:
    """The plan's environment for its account (and, for a deployed service, its data folder)."""
    env = {**plan.env, **account.env()}
    if deployed:
        env[ENV_DATA_DIR] = str(instance_dir / DATA_DIR)
    return Plan(plan.argv, plan.cwd, env, plan.target)
