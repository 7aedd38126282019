"""Looking without writing: statistics, one row explained, the indexes a table lacks."""
