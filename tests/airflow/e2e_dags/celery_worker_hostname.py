"""``[core] hostname_callable`` for the Celery multi-worker test: the Celery node that runs the workload.

Both test workers run on one machine, so the default (the machine's FQDN) cannot tell them apart. This
returns the node name Celery gave the worker executing the current task (``-H gb@%h`` gives ``gb@host``),
so a task instance's ``hostname`` column says which worker really ran it. Not a DAG: the test puts this
directory on the workers' ``PYTHONPATH`` and does not copy this file into the DAGs folder.
"""

from __future__ import annotations

import socket


def celery_worker_hostname() -> str:
    """The executing Celery worker's node name, else the machine's FQDN (outside a Celery task)."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    name = getattr(request, "hostname", None)
    return str(name) if name else socket.getfqdn()
