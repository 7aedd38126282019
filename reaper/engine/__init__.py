"""Applying the policies: plans, batches, range walks, conditional writes, batch sizing, throttling."""
