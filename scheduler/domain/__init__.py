"""Pure domain: plain dataclasses and functions, no grpc and no SQLAlchemy."""
