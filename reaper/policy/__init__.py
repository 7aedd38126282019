"""The clean-up policies: which rows each one matches, and what it does with them."""
