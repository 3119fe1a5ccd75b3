"""indexes for the Airflow UI's keyset pagination, filters and the task-instance view

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 01:10:00.000000

The Carbon Ledger pages list entries in (sort key, seq) order and page with "rows after (value, seq)",
so each sort key gets a (key, seq) index and each page is an index range scan at any depth. A DAG
filter gets (workflow_id, recorded_at, seq) and one task instance (workflow_id, run_id, task_id).
Plain CREATE INDEX: the upgrade is run while workers are stopped (see `greenflow db upgrade`).
"""

from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

INDEXES = {
    'ix_ledger_entries_recorded_seq': ['recorded_at', 'seq'],
    'ix_ledger_entries_workflow_recorded': ['workflow_id', 'recorded_at', 'seq'],
    'ix_ledger_entries_task_instance': ['workflow_id', 'run_id', 'task_id'],
    'ix_ledger_entries_actual_start_seq': ['actual_start', 'seq'],
    'ix_ledger_entries_energy_seq': ['energy_kwh', 'seq'],
    'ix_ledger_entries_operational_seq': ['operational_g', 'seq'],
    'ix_ledger_entries_saved_seq': ['saved_g', 'seq'],
    'ix_ledger_entries_deferred_seq': ['deferred_seconds', 'seq'],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, 'ledger_entries', columns, unique=False)


def downgrade() -> None:
    for name in reversed(list(INDEXES)):
        op.drop_index(name, table_name='ledger_entries')
