"""reservation groups over every covering budget, chained budget definitions, reservation digests

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 19:30:00.000000

Issue 14. Budgets nest (organisation ⊃ team ⊃ workflow), and each counts every entry its scope covers,
so an attempt now holds its estimate against EVERY covering budget: one `budget_reservations` row per
budget, sharing `group_id` (the named budget's row id). Each row carries a `digest` of its content that
greenflow rewrites on every change, so `ledger verify` sees a hand edit.

Budget definitions become entries of the hash chain (decision `budget_set`); this migration appends one
for every budget that exists, with its current definition, so that verify can compare the table with
the chain from now on. Run it with the workers stopped (`greenflow db upgrade`), as every migration.

On PostgreSQL `greenflow_reserve` (one budget) is replaced by `greenflow_reserve_group`, which locks the
covering budgets in name order, checks each (usage after the settled checkpoint, as 0003 did) and
inserts the group in one call. Its logic mirrors `greenflow.ledger.budgets.Budgets._reserve_in_session`;
the tests run both on the same workloads. A migration that changes the tables it reads must recreate it.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_FUNCTION = (
    "greenflow_reserve(varchar, integer, timestamptz, timestamptz, timestamptz, varchar, double precision, "
    "varchar, json, text, timestamptz)"
)
GROUP_FUNCTION = (
    "greenflow_reserve_group(varchar[], integer[], timestamptz[], timestamptz[], double precision[], varchar[], "
    "varchar[], varchar, varchar, varchar, varchar[], timestamptz, varchar, json, text, timestamptz)"
)

USAGE = """SELECT
            (SELECT coalesce(sum(CASE WHEN b.unit = 'gCO2e' THEN e.charged_g ELSE e.charged_kwh END), 0)
                FROM ledger_entries e
                WHERE {entries}
                    AND e.recorded_at >= v_start AND e.recorded_at < v_end
                    AND (b.scope_kind = 'all'
                        OR (b.scope_kind = 'workflow' AND e.workflow_id = b.scope_value)
                        OR (b.scope_kind = 'team' AND e.team = b.scope_value)
                        OR (b.scope_kind = 'tag' AND e.tags LIKE '%,' || b.scope_value || ',%')
                        OR e.budget = b.name)),
            (SELECT coalesce(sum(amount), 0) FROM budget_reservations
                WHERE budget = b.name AND status = 'open' AND expires_at > p_at),
            (SELECT count(*) FROM budget_reservations
                WHERE budget = b.name AND status = 'open' AND expires_at > p_at),
            (SELECT h.seq FROM ledger_head h WHERE h.id = 1)
            INTO fresh, v_reserved, v_open, head;"""

RESERVE_GROUP_TEMPLATE = """
CREATE OR REPLACE FUNCTION greenflow_reserve_group(
    p_names varchar[], p_revisions integer[], p_starts timestamptz[], p_ends timestamptz[],
    p_amounts double precision[], p_ids varchar[], p_digests varchar[], p_primary varchar, p_workflow varchar,
    p_team varchar, p_tags varchar[], p_at timestamptz, p_key varchar, p_identity json, p_source text,
    p_expires timestamptz,
    OUT outcome text, OUT binding varchar, OUT settled double precision, OUT reserved double precision,
    OUT open_count bigint, OUT expired_count bigint, OUT r_id varchar, OUT r_amount double precision,
    OUT r_source text, OUT r_expires timestamptz, OUT r_status varchar, OUT r_holds varchar[])
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    b budgets%ROWTYPE;
    got_names varchar[] := '{}';
    got_revisions integer[] := '{}';
    i integer;
    use_checkpoint boolean;
    head bigint;
    fresh double precision;
    v_settled double precision;
    v_reserved double precision;
    v_open bigint;
    v_start timestamptz;
    v_end timestamptz;
    v_group varchar;
BEGIN
    -- Reservations are short-lived holds, not the audit record (see budgets._fast_commit).
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Lock the named budget and every budget covering the attempt, in name order: two reservers with
    -- overlapping groups take their common locks in the same order and cannot deadlock.
    FOR b IN SELECT * FROM budgets
            WHERE name = p_primary OR scope_kind = 'all'
                OR (scope_kind = 'workflow' AND scope_value = p_workflow)
                OR (scope_kind = 'team' AND scope_value = p_team)
                OR (scope_kind = 'tag' AND scope_value = ANY(p_tags))
            ORDER BY name FOR UPDATE LOOP
        got_names := got_names || b.name;
        got_revisions := got_revisions || b.revision;
    END LOOP;
    IF NOT (p_primary = ANY(got_names)) THEN
        outcome := 'missing';
        RETURN;
    END IF;
    IF got_names <> p_names OR got_revisions <> p_revisions THEN
        outcome := 'stale';  -- a budget was set or created since the client cached the definitions
        RETURN;
    END IF;
    -- Each statement below takes a new snapshot (READ COMMITTED), so it sees what the previous
    -- holder of the locks committed.
    SELECT count(*) INTO expired_count FROM budget_reservations
        WHERE budget = ANY(p_names) AND status = 'open' AND expires_at <= p_at;
    IF expired_count > 0 THEN
        outcome := 'expired';  -- the client settles them as interrupted entries (hash chain) and retries
        RETURN;
    END IF;
    SELECT reservation_id, amount, estimate_source, expires_at, status
        INTO r_id, r_amount, r_source, r_expires, r_status
        FROM budget_reservations WHERE budget = p_primary AND idempotency_key = p_key AND status = 'open' LIMIT 1;
    IF FOUND THEN
        SELECT array_agg(budget ORDER BY budget) INTO r_holds FROM budget_reservations
            WHERE budget_reservations.group_id = r_id OR budget_reservations.reservation_id = r_id;
        outcome := 'existing';
        RETURN;
    END IF;
    FOR i IN 1 .. array_length(p_names, 1) LOOP
        SELECT * INTO b FROM budgets WHERE name = p_names[i];
        v_start := p_starts[i];
        v_end := p_ends[i];
        use_checkpoint := b.period <> 'rolling' AND b.usage_through_seq IS NOT NULL
            AND b.usage_period_start = v_start AND b.usage_period_end = v_end;
        -- One statement, one snapshot: a settlement moves an amount from reserved to an entry in one
        -- commit, so it is seen as one or the other, never both or neither. Two copies so that each is
        -- planned for its own index (the checkpoint's seq range, or the period's recorded_at range).
        IF use_checkpoint THEN
            {usage_after_checkpoint}
        ELSE
            {usage_of_period}
        END IF;
        v_settled := CASE WHEN use_checkpoint THEN b.usage_settled + fresh ELSE fresh END;
        IF b.period <> 'rolling' AND (NOT use_checkpoint OR head <> b.usage_through_seq) THEN
            UPDATE budgets SET usage_period_start = v_start, usage_period_end = v_end, usage_through_seq = head,
                usage_settled = v_settled
                WHERE name = b.name;
        END IF;
        IF outcome IS NULL AND (v_settled + v_reserved >= b.limit_value
                OR p_amounts[i] > b.limit_value - (v_settled + v_reserved)) THEN
            -- The first budget (by name) that cannot cover the attempt; the others' checkpoints are
            -- still brought forward, which is right whatever the answer.
            outcome := 'refused';
            binding := b.name;
            settled := v_settled;
            reserved := v_reserved;
            open_count := v_open;
            expired_count := 0;
        END IF;
    END LOOP;
    IF outcome = 'refused' THEN
        RETURN;
    END IF;
    v_group := p_ids[array_position(p_names, p_primary)];
    INSERT INTO budget_reservations (reservation_id, group_id, budget, idempotency_key, identity, amount,
        estimate_source, status, created_at, expires_at, digest)
        SELECT u.id, v_group, u.name, p_key, p_identity, u.amount, p_source, 'open', p_at, p_expires, u.digest
        FROM unnest(p_ids, p_names, p_amounts, p_digests) AS u(id, name, amount, digest);
    outcome := 'granted';
END
$fn$
"""
RESERVE_GROUP_FUNCTION = RESERVE_GROUP_TEMPLATE.replace(
    "{usage_after_checkpoint}", USAGE.replace("{entries}", "e.seq > b.usage_through_seq")
).replace("{usage_of_period}", USAGE.replace("{entries}", "true"))


def upgrade() -> None:
    with op.batch_alter_table("budget_reservations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("digest", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_reservations_group", ["group_id"], unique=False)
    _seal_existing_reservations()
    _chain_existing_definitions()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {OLD_FUNCTION}")
        op.execute(RESERVE_GROUP_FUNCTION)


def downgrade() -> None:
    # The chained `budget_set` entries stay: an append-only chain cannot lose entries (restore a backup
    # taken before the upgrade to go back completely).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {GROUP_FUNCTION}")
        op.execute(_revision_0003().RESERVE_FUNCTION)
    with op.batch_alter_table("budget_reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_group")
        batch_op.drop_column("digest")
        batch_op.drop_column("group_id")


def _revision_0003() -> ModuleType:
    path = Path(__file__).with_name("0003_budget_usage_checkpoint.py")
    spec = importlib.util.spec_from_file_location("greenflow_migration_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seal_existing_reservations() -> None:
    """Every existing reservation is its own group; give it the digest verify will check."""
    from greenflow.ledger.settlement import DIGESTED, reservation_digest

    bind = op.get_bind()
    table = sa.Table('budget_reservations', sa.MetaData(), autoload_with=op.get_bind())
    rows = bind.execute(sa.select(*(table.c[name] for name in DIGESTED if name != "group_id"))).mappings().all()
    for row in rows:
        values = {**row, "group_id": row["reservation_id"]}
        bind.execute(
            table.update()
            .where(table.c.reservation_id == row["reservation_id"])
            .values(group_id=row["reservation_id"], digest=reservation_digest(values))
        )


def _chain_existing_definitions() -> None:
    """Append a `budget_set` entry with each existing budget's current definition to the chain."""
    from greenflow.ledger.budgets import _budget_from_row, definition_event
    from greenflow.ledger.entry import chain_hash
    from greenflow.ledger.models import BudgetRow, EntryRow, HeadRow
    from greenflow.ledger.rows import entry_row_values

    bind = op.get_bind()
    session = Session(bind=bind)
    now = datetime.now(UTC)
    head = session.execute(sa.select(HeadRow).where(HeadRow.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        return
    seq, tip = head.seq, head.entry_hash
    for row in session.execute(sa.select(BudgetRow).order_by(BudgetRow.name)).scalars().all():
        event = definition_event(_budget_from_row(row), row.revision, now)
        digest = chain_hash(tip, event.content())
        recorded = event.replace(seq=seq + 1, prev_hash=tip, entry_hash=digest)
        session.execute(sa.insert(EntryRow).values(entry_row_values(recorded)))
        seq, tip = seq + 1, digest
    session.execute(sa.update(HeadRow).where(HeadRow.id == 1).values(seq=seq, entry_hash=tip))
    session.flush()
