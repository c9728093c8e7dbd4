"""SkyPilot's Python API, run by the interpreter that has SkyPilot installed (stdlib and `sky` only).

SkyPilot pins click below 8.2 and huggingface_hub needs 8.4, so the two never share an environment: the
supervisor runs this file with SkyPilot's own interpreter (core.skypilot_job.Bridge) and reads its answer,
the last line of standard output, `@bridge <json>`. Commands:

  validate          task configs (a JSON list on stdin), each built and validated by sky.Task; answers, for
                    each, its YAML or SkyPilot's error
  launch NAME       the task as a managed job named NAME; answers {"job_id": N}
  state JOB         answers {"status": "RUNNING", "reason": ...} (status null: the job is unknown)
  cancel JOB        cancels the managed job
  logs JOB          follows the job's log to standard output until it ends
"""
from __future__ import annotations

import json
import os
import sys

ANSWER = "@bridge "


def task_from(config: dict, secrets_from_env: bool):
    """A sky.Task from a task config; secrets given as null take their value from this environment."""
    import sky

    secrets = config.get("secrets") or {}
    config["secrets"] = {k: (os.environ.get(k, "") if secrets_from_env else "<set at launch>") if v is None else v
                         for k, v in secrets.items()}
    task = sky.Task.from_yaml_config(config)
    task.validate(skip_file_mounts=True, skip_workdir=True)  # local paths are checked where the job is launched
    return task


def checked(config: dict) -> dict:
    """{"yaml": the task as SkyPilot writes it}, {"error": why SkyPilot rejects it}, or {"unchecked": why it could
    not tell (its accelerator catalog is fetched from the network on first use; requests' errors are OSErrors)}."""
    try:
        task = task_from(config, secrets_from_env=False)
    except OSError as exc:
        return {"unchecked": str(exc).strip() or type(exc).__name__}
    except Exception as exc:  # noqa: BLE001 - SkyPilot raises ValueError, its own config errors, ...
        return {"error": str(exc).strip() or type(exc).__name__}
    config = task.to_yaml_config()
    config.pop("_user_specified_yaml", None)
    return {"yaml": config}


def answer(value) -> None:
    print(ANSWER + json.dumps(value), flush=True)


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "validate":
        answer([checked(config) for config in json.load(sys.stdin)])
    elif command == "launch":
        import sky

        task = task_from(json.load(sys.stdin), secrets_from_env=True)
        job_ids, _ = sky.stream_and_get(sky.jobs.launch(task, name=args[0]))
        answer({"job_id": job_ids[0]})
    elif command == "state":
        import sky

        try:
            records = sky.get(sky.jobs.queue_v2(refresh=False, job_ids=[int(args[0])],
                                                fields=["job_id", "status", "failure_reason"]))[0]
        except sky.exceptions.ClusterNotUpError as exc:  # no jobs controller (yet, or any more)
            answer({"status": None, "reason": str(exc).strip()})
            return 0
        record = records[0] if records else None
        status = getattr(record, "status", None)
        answer({"status": getattr(status, "value", status), "reason": getattr(record, "failure_reason", None)})
    elif command == "cancel":
        import sky

        sky.get(sky.jobs.cancel(job_ids=[int(args[0])]))
        answer({"cancelled": int(args[0])})
    elif command == "logs":
        import sky

        code = sky.jobs.tail_logs(job_id=int(args[0]), follow=True, output_stream=sys.stdout)
        answer({"exit_code": code})
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
