"""Trust: API tokens (stored hashed), the priority classes each tenant may
use, an audit trail of every state-changing call, and finite tenant numbers.

PostgreSQL orders NaN above every number, so `quota_units >= 0` let NaN in;
the new checks also refuse NaN and infinity.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_FINITE = "{0} <> 'NaN'::float8 AND {0} < 'Infinity'::float8"


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False, server_default=""),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('service', 'viewer', 'admin')", name=op.f("ck_api_tokens_role")
        ),
        sa.CheckConstraint(
            "role <> 'service' OR tenant <> ''", name=op.f("ck_api_tokens_service_has_tenant")
        ),
        sa.CheckConstraint("length(secret_sha256) = 64", name=op.f("ck_api_tokens_hash_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("node", sa.String(length=253), nullable=False),
        sa.Column("method", sa.String(length=128), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.Column("peer", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=512), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_actor_at", "audit_events", ["actor", "at"])
    with op.batch_alter_table("tenants") as table:
        # NULL: the default grant (every class but critical).
        table.add_column(sa.Column("priority_classes", ARRAY(sa.String(length=64)), nullable=True))
        table.create_check_constraint("quota_finite", _FINITE.format("quota_units"))
        table.create_check_constraint("weight_finite", _FINITE.format("weight"))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as table:
        table.drop_constraint("ck_tenants_weight_finite", type_="check")
        table.drop_constraint("ck_tenants_quota_finite", type_="check")
        table.drop_column("priority_classes")
    op.drop_index("ix_audit_events_actor_at", table_name="audit_events")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("api_tokens")
