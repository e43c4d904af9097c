"""What every stage shares: the batch and its coders, errors, hashing, exact sums, progress, fault hooks."""
