"""contractual energy instruments and residual-mix factors (market-based Scope 2 in reports)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 19:20:00.000000

`energy_instruments` holds the PPAs, certificates (GO, REGO, REC, I-REC) and green tariffs a user
declares with `greenflow instruments add|import`; `residual_mix_factors` the residual-mix factor per
region the user declares with `greenflow instruments residual`. Each row keeps a SHA-256 of its
canonical content (greenflow.report.instruments) so that a change made behind greenflow's back shows
in `instruments list` and in every report. greenflow ships no default factors.

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'energy_instruments',
        sa.Column('instrument_id', sa.String(length=36), nullable=False),
        sa.Column('region', sa.String(length=64), nullable=False),
        sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
        sa.Column('valid_to', sa.DateTime(timezone=True), nullable=False),
        sa.Column('mwh', sa.Float(), nullable=False),
        sa.Column('factor_g_per_kwh', sa.Float(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('reference', sa.String(length=255), nullable=True),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('instrument_id'),
    )
    op.create_index('ix_energy_instruments_region_validity', 'energy_instruments', ['region', 'valid_from', 'valid_to'])
    op.create_table(
        'residual_mix_factors',
        sa.Column('region', sa.String(length=64), nullable=False),
        sa.Column('factor_g_per_kwh', sa.Float(), nullable=False),
        sa.Column('source', sa.String(length=255), nullable=False),
        sa.Column('declared_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('region'),
    )


def downgrade() -> None:
    op.drop_table('residual_mix_factors')
    op.drop_index('ix_energy_instruments_region_validity', table_name='energy_instruments')
    op.drop_table('energy_instruments')
