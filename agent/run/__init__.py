"""Running a plan: executor, context, lock and resume; it writes the record, never a report."""
