"""The ``@task.carbon_aware`` TaskFlow decorator."""
