"""The evidence bundle an outside auditor checks alone: its layout, writing it, checking it (docs/finance.md)."""
