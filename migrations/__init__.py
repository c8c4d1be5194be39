"""Alembic migrations for the gpupool schema."""
