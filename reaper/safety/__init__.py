"""What keeps a clean-up undoable and accountable: the archive, restore, the audit trail."""
