"""initial ledger schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21 23:42:15.173945
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('budget_reservations',
    sa.Column('reservation_id', sa.String(length=36), nullable=False),
    sa.Column('budget', sa.String(length=120), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('identity', sa.JSON(), nullable=False),
    sa.Column('amount', sa.Float(), nullable=False),
    sa.Column('estimate_source', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('entry_id', sa.String(length=36), nullable=True),
    sa.Column('progress_kwh', sa.Float(), nullable=True),
    sa.Column('progress_g', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('reservation_id')
    )
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.create_index('ix_reservations_budget_status', ['budget', 'status'], unique=False)
        batch_op.create_index('uq_reservations_budget_key', ['budget', 'idempotency_key'], unique=True)

    op.create_table('budgets',
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('scope_kind', sa.String(length=16), nullable=False),
    sa.Column('scope_value', sa.String(length=250), nullable=True),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('period_hours', sa.Float(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('unit', sa.String(length=8), nullable=False),
    sa.Column('limit_value', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('forecast_cache',
    sa.Column('cache_key', sa.String(length=250), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=120), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('cache_key')
    )
    op.create_table('ledger_entries',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('entry_id', sa.String(length=36), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('orchestrator', sa.String(length=16), nullable=False),
    sa.Column('workflow_id', sa.String(length=250), nullable=False),
    sa.Column('run_id', sa.String(length=250), nullable=False),
    sa.Column('task_id', sa.String(length=250), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('map_index', sa.Integer(), nullable=True),
    sa.Column('team', sa.String(length=120), nullable=True),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('decision', sa.String(length=32), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('planned_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('actual_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deferred_seconds', sa.Float(), nullable=True),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('region', sa.String(length=120), nullable=True),
    sa.Column('forecast_provider', sa.String(length=64), nullable=True),
    sa.Column('forecast_signal', sa.String(length=16), nullable=True),
    sa.Column('forecast_emission_factor', sa.String(length=16), nullable=True),
    sa.Column('forecast_generated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('forecast_hash', sa.String(length=64), nullable=True),
    sa.Column('forecast', sa.JSON(), nullable=True),
    sa.Column('forecast_note', sa.Text(), nullable=True),
    sa.Column('energy_gpu_kwh', sa.Float(), nullable=True),
    sa.Column('energy_cpu_kwh', sa.Float(), nullable=True),
    sa.Column('energy_dram_kwh', sa.Float(), nullable=True),
    sa.Column('method_gpu', sa.String(length=32), nullable=True),
    sa.Column('method_cpu', sa.String(length=32), nullable=True),
    sa.Column('method_dram', sa.String(length=32), nullable=True),
    sa.Column('energy_kwh', sa.Float(), nullable=True),
    sa.Column('active_energy_kwh', sa.Float(), nullable=True),
    sa.Column('measurement_notes', sa.JSON(), nullable=False),
    sa.Column('devices', sa.JSON(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('pue', sa.Float(), nullable=True),
    sa.Column('intensity_g_per_kwh', sa.Float(), nullable=True),
    sa.Column('intensity_source', sa.String(length=64), nullable=True),
    sa.Column('operational_g', sa.Float(), nullable=True),
    sa.Column('embodied_g', sa.Float(), nullable=True),
    sa.Column('functional_unit', sa.String(length=120), nullable=True),
    sa.Column('functional_units', sa.Float(), nullable=True),
    sa.Column('sci_g_per_unit', sa.Float(), nullable=True),
    sa.Column('counterfactual_intensity_g_per_kwh', sa.Float(), nullable=True),
    sa.Column('counterfactual_g', sa.Float(), nullable=True),
    sa.Column('saved_g', sa.Float(), nullable=True),
    sa.Column('budget', sa.String(length=120), nullable=True),
    sa.Column('reservation_id', sa.String(length=36), nullable=True),
    sa.Column('estimate_g', sa.Float(), nullable=True),
    sa.Column('estimate_kwh', sa.Float(), nullable=True),
    sa.Column('estimate_source', sa.Text(), nullable=True),
    sa.Column('charged_g', sa.Float(), nullable=True),
    sa.Column('charged_kwh', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('entry_id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entries_decision', ['decision', 'recorded_at'], unique=False)
        batch_op.create_index('ix_ledger_entries_recorded_at', ['recorded_at'], unique=False)
        batch_op.create_index('ix_ledger_entries_workflow', ['workflow_id', 'task_id', 'recorded_at'], unique=False)

    op.create_table('ledger_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    # Seed the chain's tip so that appenders only ever lock an existing row.
    head = sa.table("ledger_head", sa.column("id", sa.Integer), sa.column("seq", sa.Integer),
                    sa.column("entry_hash", sa.String))
    op.bulk_insert(head, [{"id": 1, "seq": 0, "entry_hash": "0" * 64}])


def downgrade() -> None:
    op.drop_table('ledger_head')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entries_workflow')
        batch_op.drop_index('ix_ledger_entries_recorded_at')
        batch_op.drop_index('ix_ledger_entries_decision')

    op.drop_table('ledger_entries')
    op.drop_table('forecast_cache')
    op.drop_table('budgets')
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.drop_index('uq_reservations_budget_key')
        batch_op.drop_index('ix_reservations_budget_status')

    op.drop_table('budget_reservations')

