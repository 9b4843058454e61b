"""The sync engine: windows, runs, leases, the engine itself, scheduling and exports."""
